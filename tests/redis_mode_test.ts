// Copyright the @ocycle/core authors. MIT license.
// Redis mode, the producer side (fleet/_producer.ts), against a real redis-server
// and a scripted worker of the test's own (the fleet protocol by hand), so
// that each reply the producer must survive can be made on purpose: results
// exactly once, errors naming the worker, backpressure, timeouts, a result
// repeated or late, entries lost with Redis, abort and close always ending.
// The real workers (fleet_worker.ts, `ocycle worker`) have tests of their own.

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { deadline } from "@std/async/deadline";
import { deserialize, serialize } from "node:v8";
import { BufferEmit, ChunkError, ItemEmit, SampleEmit } from "../mod.ts";
import { runWorker } from "../redis.ts";
import type { ChunkErrorKind, ChunkInfo } from "../mod.ts";
import { RedisClient } from "../src/fleet/_client.ts";
import { RedisRunner } from "../src/fleet/_producer.ts";
import { MAX_LOSSES } from "../src/run/_retry_policy.ts";
import { type ClaimedEntry, FleetWorker } from "../src/fleet/_protocol.ts";
import { xpending } from "../src/fleet/_streams.ts";
import {
  decodeTaskEntry,
  encodeResultEntry,
  type TaskEntry,
} from "../src/wire/_entries.ts";
import { RedisServer, skipWithoutRedis } from "./_redis_server.ts";

const ignore = skipWithoutRedis("redis_mode_test.ts");
const STREAM = "chunks";
const HANDLER = new URL("./fixtures/redis/producer_echo.ts", import.meta.url);
const clone = (value: unknown) => new Uint8Array(serialize(value));
const parse = (bytes: Uint8Array) => deserialize(bytes);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Answer = (task: TaskEntry) => unknown | Promise<unknown>;

/** What the scripted worker does with one task: its result, or how it fails. */
interface Script {
  answer?: Answer;
  /** Throws in place of answering: an error result of kind "callback". */
  throws?: (task: TaskEntry) => string | undefined;
  /** The kind and attempts an error result says, as a worker that gave up on a chunk does. */
  gaveUp?: (
    task: TaskEntry,
  ) => { kind: ChunkErrorKind; attempts: number } | undefined;
  /** Never answers (the entry stays pending). */
  silent?: (task: TaskEntry) => boolean;
  /** Answers twice. */
  twice?: boolean;
}

/** A worker of the test's own: claims, answers as scripted, commits. */
class ScriptedWorker {
  readonly fleet: FleetWorker;
  readonly seen: TaskEntry[] = [];
  readonly #script: Script;
  readonly #url: string;
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(url: string, name: string, script: Script) {
    this.#url = url;
    this.fleet = new FleetWorker(url, {
      stream: STREAM,
      consumer: name,
      block: 50,
      heartbeat: 0,
      client: { connectTimeout: 500, maxDelay: 100 },
    });
    this.#script = script;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let entries: ClaimedEntry[];
      try {
        entries = await this.fleet.claim();
      } catch {
        this.fleet.resetGroup(); // Redis may have come back empty
        await sleep(50);
        continue;
      }
      for (const entry of entries) void this.#answer(entry);
    }
  }

  async #answer(entry: ClaimedEntry): Promise<void> {
    const task = decodeTaskEntry(entry.fields, parse);
    this.seen.push(task);
    const { answer = (t) => t.chunk, throws, gaveUp, silent, twice } =
      this.#script;
    if (silent?.(task)) return;
    const message = throws?.(task);
    const outcome = message !== undefined
      ? {
        worker: this.fleet.consumer,
        error: { name: "RangeError", message },
        ...gaveUp?.(task),
      }
      : { worker: this.fleet.consumer, value: await answer(task) };
    const fields = encodeResultEntry(task.id, outcome, clone);
    try {
      if (twice) {
        // A repeated result, as an at-least-once fleet may send.
        const client = new RedisClient(this.#url);
        await client.command("XADD", entry.reply, "*", ...fields);
        await client.close();
      }
      await this.fleet.commit(entry, fields);
    } catch {
      // Redis went away: the entry stays pending.
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
    await this.fleet.close();
  }
}

