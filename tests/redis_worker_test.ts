// Copyright the @ocycle/core authors. MIT license.
// runWorker (src/fleet_worker.ts) against a real redis-server that each test
// starts on a free loopback port and stops. The producer is FleetProducer
// with the entry codec, as the emitter's redis mode will use them. Without
// redis-server the tests are skipped (and say why), except under CI=true.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { deserialize, serialize } from "node:v8";
import {
  type RedisWorker,
  type RedisWorkerOptions,
  runWorker,
} from "../redis.ts";
import type { ChunkInfo } from "../src/chunk_info.ts";
import { RedisClient } from "../src/fleet/_client.ts";
import { deadStream, FleetProducer } from "../src/fleet/_protocol.ts";
import { HANDED_BACK, startedHash } from "../src/fleet/_scripts.ts";
import { xgroupCreate, xpending } from "../src/fleet/_streams.ts";
import {
  decodeResultEntry,
  encodeTaskEntry,
  type ResultEntry,
  type RetryPolicy,
} from "../src/wire/_entries.ts";
import type { ChunkLayout } from "../src/wire/_layout.ts";
import type { WireError } from "../src/wire/_messages.ts";
import type { ChunkErrorKind } from "../src/chunk_error.ts";
import {
  commandExists,
  RedisServer,
  skipWithoutRedis,
} from "./_redis_server.ts";

