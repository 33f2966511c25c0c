// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode runWorker}: a worker of a Redis fleet, the other end of
 * `mode: "redis"`: it takes chunks from a Redis stream, runs them in a local
 * pool with the module it was started with, and sends their results back.
 *
 * @module
 */

import type { ChildPermissions } from "./emitter_options.ts";
import { defaultConcurrency } from "./core/_options.ts";
import { describeValue } from "./core/_kinds.ts";
import {
  checkRules,
  FINITE_MILLISECONDS,
  FUNCTION,
  MILLISECONDS,
  POSITIVE,
  type Rule,
  SIGNAL,
  TEXT,
} from "./core/_rules.ts";
import { HANDED_BACK } from "./fleet/_scripts.ts";
import { hostName } from "./fleet/_host.ts";
import { parseRedisUrl } from "./fleet/_url.ts";
import { WorkerEngine } from "./fleet/_worker_engine.ts";
import type { RedisWorkerStats } from "./fleet_worker_stats.ts";
import { toModuleUrl } from "./run/_module_url.ts";
import { processOptions } from "./pool/_process_args.ts";
import { START_TIMEOUT } from "./pool/_slot.ts";
import { MAX_STALLS } from "./run/_retry_policy.ts";
import { describe, warn } from "./run/_runner.ts";

/** Options of {@linkcode runWorker}. */
export interface RedisWorkerOptions {
  /** The Redis URL: `redis://user:pass@host:6379/0`, `rediss://` for TLS. */
  url: string;
  /** The chunk stream's key, as the producers' `redis.stream`. */
  stream: string;
  /**
   * The consumer group, as the producers'.
   *
   * @default {"ocycle"}
   */
  group?: string;
  /**
   * The callback module: a path (relative to the current directory) or a
   * URL. The worker runs this module only; an entry never names code.
   */
  module: string | URL;
  /**
   * The module's export that is the callback.
   *
   * @default {"default"}
   */
  exportName?: string;
  /**
   * The local pool's mode.
   *
   * @default {"process"}
   */
  mode?: "process" | "thread" | "serial";
  /**
   * Workers or children in the local pool.
   *
   * @default {navigator.hardwareConcurrency}
   */
  pool?: number;
  /**
   * Chunks each Worker or child holds at once.
   *
   * @default {2, or 8 in thread mode}
   */
  concurrency?: number;
  /**
   * Milliseconds one run of the callback may take; `Infinity` for no limit.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /**
   * Milliseconds a Worker or child may take to start.
   *
   * @default {10000}
   */
  startTimeout?: number;
  /** Process mode: permissions each child gets; by default only reading its module. */
  permissions?: ChildPermissions;
  /**
   * Process mode: the children's environment, empty by default.
   */
  env?: Record<string, string>;
  /**
   * The consumer name, unique in the fleet: by default the host's name (or
   * `worker` without `--allow-sys=hostname`), the process id and 4 random hex
   * digits.
   *
   * @default {"<host>-<pid>-<4 hex digits>"}
   */
  name?: string;
  /**
   * Milliseconds an entry may go without a heartbeat before another worker
   * takes it over: how soon the chunks of a dead worker run elsewhere.
   *
   * @default {5000}
   */
  staleAfter?: number;
  /** Milliseconds between heartbeats; keep it well below `staleAfter`. @default {1000} */
  heartbeat?: number;
  /**
   * Workers that may start a chunk and vanish (killed, frozen past
   * `staleAfter`) without ending it before the next worker to take it over
   * dead-letters it as poison instead of running it. A worker lost never
   * spends the chunk's `retries`, and an entry claimed but never started
   * (read ahead, lost in transit) is never counted.
   *
   * @default {3}
   */
  maxStalls?: number;
  /** Aborted: hand everything back now, as {@linkcode RedisWorker.abort}. */
  signal?: AbortSignal;
  /**
   * Notable events, one line each.
   *
   * @default {a line on stderr: "[ocycle worker NAME] ..."}
   */
  log?: (line: string) => void;
}