/** A server and scripted workers, all stopped at the end. */
async function fleet(...scripts: Script[]) {
  const server = await RedisServer.start();
  const workers = scripts.map((s, i) =>
    new ScriptedWorker(server.url, `w${i}`, s)
  );
  const admin = await RedisClient.connect(server.url);
  return {
    server,
    url: server.url,
    workers,
    admin,
    async drained(): Promise<void> {
      assertEquals(await admin.command("XLEN", STREAM), 0);
      const keys = await admin.command("KEYS", `${STREAM}:results:*`);
      assertEquals(keys, [], "the producer's result stream is deleted");
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(workers.map((w) => w.stop()));
      await admin.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

function collect() {
  const done: [unknown, ChunkInfo][] = [];
  const errors: ChunkError[] = [];
  return {
    done,
    errors,
    onDone: (value: unknown, info: ChunkInfo) => done.push([value, info]),
    onError: (error: ChunkError) => errors.push(error),
  };
}

Deno.test({
  name:
    "redis mode: every chunk's result reaches onDone once, in bytes, samples and items",
  ignore,
  async fn() {
    await using f = await fleet({}, {});
    const bytes = collect();
    const emitter = new BufferEmit(HANDLER, 4, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM },
      onDone: bytes.onDone,
      onError: bytes.onError,
    });
    assertEquals(emitter.mode, "redis");
    const all = Uint8Array.from({ length: 64 }, (_, i) => i * 4);
    for (let i = 0; i < 64; i += 8) emitter.write(all.subarray(i, i + 8));
    await emitter.close();
    assertEquals(bytes.errors, []);
    assertEquals(bytes.done.length, 16);
    const back = bytes.done.sort((a, b) => a[1].index - b[1].index);
    assertEquals(
      back.flatMap(([v]) => [...(v as Uint8Array)]),
      [...all],
    );
    assertEquals(emitter.stats.done, 16);

    const samples = collect();
    const s = new SampleEmit(HANDLER, 3, {
      mode: "redis",
      clip: true,
      type: Int16Array,
      channels: 2,
      redis: { url: f.url, stream: STREAM },
      onDone: samples.onDone,
    });
    s.write(Int16Array.from([1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6]));
    await s.close();
    assertEquals(
      samples.done.sort((a, b) => a[1].index - b[1].index).map(([v]) => [
        ...(v as Int16Array),
      ]),
      [[1, -1, 2, -2, 3, -3], [4, -4, 5, -5, 6, -6]],
    );

    const items = collect();
    const it = new ItemEmit<{ n: number }, unknown>(HANDLER, 2, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM },
      onDone: items.onDone,
    });
    it.write([{ n: 1 }, { n: 2 }, { n: 3 }]);
    await it.close();
    assertEquals(
      items.done.sort((a, b) => a[1].index - b[1].index).map(([v]) => v),
      [[{ n: 1 }, { n: 2 }], [{ n: 3 }]],
    );
    await f.drained();
  },
});

Deno.test({
  name:
    "redis mode: a callback's error is a ChunkError of that chunk naming the worker",
  ignore,
  async fn() {
    await using f = await fleet({
      throws: (t) => t.info.index === 1 ? "bad chunk" : undefined,
    });
    const c = collect();
    const emitter = new BufferEmit(HANDLER, 2, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM },
      ...c,
    });
    emitter.write(new Uint8Array(6));
    await emitter.close();
    assertEquals(c.done.length, 2);
    assertEquals(c.errors.length, 1);
    const error = c.errors[0]!;
    assert(error instanceof ChunkError);
    assertEquals([error.kind, error.mode, error.worker], [
      "callback",
      "redis",
      "w0",
    ]);
    assertEquals(error.info.index, 1);
    assertStringIncludes(
      error.message,
      ": the callback threw RangeError: bad chunk (worker w0)",
    );
    assertEquals((error.cause as Error).name, "RangeError");
    await f.drained();
  },
});

