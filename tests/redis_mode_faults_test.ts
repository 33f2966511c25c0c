// Copyright the @ocycle/core authors. MIT license.
// Redis mode, the producer side (run/_redis.ts, redis/_fleet_producer.ts):
// faults found by red-teaming, each against a real redis-server.

import { assert, assertEquals, assertRejects } from "@std/assert";
import { ChunkError } from "../mod.ts";
import { RedisClient } from "../src/redis/_client.ts";
import { RedisRunner, type RedisSettings } from "../src/run/_redis.ts";
import { RedisServer, skipWithoutRedis } from "./_redis_server.ts";

const ignore = skipWithoutRedis("redis_mode_faults_test.ts");
const STREAM = "chunks";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function settings(url: string, extra: Partial<RedisSettings> = {}) {
  return {
    owner: "BufferEmit",
    url,
    stream: STREAM,
    group: "ocycle",
    inFlight: 4,
    layout: { kind: "bytes" } as const,
    timeout: Infinity,
    retries: 0,
    retryDelay: 100,
    quietAfter: 1e9,
    log: () => {},
    ...extra,
  };
}

function task(index: number) {
  return {
    chunk: new Uint8Array([index]),
    info: {
      index,
      offset: index,
      length: 1,
      t0: 0,
      reason: "size" as const,
      final: false,
    },
    buffer: undefined,
    lost: false,
    owned: true,
  };
}

Deno.test({
  name:
    "redis mode faults: abort() ends promptly while Redis is down, though a lost-entry check waits for a connection",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const admin = await RedisClient.connect(server.url);
    const runner = new RedisRunner(settings(server.url));
    const result = runner.run(task(1));
    result.catch(() => {});
    while (await admin.command("XLEN", STREAM) !== 1) await sleep(20);
    await admin.close();
    await server.stop("SIGKILL");
    // The first check, 2 s after the chunk was added, then waits up to 5 s
    // for a connection.
    await sleep(2300);
    const start = performance.now();
    await runner.abort(new Error("stop"));
    const took = performance.now() - start;
    const error = await assertRejects(() => result, ChunkError);
    assertEquals(error.kind, "aborted");
    assert(took < 3500, `abort() took ${Math.round(took)} ms`);
  },
});