export type { RedisWorkerStats } from "./fleet_worker_stats.ts";

/** A running fleet worker; `await using` shuts it down. */
export interface RedisWorker extends AsyncDisposable {
  /** Its consumer name. */
  readonly name: string;
  /** Settles once it has stopped; rejects only on a fatal start error (the module cannot be loaded). */
  readonly finished: Promise<RedisWorkerStats>;
  /** Stops claiming, finishes running chunks, hands back the rest. */
  shutdown(): Promise<RedisWorkerStats>;
  /** Hands back everything at once and kills the local pool. */
  abort(reason?: unknown): Promise<RedisWorkerStats>;
  /** The counts so far. */
  stats(): RedisWorkerStats;
}

const OWNER = "RedisWorker";

/**
 * Starts a fleet worker: it claims chunks from the Redis stream `stream` (in
 * the consumer group `group`) as its local pool has room, runs them with the
 * callback of `module`, and sends each result or error back to the producer
 * that wrote the chunk. It keeps the entries it holds fresh with a heartbeat,
 * so a long callback is never taken from it; it takes over the entries of
 * workers that died or stalled (idle longer than `staleAfter`), without
 * spending their `retries`; a crash or a timeout is run again as the
 * producer's `retries` ask, then goes to the dead-letter stream `STREAM:dead`
 * and back as an error, as does a chunk that took down `maxStalls` workers.
 * It holds only what its pool starts at once, and a few fast chunks ahead.
 * The rules are the repository's docs/fleet.md. A late outcome of a
 * chunk another worker took over is discarded (fenced).
 *
 * @param options Where the stream is, the module, the local pool.
 * @returns The running worker.
 * @throws {TypeError} If an option has the wrong type, naming it and the value.
 * @throws {RangeError} If a number is out of range, naming it and the value.
 *
 * @example A worker embedded in a program (needs a redis-server)
 * ```ts ignore
 * import { closeOnSignals } from "@ocycle/core";
 * import { runWorker } from "@ocycle/core/redis";
 *
 * const worker = runWorker({
 *   url: "redis://127.0.0.1:6379",
 *   stream: "jobs",
 *   module: "./handler.ts",
 *   pool: 4,
 * });
 * using _ = closeOnSignals([{
 *   close: async () => void await worker.shutdown(),
 *   abort: async () => void await worker.abort(),
 * }]);
 * console.log(await worker.finished);
 * ```
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
 *       pool: 0,
 *     }),
 *   RangeError,
 *   "'pool' must be a positive integer: received number 0",
 * );
 * ```
 */
export function runWorker(options: RedisWorkerOptions): RedisWorker {
  return new FleetWorkerHandle(options);
}

const text = TEXT;
const positive = POSITIVE;
const finiteMs = FINITE_MILLISECONDS;

const RULES: Readonly<Record<string, Rule>> = {
  url: text,
  stream: text,
  group: text,
  module: [
    (v) => (typeof v === "string" && v !== "") || v instanceof URL,
    "a path or a URL",
    TypeError,
  ],
  exportName: text,
  mode: [
    (v) => v === "serial" || v === "thread" || v === "process",
    `"serial", "thread" or "process"`,
    TypeError,
  ],
  pool: positive,
  concurrency: positive,
  timeout: MILLISECONDS,
  startTimeout: finiteMs,
  name: [
    (v) =>
      typeof v === "string" && /^[^\s]{1,200}$/.test(v) && v !== HANDED_BACK,
    `a name of 1 to 200 characters without spaces, not "${HANDED_BACK}"`,
    TypeError,
  ],
  staleAfter: finiteMs,
  heartbeat: finiteMs,
  maxStalls: positive,
  signal: SIGNAL,
  log: FUNCTION,
};

