// Copyright the @ocycle/core authors. MIT license.
/**
 * The fleet worker of redis mode: {@linkcode runWorker} claims the chunks
 * that emitters in `mode: "redis"` add to a Redis stream, runs them with a
 * callback module in a local pool, and sends each result back. The
 * producer's side needs nothing from here: `mode: "redis"` works from the
 * main entry, `@ocycle/core`, and loads the Redis client with its first
 * chunk.
 *
 * @example Options are checked at once
 * ```ts
 * import { runWorker } from "@ocycle/core/redis";
 * import { assertThrows } from "@std/assert";
 *
 * assertThrows(
 *   () =>
 *     runWorker({
 *       url: "redis://127.0.0.1:6379",
 *       stream: "jobs",
 *       module: "./handler.ts",
 *       mode: "cluster" as "thread",
 *     }),
 *   TypeError,
 *   `'mode' must be "serial", "thread" or "process"`,
 * );
 * ```
 *
 * @module
 */

export { runWorker } from "./src/fleet_worker.ts";
export type {
  RedisWorker,
  RedisWorkerOptions,
  RedisWorkerStats,
} from "./src/fleet_worker.ts";