Deno.test({
  name:
    "redis mode: a chunk the fleet gave up on fails with the kind and attempts its worker said",
  ignore,
  async fn() {
    await using f = await fleet({
      throws: (t) => t.info.index === 0 ? undefined : "it fell over",
      gaveUp: (t) =>
        t.info.index === 1 ? { kind: "crash", attempts: 3 } : undefined,
    });
    const c = collect();
    const emitter = new BufferEmit(HANDLER, 2, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM },
      ...c,
    });
    emitter.write(new Uint8Array(6));
    await emitter.close();
    assertEquals(c.done.length, 1);
    const [crash, thrown] = [...c.errors].sort((a, b) =>
      a.info.index - b.info.index
    );
    // Given up on after 3 attempts: said, and not blamed on a throw.
    assertEquals([crash!.kind, crash!.info.index], ["crash", 1]);
    assertStringIncludes(
      crash!.message,
      ": RangeError: it fell over (after 3 attempts) (worker w0)",
    );
    // One attempt says nothing of attempts.
    assertEquals([thrown!.kind, thrown!.info.index], ["callback", 2]);
    assertStringIncludes(
      thrown!.message,
      ": the callback threw RangeError: it fell over (worker w0)",
    );
    await f.drained();
  },
});

Deno.test({
  name:
    "redis mode: inFlight bounds the chunks in the stream; write() says false and ready waits",
  ignore,
  async fn() {
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    await using f = await fleet({ answer: async (t) => (await gate, t.chunk) });
    const c = collect();
    const emitter = new BufferEmit(HANDLER, 1, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM, inFlight: 3 },
      maxPending: 2,
      ...c,
    });
    const said: boolean[] = [];
    for (let i = 0; i < 6; i++) said.push(emitter.write(new Uint8Array([i])));
    assertEquals(said.slice(0, 4), [true, true, true, true]);
    assertEquals(said[5], false);
    await sleep(200);
    assertEquals(emitter.stats.inFlight, 3);
    assertEquals(await f.admin.command("XLEN", STREAM), 3);
    let ready = false;
    const waiting = emitter.ready.then(() => ready = true);
    await sleep(50);
    assertEquals(ready, false);
    release();
    await waiting;
    await emitter.close();
    assertEquals(c.done.length, 6);
    await f.drained();
  },
});

Deno.test({
  name:
    "redis mode: a repeated result settles its chunk once; timeout fails a chunk no worker answers and deletes its entry",
  ignore,
  async fn() {
    await using f = await fleet({
      twice: true,
      silent: (t) => t.info.index === 2,
    });
    const c = collect();
    const emitter = new BufferEmit(HANDLER, 1, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM },
      timeout: 400,
      ...c,
    });
    emitter.write(new Uint8Array([1, 2, 3, 4]));
    await emitter.close();
    assertEquals(c.done.length, 3);
    assertEquals(new Set(c.done.map(([, i]) => i.index)).size, 3);
    assertEquals(c.errors.map((e) => [e.kind, e.info.index]), [["timeout", 2]]);
    assert(
      c.errors[0]!.message.includes(
        "no result came from the fleet within 400 ms",
      ),
      c.errors[0]!.message,
    );
    assertEquals(emitter.stats.done, 3);
    assertEquals(emitter.stats.failed, 1);
    // The silent chunk's entry is gone; it stays pending for w0 only in the
    // group's log, which XAUTOCLAIM clears.
    assertEquals(await f.admin.command("XLEN", STREAM), 0);
  },
});

Deno.test({
  name:
    "redis mode: entries lost with Redis are added again under retries, or fail naming the URL",
  ignore,
  async fn() {
    await using f = await fleet({ silent: () => true });
    // Both entries in the stream: added, or added again (a clear failure,
    // not a hang, when they never come).
    const twoEntries = () =>
      deadline(
        (async () => {
          while ((await f.admin.command("XLEN", STREAM)) !== 2) await sleep(20);
        })(),
        30_000,
      );
    for (const retries of [0, 1]) {
      const c = collect();
      const emitter = new BufferEmit(HANDLER, 2, {
        mode: "redis",
        clip: true,
        redis: { url: f.url, stream: STREAM },
        retries,
        retryDelay: 10,
        ...c,
      });
      emitter.write(new Uint8Array(4));
      // Both entries are claimed and held, then vanish as with a Redis that
      // came back empty.
      await twoEntries();
      await f.admin.command("DEL", STREAM);
      if (retries === 0) {
        // A loss is the broker's fault: added again without spending
        // `retries`, up to MAX_LOSSES times; lost once more, they fail.
        for (let lost = 1; lost <= MAX_LOSSES; lost++) {
          await twoEntries();
          await f.admin.command("DEL", STREAM);
        }
        await emitter.close();
        assertEquals(c.errors.map((e) => e.kind), ["crash", "crash"]);
        assert(
          c.errors[0]!.message.includes(`at ${f.url}`),
          c.errors[0]!.message,
        );
        assert(c.errors[0]!.message.includes("without a result"));
        assert(c.errors[0]!.message.includes(`(lost ${MAX_LOSSES + 1} times)`));
        assertEquals(emitter.stats.retried, 2 * MAX_LOSSES);
      } else {
        // Added again: the entries are back for a worker to take.
        await twoEntries();
        assertEquals(emitter.stats.retried, 2);
        await emitter.abort(new Error("enough"));
        assertEquals(c.errors.map((e) => e.kind), ["aborted", "aborted"]);
        // Aborted chunks' entries are deleted, so no worker starts them.
        assertEquals(await f.admin.command("XLEN", STREAM), 0);
      }
    }
  },
});