class FleetWorkerHandle implements RedisWorker {
  readonly name: string;
  readonly finished: Promise<RedisWorkerStats>;
  readonly #engine: WorkerEngine;

  constructor(options: RedisWorkerOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `Cannot create ${OWNER} as its options must be an object: received ${
          describeValue(options)
        }`,
      );
    }
    const {
      url,
      stream,
      group = "ocycle",
      module,
      exportName = "default",
      mode = "process",
      pool = navigator.hardwareConcurrency ?? 1,
      concurrency = defaultConcurrency(mode),
      timeout = Infinity,
      startTimeout = START_TIMEOUT,
      name = defaultName(),
      staleAfter = 5000,
      heartbeat = 1000,
      maxStalls = MAX_STALLS,
      signal,
    } = options;
    const values = {
      url,
      stream,
      group,
      module,
      exportName,
      mode,
      pool,
      concurrency,
      timeout,
      startTimeout,
      name,
      staleAfter,
      heartbeat,
      maxStalls,
      signal,
      log: options.log,
    };
    checkRules(OWNER, RULES, values, ["url", "stream", "module"]);
    try {
      parseRedisUrl(url);
    } catch (error) {
      throw new TypeError(
        `Cannot create ${OWNER} as 'url' is not a Redis URL: ${
          (error as Error).message
        }`,
      );
    }
    const process = processOptions(options, OWNER);
    const log = options.log ?? ((line) => warn(`worker ${name}`, line));
    const serial = mode === "serial";
    const callback = module instanceof URL ? module : toModuleUrl(module);
    this.name = name;
    this.#engine = new WorkerEngine({
      url,
      stream,
      group,
      name,
      capacity: serial ? 1 : pool * concurrency,
      starts: serial ? 1 : pool,
      maxStalls,
      staleAfter,
      heartbeat,
      log,
      runner: {
        mode,
        callback,
        exportName,
        pool: serial ? 1 : pool,
        concurrency: serial ? 1 : concurrency,
        timeout,
        startTimeout,
        // A worker waits for entries on purpose: its pool stays warm.
        idleTimeout: Infinity,
        retries: 0,
        retryDelay: 0,
        borrow: false,
        owner: OWNER,
        ...process,
      },
    });
    log(
      `started: stream ${stream}, group ${group}, ${mode} mode, ${
        serial ? 1 : pool * concurrency
      } chunks at once, module ${callback.href}`,
    );
    if (heartbeat >= staleAfter) {
      log(
        `'heartbeat' (${heartbeat} ms) is not below 'staleAfter' (${staleAfter} ms): other workers will take over chunks this one still runs`,
      );
    }
    const onAbort = () => void this.abort(signal!.reason);
    if (signal?.aborted) this.#engine.abort(signal.reason);
    else signal?.addEventListener("abort", onAbort, { once: true });
    this.finished = this.#engine.run().then(
      () => {
        log(`stopped: ${JSON.stringify(this.stats())}`);
        return this.stats();
      },
      (error) => {
        log(`stopped by a fatal error: ${describe(error)}`);
        throw error;
      },
    ).finally(() => signal?.removeEventListener("abort", onAbort));
    // Reported through the log; a caller that awaits `finished` sees it too.
    this.finished.catch(() => {});
  }

  shutdown(): Promise<RedisWorkerStats> {
    this.#engine.shutdown();
    return this.finished;
  }

  abort(reason?: unknown): Promise<RedisWorkerStats> {
    this.#engine.abort(reason);
    return this.finished;
  }

  stats(): RedisWorkerStats {
    return { ...this.#engine.counts };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown().catch(() => {});
  }
}

/** `${hostname}-${pid}-<4 hex digits>`; "worker" when the host name may not be read. */
function defaultName(): string {
  const host = hostName() ?? "worker";
  const hex = crypto.getRandomValues(new Uint16Array(1))[0]!
    .toString(16).padStart(4, "0");
  return `${host}-${Deno.pid}-${hex}`;
}