const ignore = skipWithoutRedis("redis_worker_test.ts");
const STREAM = "jobs";
const HANDLER = new URL("./fixtures/redis/handler.ts", import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const clone = (value: unknown) => new Uint8Array(serialize(value));
const parse = (bytes: Uint8Array) => deserialize(bytes);
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

const info = (index: number, length: number): ChunkInfo => ({
  index,
  offset: index * 100,
  length,
  t0: 1_764_000_000_000 + index,
  reason: "size",
  final: false,
});

/** A server, a producer, an admin client, and the workers a test starts, all stopped at the end. */
async function fleet() {
  const server = await RedisServer.start();
  const producer = new FleetProducer(server.url, STREAM, "p1");
  const admin = await RedisClient.connect(server.url);
  const workers: RedisWorker[] = [];
  const lines: string[] = [];
  return {
    server,
    url: server.url,
    producer,
    admin,
    lines,
    /** Creates the workers' group on the stream, from its first entry. */
    createGroup: () => xgroupCreate(admin, STREAM, "ocycle", "0"),
    /** A worker named `name`, quick to take over (staleAfter 400 ms). */
    start(name: string, options: Partial<RedisWorkerOptions> = {}) {
      const worker = runWorker({
        url: server.url,
        stream: STREAM,
        module: HANDLER,
        mode: "process",
        pool: 1,
        concurrency: 1,
        staleAfter: 400,
        heartbeat: 100,
        name,
        log: (line) => lines.push(`${name}: ${line}`),
        ...options,
      });
      workers.push(worker);
      return worker;
    },
    submit(
      id: string,
      layout: ChunkLayout,
      chunk: unknown,
      chunkInfo: ChunkInfo,
      policy?: RetryPolicy,
    ): Promise<string> {
      return producer.submit(
        encodeTaskEntry(id, chunkInfo, layout, chunk, clone, policy),
      );
    },
    /** `n` results, waiting up to `ms` for them, and any more within 200 ms after. */
    async results(n: number, ms = 20_000): Promise<ResultEntry[]> {
      const out: ResultEntry[] = [];
      const deadline = Date.now() + ms;
      while (out.length < n && Date.now() < deadline) {
        for (const r of await producer.read(100)) {
          out.push(decodeResultEntry(r.fields, parse));
        }
      }
      for (const r of await producer.read(200)) {
        out.push(decodeResultEntry(r.fields, parse));
      }
      assertEquals(out.length, n, `results: ${Deno.inspect(out)}`);
      return out;
    },
    async assertDrained(): Promise<void> {
      assertEquals(await admin.command("XLEN", STREAM), 0);
      assertEquals((await xpending(admin, STREAM, "ocycle")).count, 0);
    },
    async dead(): Promise<Map<string, string>[]> {
      const rows = await admin.command(
        "XRANGE",
        deadStream(STREAM),
        "-",
        "+",
      ) as [Uint8Array, Uint8Array[]][];
      return rows.map(([, flat]) => {
        const map = new Map<string, string>();
        for (let i = 0; i + 1 < flat.length; i += 2) {
          map.set(text(flat[i]), text(flat[i + 1]));
        }
        return map;
      });
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(workers.map((w) => w.abort().catch(() => {})));
      await producer.close();
      await admin.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

async function until(what: string, test: () => boolean, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(20);
  }
}

/** An error result, or a failure that shows what came instead. */
function failure(r: ResultEntry | undefined): {
  id: string;
  worker: string;
  error: WireError;
  kind: ChunkErrorKind;
  attempts: number;
} {
  if (r === undefined || !("error" in r)) {
    throw new Error(`not an error result: ${Deno.inspect(r)}`);
  }
  return r as ReturnType<typeof failure>;
}

/** A value result's value, or a failure that shows what came instead. */
function valueOf(r: ResultEntry | undefined): unknown {
  if (r === undefined || !("value" in r)) {
    throw new Error(`not a value result: ${Deno.inspect(r)}`);
  }
  return r.value;
}

function byId(results: ResultEntry[]): Map<string, ResultEntry> {
  return new Map(results.map((r) => [r.id, r]));
}

Deno.test("runWorker() names a bad option and its value", () => {
  const base = { url: "redis://127.0.0.1:1", stream: "s", module: HANDLER };
  const cases: [Partial<RedisWorkerOptions>, ErrorConstructor, string][] = [
    [
      { pool: 0 },
      RangeError,
      "'pool' must be a positive integer: received number 0",
    ],
    [{ mode: "redis" as "serial" }, TypeError, `'mode' must be "serial"`],
    [{ stream: "" }, TypeError, `'stream' must be a non-empty string`],
    [{ staleAfter: -1 }, RangeError, "'staleAfter' must be a finite number"],
    [{ heartbeat: Infinity }, RangeError, "'heartbeat' must be a finite"],
    [{ name: "a b" }, TypeError, `'name' must be a name of 1 to 200`],
    [{ url: "http://x" }, TypeError, `'url' is not a Redis URL`],
    [{ module: 3 as unknown as string }, TypeError, "'module' must be a path"],
    [{ permissions: { nope: true } as never }, TypeError, "permissions.nope"],
  ];
  for (const [bad, ErrorClass, fragment] of cases) {
    assertThrows(
      () => runWorker({ ...base, ...bad } as RedisWorkerOptions),
      ErrorClass,
      fragment,
    );
  }
  assertThrows(
    () => runWorker({ url: "redis://h", stream: "s" } as RedisWorkerOptions),
    TypeError,
    "'module' must be a path or a URL: received undefined",
  );
});

Deno.test({
  name:
    "runWorker() runs bytes, samples, items and text chunks in serial, thread and process modes",
  ignore,
  async fn(t) {
    await using f = await fleet();
    for (const mode of ["serial", "thread", "process"] as const) {
      await t.step(mode, async () => {
        const worker = f.start(`w-${mode}`, { mode });
        const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
        await f.submit("b", { kind: "bytes" }, bytes, info(0, 256));
        await f.submit(
          "s",
          { kind: "samples", type: "Float32Array", channels: 2 },
          Float32Array.of(1.5, 2.5, -1, 4),
          info(1, 2),
        );
        await f.submit(
          "i",
          { kind: "items" },
          [1, "a", { x: [2n] }],
          info(2, 3),
        );
        await f.submit("t", { kind: "text" }, "héllo", info(3, 5));
        // past the client's read buffer: read into a bulk string of its own
        const big = Uint8Array.from(
          { length: (1 << 20) + 3 },
          (_, i) => i % 251,
        );
        await f.submit("big", { kind: "bytes" }, big, info(4, big.length));
        const got = byId(await f.results(5));
        assertEquals(
          valueOf(got.get("big")),
          {
            index: 4,
            type: "Uint8Array",
            length: big.length,
            sum: big.reduce((a, b) => a + b, 0),
          },
        );
        assertEquals(got.get("b"), {
          id: "b",
          worker: `w-${mode}`,
          value: { index: 0, type: "Uint8Array", length: 256, sum: 32640 },
        });
        assertEquals(got.get("s"), {
          id: "s",
          worker: `w-${mode}`,
          value: { index: 1, type: "Float32Array", length: 4, sum: 7 },
        });
        assertEquals(got.get("i"), {
          id: "i",
          worker: `w-${mode}`,
          value: [1, "a", { x: [2n] }],
        });
        assertEquals(got.get("t"), {
          id: "t",
          worker: `w-${mode}`,
          value: "HÉLLO",
        });
        const stats = await worker.shutdown();
        assertEquals(stats.claimed, 5);
        assertEquals(stats.done, 5);
        assertEquals(stats.failed + stats.fenced + stats.handedBack, 0);
        await f.assertDrained();
        // It left the group: nothing is pending for it.
        const consumers = await f.admin.command(
          "XINFO",
          "CONSUMERS",
          STREAM,
          "ocycle",
        ) as unknown[][];
        assert(
          !consumers.some((c) =>
            c.some((v) => text(v as Uint8Array) === `w-${mode}`)
          ),
          "the worker left the group",
        );
      });
    }
  },
});

Deno.test({
  name:
    "runWorker() sends a callback's throw back as kind callback naming the worker",
  ignore,
  async fn(t) {
    await using f = await fleet();
    for (const mode of ["serial", "process"] as const) {
      await t.step(mode, async () => {
        const worker = f.start(`thrower-${mode}`, { mode });
        await f.submit("x", { kind: "items" }, [{ op: "throw" }], info(7, 1), {
          retries: 3,
          retryDelay: 10,
        });
        const r = failure((await f.results(1))[0]);
        assertEquals(r.worker, `thrower-${mode}`);
        assertEquals(r.kind, "callback");
        assertEquals(r.attempts, 1); // a throw is not retried
        assertEquals(r.error.name, "RangeError");
        assertEquals(r.error.message, "bad chunk 7");
        const stats = await worker.shutdown();
        assertEquals([stats.failed, stats.retried, stats.deadLettered], [
          1,
          0,
          0,
        ]);
        await f.assertDrained();
      });
    }
  },
});

Deno.test({
  name:
    "runWorker() retries a crash as the entry asks, then dead-letters it with an error of kind crash",
  ignore,
  async fn() {
    await using f = await fleet();
    const worker = f.start("crasher");
    await f.submit("c", { kind: "items" }, [{ op: "exit" }], info(4, 1), {
      retries: 2,
      retryDelay: 10,
    });
    const r = failure((await f.results(1))[0]);
    assertEquals([r.worker, r.kind, r.attempts], ["crasher", "crash", 3]);
    const stats = await worker.shutdown();
    assertEquals([stats.retried, stats.deadLettered, stats.failed], [2, 1, 1]);
    const dead = (await f.dead())[0] ?? new Map<string, string>();
    assertEquals(dead.get("id"), "c");
    assertEquals(dead.get("worker"), "crasher");
    assertEquals(dead.get("deliveries"), "1");
    assertStringIncludes(dead.get("error") ?? "", "crash");
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() dead-letters a poison entry with an error of kind protocol",
  ignore,
  async fn() {
    await using f = await fleet();
    const worker = f.start("poisoned", { mode: "serial" });
    await f.producer.submit(["v", "1", "id", "p", "info", "short"]);
    const r = failure((await f.results(1))[0]);
    assertEquals([r.id, r.worker, r.kind], ["p", "poisoned", "protocol"]);
    assertStringIncludes(r.error.message, "'info'");
    const stats = await worker.shutdown();
    assertEquals([stats.deadLettered, stats.done], [1, 0]);
    const [dead] = await f.dead();
    assertEquals(dead?.get("info"), "short");
    assertStringIncludes(dead?.get("error") ?? "", "poison entry");
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() dead-letters once an entry whose reply names a key that is no stream",
  ignore,
  async fn() {
    await using f = await fleet();
    // Written by hand: garbage fields, and a reply field naming a string key.
    await f.admin.command("SET", "victim", "x");
    await f.admin.command(
      "XADD",
      STREAM,
      "*",
      "v",
      "1",
      "id",
      "p",
      "info",
      "short",
      "reply",
      "victim",
    );
    // A good task whose result would go to that key.
    await f.admin.command(
      "XADD",
      STREAM,
      "*",
      ...encodeTaskEntry("t", info(0, 3), { kind: "text" }, "abc", clone),
      "reply",
      "victim",
    );
    const worker = f.start("w1", { mode: "serial" });
    await until(
      "both entries are dead-lettered",
      () =>
        f.lines.filter((l) => l.includes("went to the dead letter")).length ===
          2,
    );
    // Some more loop rounds: nothing written again.
    await sleep(1500);
    const stats = await worker.shutdown();
    const dead = await f.dead();
    assertEquals(dead.length, 2, Deno.inspect(f.lines.slice(0, 8)));
    assertStringIncludes(dead[0]?.get("error") ?? "", "poison entry");
    for (const d of dead) {
      assertStringIncludes(
        d.get("error") ?? "",
        "its reply key 'victim' holds no stream",
      );
    }
    assertEquals(dead[1]?.get("id"), "t");
    assertEquals([stats.deadLettered, stats.failed, stats.done], [2, 2, 0]);
    assertEquals(
      text(await f.admin.command("GET", "victim") as Uint8Array),
      "x",
    );
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() dead-letters without running an entry that maxStalls workers started and never ended; one delivered as often but never started runs, its retries unspent",
  ignore,
  async fn() {
    await using f = await fleet();
    await f.createGroup();
    const poison = await f.submit(
      "d",
      { kind: "items" },
      [{ op: "throw" }],
      info(5, 1),
      { retries: 1, retryDelay: 10 },
    );
    const fine = await f.submit("e", { kind: "text" }, "ok", info(6, 1), {
      retries: 0,
      retryDelay: 10,
    });
    // A ghost held both, idle for long, each delivered three times; three
    // workers started the first one and vanished, none started the second
    // (read ahead, or its delivery was lost in transit).
    await f.admin.command(
      "XREADGROUP",
      "GROUP",
      "ocycle",
      "ghost",
      "STREAMS",
      STREAM,
      ">",
    );
    for (const id of [poison, fine]) {
      await f.admin.command(
        "XCLAIM",
        STREAM,
        "ocycle",
        "ghost",
        0,
        id,
        "IDLE",
        60_000,
        "RETRYCOUNT",
        2,
        "JUSTID",
      );
    }
    await f.admin.command("HSET", startedHash(STREAM), poison, 3);
    const worker = f.start("heir", { mode: "serial" });
    const results = byId(await f.results(2));
    const r = failure(results.get("d"));
    assertEquals([r.worker, r.kind, r.attempts], ["heir", "crash", 3]);
    assertStringIncludes(r.error.message, "took down 3 workers in a row");
    assertEquals(valueOf(results.get("e")), "OK");
    const stats = await worker.shutdown();
    assertEquals([stats.reclaimed, stats.deadLettered, stats.done], [2, 1, 1]);
    const dead = await f.dead();
    assertEquals(dead.length, 1);
    assertEquals(dead[0]?.get("deliveries"), "3");
    // Every start count went with its entry.
    assertEquals(await f.admin.command("HLEN", startedHash(STREAM)), 0);
    await f.admin.command("XGROUP", "DELCONSUMER", STREAM, "ocycle", "ghost");
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() keeps a long chunk while it lives; another worker takes it over at once when it aborts",
  ignore,
  async fn() {
    await using f = await fleet();
    const a = f.start("a");
    await f.submit(
      "long",
      { kind: "items" },
      [{ op: "sleep", ms: 1500 }],
      info(1, 1),
    );
    await until("a claims", () => a.stats().claimed === 1);
    const b = f.start("b");
    const [first] = await f.results(1);
    // 1500 ms, well past staleAfter (400 ms): the heartbeat kept it a's.
    assertEquals(first?.worker, "a");
    assertEquals(b.stats().reclaimed, 0);
    await f.submit(
      "again",
      { kind: "items" },
      [{ op: "sleep", ms: 1500 }],
      info(2, 1),
    );
    await until(
      "one claims",
      () => a.stats().claimed + b.stats().claimed === 2,
    );
    const [holder, other] = a.stats().claimed === 2 ? [a, b] : [b, a];
    // a ran the first chunk: when b holds this one, the other is a.
    const doneBefore = other.stats().done;
    await sleep(300);
    const aborted = Date.now();
    const stats = await holder.abort();
    assertEquals(stats.handedBack, 1);
    await until(
      "the other takes it over",
      () => other.stats().reclaimed === 1,
      3000,
    );
    const took = Date.now() - aborted;
    assert(took < 1500, `taken over after ${took} ms`);
    const [second] = await f.results(1);
    assertEquals([second?.id, second?.worker], ["again", other.name]);
    assertEquals((await other.shutdown()).done, doneBefore + 1);
    await f.assertDrained();
  },
});

Deno.test({
  name: "runWorker() discards a stalled worker's late result (fenced)",
  ignore,
  async fn() {
    await using f = await fleet();
    // No heartbeat within staleAfter: a worker that stalls.
    const a = f.start("stalled", { heartbeat: 60_000 });
    await f.submit(
      "f",
      { kind: "items" },
      [{ op: "sleep", ms: 1500 }],
      info(1, 1),
    );
    await until("a claims", () => a.stats().claimed === 1);
    const b = f.start("b");
    await until("b takes it over", () => b.stats().reclaimed === 1);
    const [r] = await f.results(1);
    assertEquals(r?.worker, "b");
    await until("a's late commit", () => a.stats().fenced === 1);
    assertEquals(a.stats().done, 0);
    assertMatch(f.lines.join("\n"), /stalled: .*taken over by another worker/);
    await Promise.all([a.shutdown(), b.shutdown()]);
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() shutdown() finishes running chunks and hands back the rest at once",
  ignore,
  async fn() {
    await using f = await fleet();
    const permissions = { env: ["OCYCLE_CRASH"] };
    const a = f.start("a", {
      concurrency: 2,
      permissions,
      env: { OCYCLE_CRASH: "1" },
    });
    await f.submit(
      "run",
      { kind: "items" },
      [{ op: "sleep", ms: 1000 }],
      info(1, 1),
    );
    // crashes in a's children, then waits seconds for its retry: held, not running
    await f.submit(
      "wait",
      { kind: "items" },
      [{ op: "crashHere" }],
      info(2, 1),
      {
        retries: 1,
        retryDelay: 8000,
      },
    );
    await until("a waits to retry", () => a.stats().retried === 1);
    const stopping = a.shutdown();
    const b = f.start("b", { permissions });
    await until("b takes it over", () => b.stats().reclaimed === 1, 3000);
    const stats = await stopping;
    assertEquals([stats.done, stats.handedBack], [1, 1]);
    const got = byId(await f.results(2));
    assertEquals(got.get("run")?.worker, "a");
    assertEquals(got.get("wait"), {
      id: "wait",
      worker: "b",
      value: [{ op: "crashHere" }],
    });
    assertEquals((await b.shutdown()).done, 1);
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() shutdown() hands back the entries read ahead without starting them, though the slot they waited for frees up",
  ignore,
  async fn() {
    await using f = await fleet();
    const a = f.start("a", { mode: "serial" });
    // Fast chunks first: the worker then reads ahead of its one slot.
    for (let i = 0; i < 20; i++) {
      await f.submit(`fast${i}`, { kind: "text" }, "x", info(i, 1));
    }
    await f.results(20);
    await f.submit(
      "slow",
      { kind: "items" },
      [{ op: "sleep", ms: 800 }],
      info(20, 1),
    );
    for (let i = 0; i < 4; i++) {
      await f.submit(`ahead${i}`, { kind: "text" }, "y", info(21 + i, 1));
    }
    await until("a reads ahead", () => a.stats().claimed >= 22);
    const stopping = a.shutdown();
    const stats = await stopping;
    assertEquals(stats.done, 21);
    assert(stats.handedBack >= 1, `handed back: ${stats.handedBack}`);
    // None of them was started: no START went out for them, fenced or not.
    assertEquals(stats.fenced, 0, f.lines.join("\n"));
    assertEquals(await f.admin.command("HLEN", `${STREAM}:started`), 0);
    const b = f.start("b", { mode: "serial" });
    await f.results(1 + 4);
    assertEquals((await b.shutdown()).done, 4);
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() recreates its group when Redis restarts without its data, and goes on",
  ignore,
  async fn() {
    await using f = await fleet();
    const worker = f.start("survivor", { mode: "serial" });
    await f.submit("before", { kind: "text" }, "a", info(0, 1));
    assertEquals(valueOf((await f.results(1))[0]), "A");
    await f.server.stop();
    await f.server.restart(); // no persistence: stream and group are gone
    await f.submit("after", { kind: "text" }, "b", info(1, 1));
    assertEquals(valueOf((await f.results(1))[0]), "B");
    assertEquals((await worker.shutdown()).done, 2);
    assertMatch(f.lines.join("\n"), /survivor: Redis failed: /);
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() stops when its signal is aborted, handing back what it holds",
  ignore,
  async fn() {
    await using f = await fleet();
    const controller = new AbortController();
    const worker = f.start("signalled", { signal: controller.signal });
    await f.submit(
      "s",
      { kind: "items" },
      [{ op: "sleep", ms: 5000 }],
      info(0, 1),
    );
    await until("it claims", () => worker.stats().claimed === 1);
    controller.abort();
    const stats = await worker.finished;
    assertEquals([stats.handedBack, stats.done], [1, 0]);
    // held for the next worker, not lost
    const pending = await xpending(f.admin, STREAM, "ocycle");
    assertEquals(pending.count, 1);
    assertEquals([...pending.consumers.keys()], ["ocycle:handed-back"]);
  },
});

Deno.test({
  name:
    "runWorker() whose module cannot be loaded rejects finished and hands the chunk back",
  ignore,
  async fn() {
    await using f = await fleet();
    const worker = f.start("broken", {
      mode: "serial",
      module: new URL("./fixtures/redis/missing.ts", import.meta.url),
    });
    await f.submit("m", { kind: "text" }, "x", info(0, 1));
    const error = await worker.finished.then(
      () => new Error("finished resolved"),
      (e: unknown) => e as Error,
    );
    assertEquals(error.name, "ChunkError");
    assertStringIncludes(error.message, "could not be loaded");
    assertEquals(worker.stats().handedBack, 1);
    assertEquals((await xpending(f.admin, STREAM, "ocycle")).count, 1);
    // another worker runs it at once
    const healthy = f.start("healthy", { mode: "serial" });
    const [r] = await f.results(1);
    assertEquals(r?.worker, "healthy");
    // run, not dead-lettered: the hand-back did not count as a delivery
    assertEquals(valueOf(r), "X");
    assertEquals((await healthy.shutdown()).reclaimed, 1);
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() on a stream name whose key holds no stream rejects finished, naming it, instead of retrying forever",
  ignore,
  async fn() {
    await using f = await fleet();
    await f.admin.command("SET", STREAM, "not a stream");
    const worker = f.start("w1", { mode: "serial" });
    const error = await worker.finished.then(
      () => new Error("finished resolved"),
      (e: unknown) => e as Error,
    );
    assertEquals(error.name, "TypeError");
    assertStringIncludes(error.message, `the stream '${STREAM}'`);
    assertStringIncludes(error.message, "WRONGTYPE");
    assertEquals(
      text(await f.admin.command("GET", STREAM) as Uint8Array),
      "not a stream",
    );
    await f.admin.command("DEL", STREAM);
  },
});

Deno.test({
  name:
    "runWorker() bounds a run with timeout, retries it, then dead-letters it as kind timeout",
  ignore,
  async fn() {
    await using f = await fleet();
    const worker = f.start("slow", { timeout: 300 });
    await f.submit(
      "z",
      { kind: "items" },
      [{ op: "sleep", ms: 5000 }],
      info(0, 1),
      {
        retries: 1,
        retryDelay: 10,
      },
    );
    const r = failure((await f.results(1))[0]);
    assertEquals([r.worker, r.kind, r.attempts], ["slow", "timeout", 2]);
    const stats = await worker.shutdown();
    assertEquals([stats.retried, stats.deadLettered], [1, 1]);
    assertEquals((await f.dead())[0]?.get("id"), "z");
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() runs only the module it was started with, whatever an entry names",
  ignore,
  async fn() {
    await using f = await fleet();
    const evil = await Deno.makeTempFile({ suffix: ".ts" });
    const marker = `${evil}.ran`;
    await Deno.writeTextFile(
      evil,
      `Deno.writeTextFileSync(${JSON.stringify(marker)}, "ran");\n` +
        `export default () => "evil";\nexport const other = () => "evil";\n`,
    );
    try {
      f.start("w1", { mode: "serial" });
      // An entry that names code to run, in every way a message could: none
      // of these fields means anything to a worker.
      const fields = encodeTaskEntry(
        "t1",
        info(0, 3),
        { kind: "bytes" },
        new Uint8Array([1, 2, 3]),
        clone,
      );
      const url = new URL(`file://${evil}`).href;
      fields.push("module", url, "url", url, "exportName", "other");
      await f.producer.submit(fields);
      const [result] = await f.results(1);
      assertEquals(valueOf(result), {
        index: 0,
        type: "Uint8Array",
        length: 3,
        sum: 6,
      });
      assertEquals(await Deno.stat(marker).catch(() => null), null);
      await f.assertDrained();
    } finally {
      await Deno.remove(evil);
      await Deno.remove(marker).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "runWorker() reads no chunk ahead of slow callbacks: a serial worker holds one entry at a time",
  ignore,
  async fn() {
    await using f = await fleet();
    const a = f.start("a", { mode: "serial" });
    const n = 4;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        f.submit(
          `slow${i}`,
          { kind: "items" },
          [{ op: "sleep", ms: 150 }],
          info(i, 1),
        )),
    );
    let most = 0;
    while (a.stats().done < n) {
      const pending = await xpending(f.admin, STREAM, "ocycle");
      most = Math.max(most, pending.consumers.get("a") ?? 0);
      await sleep(20);
    }
    assertEquals(most, 1, "entries held by the worker at once");
    assertEquals((await f.results(n)).length, n);
    assertEquals((await a.shutdown()).claimed, n);
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() abort() ends within seconds while Redis is unreachable; the entry stays for others",
  ignore,
  async fn() {
    await using f = await fleet();
    const w = f.start("w1", { mode: "serial" });
    await f.submit(
      "long",
      { kind: "items" },
      [{ op: "sleep", ms: 1000 }],
      info(1, 1),
    );
    await until("w1 claims", () => w.stats().claimed === 1);
    await f.server.stop();
    const started = performance.now();
    const stats = await w.abort();
    const took = performance.now() - started;
    assert(took < 5000, `abort() took ${took | 0} ms`);
    assertEquals(stats.handedBack, 0);
    assert(
      f.lines.some((line) =>
        line.includes("gave up") || line.includes("giving up")
      ),
      f.lines.join("\n"),
    );
    await f.server.restart(); // for the fixture's clean-up
  },
});

Deno.test({
  name:
    "runWorker() reads fast chunks ahead, and shutdown() hands back those it has not run",
  ignore,
  async fn() {
    await using f = await fleet();
    const a = f.start("a", { mode: "serial" });
    const submitAll = (ids: string[], chunk: (id: string) => unknown) =>
      Promise.all(
        ids.map((id, i) =>
          f.submit(id, { kind: "items" }, chunk(id), info(i, 1))
        ),
      );
    // fast runs: the worker learns it may read ahead
    const warm = Array.from({ length: 40 }, (_, i) => `warm${i}`);
    await submitAll(warm, () => [{ n: 1 }]);
    await f.results(warm.length);
    // a slow chunk, and fast ones claimed while it runs
    const later = ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"];
    await submitAll(["slow"], () => [{ op: "sleep", ms: 2500 }]);
    await until("a runs the slow chunk", () => a.stats().claimed === 41);
    await submitAll(later, () => [{ n: 2 }]);
    await until("a reads ahead", () => a.stats().claimed > 41);
    await sleep(300); // a few more claim rounds
    // The slow chunk, and at most READ_AHEAD_MAX (4) read ahead of it.
    const held = (await xpending(f.admin, STREAM, "ocycle")).consumers.get("a");
    const stats = await a.shutdown();
    assert(held !== undefined && held <= 1 + 4, `a held ${held}`);
    assertEquals(stats.claimed, 41 + stats.handedBack);
    assert(stats.handedBack >= 1, `handed back: ${stats.handedBack}`);
    assertEquals(stats.done, 41);
    // what a handed back, another worker runs at once
    const b = f.start("b", { mode: "serial" });
    const got = byId(await f.results(1 + later.length));
    assertEquals(got.get("slow")?.worker, "a");
    for (const id of later) assertEquals(got.get(id)?.worker, "b");
    const bStats = await b.shutdown();
    assertEquals(bStats.reclaimed, stats.handedBack);
    assertEquals(bStats.claimed + bStats.reclaimed, later.length);
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "fleet names read the host name only where granted: in a terminal without --allow-sys, no prompt",
  ignore: Deno.build.os !== "linux" || !(await commandExists("script", "-V")),
  async fn() {
    const fixture = new URL("./fixtures/redis/host_name.ts", import.meta.url)
      .pathname;
    const map = new URL("../.ci/import_map.json", import.meta.url).pathname;
    const run = async (flags: string) => {
      // `script` gives the child a terminal, where Deno would prompt.
      const { stdout } = await new Deno.Command("script", {
        args: [
          "-qec",
          `${Deno.execPath()} run ${flags} --import-map=${map} ${fixture}`,
          "/dev/null",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
        signal: AbortSignal.timeout(20_000),
      }).output();
      return new TextDecoder().decode(stdout).replaceAll("\r", "");
    };
    const denied = await run("--allow-read");
    assert(!denied.includes("requests sys access"), denied);
    assertStringIncludes(denied, "host=undefined");
    const granted = await run("--allow-read --allow-sys=hostname");
    assertStringIncludes(granted, `host=${Deno.hostname()}`);
  },
});

Deno.test({
  name:
    "runWorker() in thread mode with pool 2 holds only what its pool starts (2), not pool × concurrency (16): the rest stays for other workers",
  ignore,
  async fn() {
    await using f = await fleet();
    for (let i = 0; i < 20; i++) {
      await f.submit(
        `s${i}`,
        { kind: "items" },
        [{ op: "sleep", ms: 1500 }],
        info(i, 1),
      );
    }
    const worker = f.start("t", { mode: "thread", pool: 2, concurrency: 8 });
    await until("it claims", () => worker.stats().claimed >= 2);
    await sleep(600); // a few more claim rounds
    const pending = await xpending(f.admin, STREAM, "ocycle");
    assertEquals(pending.consumers.get("t"), 2, "entries it holds");
    assertEquals(worker.stats().claimed, 2);
    const stats = await worker.abort();
    assertEquals(stats.handedBack, 2);
  },
});

/** Each pending entry's [consumer, delivery count], by entry id. */
async function deliveries(
  admin: RedisClient,
): Promise<Map<string, [string, number]>> {
  const rows = await admin.command(
    "XPENDING",
    STREAM,
    "ocycle",
    "-",
    "+",
    100,
  ) as [Uint8Array, Uint8Array, number, number][];
  return new Map(rows.map(([id, c, , n]) => [text(id), [text(c), n]]));
}

/**
 * Adds a text entry delivered once, to the consumer `ghost` (a worker that
 * vanished), long idle, and started by `starts` workers that never ended it.
 */
async function ghostEntry(
  f: Awaited<ReturnType<typeof fleet>>,
  id: string,
  starts = 0,
): Promise<string> {
  // In one transaction, so that no worker blocked on the stream takes it.
  const [, , , reply] = await Promise.all([
    f.admin.command("MULTI"),
    f.admin.command(
      "XADD",
      STREAM,
      "*",
      ...encodeTaskEntry(id, info(0, 1), { kind: "text" }, "g", clone),
      "reply",
      f.producer.results,
    ),
    f.admin.command(
      "XREADGROUP",
      "GROUP",
      "ocycle",
      "ghost",
      "COUNT",
      1,
      "STREAMS",
      STREAM,
      ">",
    ),
    f.admin.command("EXEC"),
  ]) as unknown[];
  const entry = text((reply as [Uint8Array])[0]);
  await f.admin.command(
    "XCLAIM",
    STREAM,
    "ocycle",
    "ghost",
    0,
    entry,
    "IDLE",
    60_000,
    "RETRYCOUNT",
    1,
    "JUSTID",
  );
  if (starts > 0) {
    await f.admin.command("HSET", startedHash(STREAM), entry, starts);
  }
  return entry;
}

/** A serial worker that has run fast chunks (so it reads ahead), now running a slow one. */
async function readingAhead(f: Awaited<ReturnType<typeof fleet>>) {
  await f.createGroup();
  const a = f.start("a", { mode: "serial" });
  for (let i = 0; i < 20; i++) {
    await f.submit(`fast${i}`, { kind: "text" }, "x", info(i, 1));
  }
  await f.results(20);
  await f.submit(
    "slow",
    { kind: "items" },
    [{ op: "sleep", ms: 3000 }],
    info(20, 1),
  );
  await until("a runs the slow chunk", () => a.stats().claimed === 21);
  return a;
}

Deno.test({
  name:
    "runWorker() aborted hands back a running chunk and one waiting to retry as neither a death nor a delivery",
  ignore,
  async fn() {
    await using f = await fleet();
    const permissions = { env: ["OCYCLE_CRASH"] };
    const a = f.start("a", {
      pool: 2,
      permissions,
      env: { OCYCLE_CRASH: "1" },
    });
    const running = await f.submit(
      "run",
      { kind: "items" },
      [{ op: "sleep", ms: 5000 }],
      info(1, 1),
    );
    // crashes in a's children, then waits seconds for its retry
    const waiting = await f.submit(
      "wait",
      { kind: "items" },
      [{ op: "crashHere" }],
      info(2, 1),
      { retries: 1, retryDelay: 8000 },
    );
    await until("a waits to retry", () => a.stats().retried === 1);
    assertEquals(
      await f.admin.command("HGET", startedHash(STREAM), running),
      new TextEncoder().encode("1"),
    );
    const stats = await a.abort();
    assertEquals([stats.handedBack, stats.done], [2, 0]);
    // Both start counts went down again, and both delivery counts.
    assertEquals(await f.admin.command("HLEN", startedHash(STREAM)), 0);
    const held = await deliveries(f.admin);
    assertEquals(held.get(running), [HANDED_BACK, 0]);
    assertEquals(held.get(waiting), [HANDED_BACK, 0]);
    // The next worker runs both as first deliveries.
    const b = f.start("b", { permissions, timeout: 300 });
    const got = byId(await f.results(2));
    assertEquals(got.get("wait"), {
      id: "wait",
      worker: "b",
      value: [{ op: "crashHere" }],
    });
    assertEquals(failure(got.get("run")).kind, "timeout");
    assertEquals((await f.dead())[0]?.get("deliveries"), "1");
    await b.shutdown();
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() dead-letters as poison an entry taken over on its second delivery once maxStalls (1) worker started it",
  ignore,
  async fn() {
    await using f = await fleet();
    await f.createGroup();
    // Delivered once to a worker that started it and vanished.
    await ghostEntry(f, "p", 1);
    const worker = f.start("heir", { mode: "serial", maxStalls: 1 });
    const r = failure((await f.results(1))[0]);
    assertEquals([r.worker, r.kind, r.attempts], ["heir", "crash", 1]);
    assertStringIncludes(r.error.message, "took down 1 worker in a row");
    const stats = await worker.shutdown();
    assertEquals([stats.reclaimed, stats.deadLettered, stats.done], [1, 1, 0]);
    assertEquals((await f.dead())[0]?.get("deliveries"), "2");
    await f.admin.command("XGROUP", "DELCONSUMER", STREAM, "ocycle", "ghost");
    await f.assertDrained();
  },
});

Deno.test({
  name:
    "runWorker() shutdown() hands back a taken-over entry it read ahead and never started with its start count as it was",
  ignore,
  async fn() {
    await using f = await fleet();
    const a = await readingAhead(f);
    // A worker started it and vanished: one death, that stays counted.
    const ghost = await ghostEntry(f, "g", 1);
    await until("a takes it over, ahead", () => a.stats().reclaimed === 1);
    const stats = await a.shutdown();
    assertEquals([stats.done, stats.handedBack, stats.fenced], [21, 1, 0]);
    assertEquals(
      await f.admin.command("HGET", startedHash(STREAM), ghost),
      new TextEncoder().encode("1"),
    );
    assertEquals((await deliveries(f.admin)).get(ghost)?.[0], HANDED_BACK);
  },
});

Deno.test({
  name:
    "runWorker() runs no entry read ahead whose START is fenced: another worker took it over while it waited for a slot",
  ignore,
  async fn() {
    await using f = await fleet();
    const a = await readingAhead(f);
    const ghost = await ghostEntry(f, "g");
    await until("a takes it over, ahead", () => a.stats().reclaimed === 1);
    // Another worker takes it while a's slot is busy, and keeps it (its
    // heartbeat) until a's START.
    await f.admin.command("XCLAIM", STREAM, "ocycle", "thief", 0, ghost);
    for (const deadline = Date.now() + 15_000; a.stats().fenced === 0;) {
      if (Date.now() > deadline) throw new Error("a's START was not fenced");
      await f.admin.command(
        "XCLAIM",
        STREAM,
        "ocycle",
        "thief",
        0,
        ghost,
        "JUSTID",
      );
      await sleep(50);
    }
    const stats = await a.shutdown();
    // Not run: no commit to fence, no result.
    assertEquals([stats.done, stats.fenced], [21, 1]);
    assertEquals((await f.results(1))[0]?.id, "slow");
    assertEquals((await deliveries(f.admin)).get(ghost)?.[0], "thief");
    assertEquals(await f.admin.command("HLEN", startedHash(STREAM)), 0);
  },
});

Deno.test("runWorker() names a bad maxStalls and its value", () => {
  for (const maxStalls of [0, 1.5, -1]) {
    assertThrows(
      () =>
        runWorker({
          url: "redis://127.0.0.1:1",
          stream: STREAM,
          module: HANDLER,
          maxStalls,
        }),
      RangeError,
      `'maxStalls' must be a positive integer: received number ${maxStalls}`,
    );
  }
});