Deno.test({
  name:
    "redis mode: Redis killed and restarted mid-run: every chunk comes back once, close() ends",
  ignore,
  async fn() {
    await using f = await fleet();
    await using _worker = runWorker({
      url: f.url,
      stream: STREAM,
      module: HANDLER,
      mode: "serial",
      log: () => {},
    });
    const c = collect();
    const emitter = new BufferEmit(HANDLER, 1, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM },
      retries: 3,
      retryDelay: 50,
      ...c,
    });
    emitter.write(new Uint8Array([1, 2]));
    while (c.done.length < 2) await sleep(10);
    await f.server.stop();
    emitter.write(new Uint8Array([3, 4]));
    await sleep(300);
    await f.server.restart();
    emitter.write(new Uint8Array([5]));
    await emitter.close();
    assertEquals(c.errors, []);
    assertEquals(
      c.done.map(([v]) => (v as Uint8Array)[0]).sort(),
      [1, 2, 3, 4, 5],
    );
  },
});

Deno.test({
  name:
    "redis mode: an unreachable server fails each chunk naming the URL; close() ends",
  ignore,
  async fn() {
    const server = await RedisServer.start();
    const { url } = server;
    await server[Symbol.asyncDispose]();
    const c = collect();
    const emitter = new BufferEmit(HANDLER, 1, {
      mode: "redis",
      clip: true,
      redis: { url, stream: STREAM },
      ...c,
    });
    emitter.write(new Uint8Array([1]));
    await emitter.close();
    assertEquals(c.errors.map((e) => e.kind), ["crash"]);
    assert(c.errors[0]!.message.includes(url), c.errors[0]!.message);
  },
});

Deno.test("redis mode: bad options name the option and the value", () => {
  const make = (options: Record<string, unknown>) => () =>
    new BufferEmit(HANDLER, 4, { mode: "redis", ...options });
  const cases: [Record<string, unknown>, string][] = [
    [
      {},
      `'redis' must be an object with 'url' and 'stream': received undefined`,
    ],
    [
      { redis: { stream: "s" } },
      `'redis.url' must be a non-empty string: received undefined`,
    ],
    [
      { redis: { url: "redis://h", stream: "" } },
      `'redis.stream' must be a non-empty string`,
    ],
    [
      { redis: { url: "http://h", stream: "s" } },
      `'redis.url' must be a redis:// or rediss:// URL`,
    ],
    [
      { redis: { url: "redis://h", stream: "s", inFlight: 0 } },
      `'redis.inFlight' must be a positive integer: received number 0`,
    ],
    [
      { redis: { url: "redis://h", stream: "s", inFlight: 1.5 } },
      `'redis.inFlight' must be a positive integer: received number 1.5`,
    ],
    [
      { redis: { url: "redis://h", stream: "s", group: "" } },
      `'redis.group' must be a non-empty string: received string ""`,
    ],
  ];
  for (const [options, text] of cases) {
    const error = assertThrows(make(options), Error);
    assert(error.message.includes(text), error.message);
  }
  assertThrows(
    () =>
      new BufferEmit(HANDLER, 4, { redis: { url: "redis://h", stream: "s" } }),
    TypeError,
    `'redis' is for mode "redis": received mode "serial"`,
  );
  assertThrows(
    () =>
      new BufferEmit(() => 1, 4, {
        mode: "redis",
        clip: true,
        redis: { url: "redis://h", stream: "s" },
      }),
    TypeError,
    "a function cannot cross into a worker on another machine",
  );
});

Deno.test({
  name: "redis mode: a password in the URL never shows in an error",
  ignore,
  async fn() {
    const c = collect();
    const emitter = new BufferEmit(HANDLER, 1, {
      mode: "redis",
      clip: true,
      redis: { url: "redis://me:hunter2@127.0.0.1:1", stream: STREAM },
      ...c,
    });
    emitter.write(new Uint8Array([1]));
    await emitter.close();
    assertEquals(c.errors.length, 1);
    assert(!c.errors[0]!.message.includes("hunter2"), c.errors[0]!.message);
    await assertRejects(() => Promise.reject(c.errors[0]), ChunkError);
  },
});

Deno.test({
  name: "redis mode: nothing is left pending in the group once the run is done",
  ignore,
  async fn() {
    await using f = await fleet({}, {}, {});
    const emitter = new BufferEmit(HANDLER, 16, {
      mode: "redis",
      clip: true,
      redis: { url: f.url, stream: STREAM },
    });
    for (let i = 0; i < 50; i++) emitter.write(new Uint8Array(16));
    await emitter.close();
    assertEquals(emitter.stats.done, 50);
    assertEquals((await xpending(f.admin, STREAM, "ocycle")).count, 0);
    await f.drained();
  },
});

Deno.test({
  name:
    "redis mode: chunks that wait with no worker reading the group are said once; a worker's results end it",
  ignore,
  async fn() {
    await using f = await fleet();
    const lines: string[] = [];
    const runner = new RedisRunner({
      owner: "BufferEmit",
      url: f.url,
      stream: STREAM,
      group: "ocycle",
      inFlight: 4,
      layout: { kind: "bytes" },
      timeout: Infinity,
      retries: 0,
      retryDelay: 100,
      quietAfter: 300,
      log: (line) => lines.push(line),
    });
    const info = (index: number) => ({
      index,
      offset: index,
      length: 1,
      t0: 0,
      reason: "size" as const,
      final: false,
    });
    const task = (index: number) => ({
      chunk: new Uint8Array([index]),
      info: info(index),
      buffer: undefined,
      lost: false,
      owned: true,
    });
    const first = runner.run(task(7));
    while (lines.length === 0) await sleep(50);
    assertEquals(lines.length, 1);
    assert(
      lines[0]!.startsWith(
        `no worker reads the stream '${STREAM}' in group 'ocycle' at ${f.url}: 1 chunk(s) wait`,
      ),
      lines[0],
    );
    await using _worker = runWorker({
      url: f.url,
      stream: STREAM,
      module: HANDLER,
      mode: "serial",
      log: () => {},
    });
    assertEquals(await first, new Uint8Array([7]));
    assertEquals(lines.slice(1), ["results come from the fleet again"]);
    await runner.close();
  },
});

Deno.test({
  name:
    "redis mode: a repeated result is dropped, counted and said, never settled twice",
  ignore,
  async fn() {
    await using f = await fleet({ twice: true });
    const lines: string[] = [];
    const runner = new RedisRunner({
      owner: "BufferEmit",
      url: f.url,
      stream: STREAM,
      group: "ocycle",
      inFlight: 4,
      layout: { kind: "bytes" },
      timeout: Infinity,
      retries: 0,
      retryDelay: 100,
      log: (line) => lines.push(line),
    });
    const task = {
      chunk: new Uint8Array([9]),
      info: {
        index: 0,
        offset: 0,
        length: 1,
        t0: 0,
        reason: "size" as const,
        final: false,
      },
      buffer: undefined,
      lost: false,
      owned: true,
    };
    assertEquals(await runner.run(task), new Uint8Array([9]));
    while (lines.length === 0) await sleep(20);
    assertEquals(lines, [
      "dropped a result of task 1 from worker w0, as its chunk had settled already (timed out, aborted or answered); 1 dropped so far",
    ]);
    await runner.close();
  },
});
