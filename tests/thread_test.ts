// Copyright the @ocycle/core authors. MIT license.
// Thread mode: chunks run in a pool of module Workers. Every test closes or
// aborts its emitter, which terminates every Worker it started. Timeouts are
// generous deadlines, never measurements.

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  BufferEmit,
  type BufferEmitOptions,
  ChunkError,
  type ChunkInfo,
  type EmitterStats,
  ItemEmit,
  SampleEmit,
  TextEmit,
} from "../mod.ts";
import { Outbox } from "../src/pool/_outbox.ts";
import type { Echo, Handshake } from "./fixtures/thread/echo.ts";
import {
  BUSY,
  CLOSE,
  EXIT,
  HANG,
  HANG_ASYNC,
  OK,
  RANDOM,
  REJECT,
  SLOW,
  THROW,
  UNCAUGHT,
} from "./fixtures/thread/faults.ts";
import { DIE_ONCE } from "./fixtures/thread/retry.ts";

const fixture = (name: string) =>
  new URL(`./fixtures/thread/${name}`, import.meta.url);
const ECHO = fixture("echo.ts");
const FAULTS = fixture("faults.ts");

/** A frame whose first byte tells the faults fixture what to do. */
const cmd = (what: number, size = 4) => {
  const frame = new Uint8Array(size);
  frame[0] = what;
  return frame;
};

interface Log<R> {
  done: Map<number, R>;
  errors: ChunkError[];
  onDone: (result: R, info: ChunkInfo) => void;
  onError: (error: ChunkError, info: ChunkInfo) => void;
}

/** Collects results and errors, and checks that no chunk settles twice. */
function log<R>(): Log<R> {
  const done = new Map<number, R>();
  const errors: ChunkError[] = [];
  const seen = new Set<number>();
  const once = (info: ChunkInfo) => {
    assert(!seen.has(info.index), `chunk ${info.index} settled twice`);
    seen.add(info.index);
  };
  return {
    done,
    errors,
    onDone: (result, info) => {
      once(info);
      done.set(info.index, result);
    },
    onError: (error, info) => {
      once(info);
      assertEquals(error.info, info);
      errors.push(error);
    },
  };
}

/** The results in a log, by chunk index. */
function inOrder<R>(l: Log<R>): R[] {
  return [...l.done.keys()].sort((a, b) => a - b).map((i) => l.done.get(i)!);
}

/** A thread-mode BufferEmit of 4-byte frames on the faults fixture, and its log. */
function faults(
  options: BufferEmitOptions<number>,
): { l: Log<number>; emitter: BufferEmit<number> } {
  const l = log<number>();
  const emitter = new BufferEmit<number>(FAULTS, 4, {
    mode: "thread",
    ...options,
    ...l,
  });
  return { l, emitter };
}

/** Every pooled buffer is exactly one of free, out, given, discarded or lost. */
function assertBuffers(stats: EmitterStats): void {
  const b = stats.buffers;
  assertEquals(
    b.created,
    b.free + b.out + b.given + b.discarded + b.lost,
    `buffer counts do not add up: ${JSON.stringify(b)}`,
  );
}

function assertClosed(stats: EmitterStats): void {
  assertBuffers(stats);
  assertEquals(stats.buffers.out, 0);
  assertEquals(stats.workers, 0);
  assertEquals(stats.pending, 0);
}

/** Resolves once `check` holds, polling; fails after a generous deadline. */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets the chunks given to Workers leave (they go at the end of a task). */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A deterministic pseudo-random generator. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

Deno.test("BufferEmit in thread mode rejects a function callback", () => {
  assertThrows(
    () => new BufferEmit(() => {}, 4, { mode: "thread" }),
    TypeError,
    "a function cannot cross into a Worker: pass the URL of a module",
  );
});

Deno.test("BufferEmit in thread mode delivers the chunks serial mode delivers", async (t) => {
  const next = random(1);
  const frames: Uint8Array[] = [];
  for (let i = 0; i < 60; i++) {
    const frame = new Uint8Array(Math.floor(next() * 40));
    for (let j = 0; j < frame.length; j++) frame[j] = (i * 31 + j) & 0xff;
    frames.push(frame);
  }
  const run = async (
    options: Record<string, unknown>,
  ): Promise<Echo[]> => {
    const l = log<Echo>();
    const emitter = new BufferEmit<Echo>(ECHO, 16, { ...options, ...l });
    let t0 = 1000;
    for (const frame of frames) {
      if (!emitter.write(frame, t0++)) await emitter.ready;
    }
    await emitter.close();
    assertClosed(emitter.stats);
    assertEquals(l.errors, []);
    return inOrder(l);
  };
  for (
    const shape of [{}, { clip: true }, { clip: true, hop: 5 }, {
      clip: true,
      hop: 23,
    }]
  ) {
    for (const borrow of [false, true]) {
      await t.step(`${JSON.stringify(shape)} borrow ${borrow}`, async () => {
        const serial = await run({ ...shape, borrow });
        const thread = await run({ ...shape, borrow, mode: "thread", pool: 2 });
        assert(serial.length > 5);
        assertEquals(thread, serial);
      });
    }
  }
});

Deno.test("SampleEmit in thread mode rebuilds Int16Array chunks of 2 channels", async () => {
  const run = async (mode: "serial" | "thread", borrow: boolean) => {
    const l = log<Echo>();
    const emitter = new SampleEmit<Int16Array, Echo>(ECHO, 7, {
      type: Int16Array,
      channels: 2,
      clip: true,
      hop: 5,
      mode,
      pool: 2,
      borrow,
      ...l,
    });
    for (let i = 0; i < 40; i++) {
      const frame = new Int16Array(2 * (i % 6));
      for (let j = 0; j < frame.length; j++) frame[j] = i * 100 - j * 7;
      emitter.write(frame, i);
    }
    await emitter.close();
    assertClosed(emitter.stats);
    assertEquals(l.errors, []);
    return inOrder(l);
  };
  for (const borrow of [false, true]) {
    const serial = await run("serial", borrow);
    const thread = await run("thread", borrow);
    assert(thread.every((e) => e.chunk instanceof Int16Array));
    assert(
      thread.every((e) => (e.chunk as Int16Array).length === e.info.length * 2),
    );
    assertEquals(thread, serial);
  }
});

Deno.test("ItemEmit and TextEmit in thread mode clone their chunks", async () => {
  const items = async (mode: "serial" | "thread") => {
    const l = log<Echo>();
    const emitter = new ItemEmit<unknown, Echo>(ECHO, 3, {
      clip: true,
      hop: 2,
      mode,
      pool: 2,
      ...l,
    });
    for (let i = 0; i < 20; i++) {
      emitter.write([{ i }, `s${i}`, [i, i + 1]].slice(0, i % 4), i);
    }
    await emitter.close();
    assertEquals(l.errors, []);
    return inOrder(l);
  };
  assertEquals(await items("thread"), await items("serial"));
  const text = async (mode: "serial" | "thread") => {
    const l = log<Echo>();
    const emitter = new TextEmit<Echo>(ECHO, 5, { clip: true, mode, ...l });
    for (let i = 0; i < 20; i++) {
      emitter.write("héllo 🌍 wörld".slice(0, i % 9), i);
    }
    await emitter.close();
    assertEquals(l.errors, []);
    return inOrder(l);
  };
  assertEquals(await text("thread"), await text("serial"));
});

Deno.test("BufferEmit in thread mode imports the callback module once per Worker", async () => {
  const l = log<{ id: string; calls: number; imports: number }>();
  const emitter = new BufferEmit(fixture("setup.ts"), 1, {
    mode: "thread",
    pool: 2,
    ...l,
  });
  for (let i = 0; i < 40; i++) {
    if (!emitter.write(new Uint8Array(1))) await emitter.ready;
  }
  await until(() => l.done.size === 40, "40 chunks done");
  assertEquals(emitter.stats.workers, 2);
  await emitter.close();
  assertEquals(emitter.stats.workers, 0);
  const results = [...l.done.values()];
  const ids = new Set(results.map((r) => r.id));
  assert(ids.size >= 1 && ids.size <= 2, `${ids.size} Workers`);
  assert(results.every((r) => r.imports === 1));
  let total = 0;
  for (const id of ids) {
    total += Math.max(
      ...results.filter((r) => r.id === id).map((r) => r.calls),
    );
  }
  assertEquals(total, 40);
});

Deno.test("BufferEmit in thread mode gives each result its own info in any completion order (RELIABILITY 2)", async () => {
  const { l, emitter } = faults({
    pool: 2,
    concurrency: 3,
    borrow: true,
  });
  for (let i = 0; i < 100; i++) {
    if (!emitter.write(cmd(RANDOM), i)) await emitter.ready;
  }
  await emitter.close();
  assertEquals(l.errors, []);
  assertEquals(l.done.size, 100);
  for (const [index, result] of l.done) assertEquals(result, index);
  assertEquals(emitter.stats.done, 100);
  assertClosed(emitter.stats);
  assertEquals(emitter.stats.buffers.lost, 0);
});

Deno.test("BufferEmit in thread mode reports a throw and a rejection and keeps the Worker (RELIABILITY 3)", async () => {
  const { l, emitter } = faults({
    pool: 1,
    borrow: true,
  });
  const plan = [OK, THROW, OK, REJECT, OK, THROW, OK];
  for (const what of plan) emitter.write(cmd(what));
  await emitter.close();
  assertEquals([...l.done.keys()].sort(), [0, 2, 4, 6]);
  // In completion order, which may put the rejection after a later throw:
  // look each error up by its chunk's index.
  l.errors.sort((a, b) => a.info.index - b.info.index);
  assertEquals(l.errors.map((e) => e.info.index), [1, 3, 5]);
  for (const error of l.errors) {
    assert(error instanceof ChunkError);
    assertEquals(error.kind, "callback");
    assertEquals(error.mode, "thread");
    assertStringIncludes(error.message, `Chunk ${error.info.index} `);
    assertStringIncludes(error.message, "thread mode");
  }
  assertStringIncludes(l.errors[0]!.message, "bad chunk 1");
  assertEquals((l.errors[0]!.cause as Error).name, "RangeError");
  assertStringIncludes(l.errors[1]!.message, "rejected chunk 3");
  assertEquals(emitter.stats.replaced, 0);
  assertClosed(emitter.stats);
  // Borrowed buffers came back with the errors too.
  assertEquals(emitter.stats.buffers.lost, 0);
});

Deno.test("BufferEmit in thread mode without onError rejects close() with the callback's error", async () => {
  const emitter = new BufferEmit(FAULTS, 4, { mode: "thread", pool: 1 });
  emitter.write(cmd(THROW));
  await assertRejects(() => emitter.close(), ChunkError, "bad chunk 0");
  assertEquals(emitter.stats.workers, 0);
});

Deno.test("BufferEmit in thread mode replaces a Worker killed by an uncaught async throw (RELIABILITY 4, 19)", async () => {
  const { l, emitter } = faults({
    pool: 1,
    concurrency: 1,
    borrow: true,
  });
  emitter.write(cmd(OK));
  emitter.write(cmd(UNCAUGHT));
  await until(() => l.errors.length === 1, "the crash");
  const crash = l.errors[0]!;
  assertEquals(crash.kind, "crash");
  assertEquals(crash.mode, "thread");
  assertEquals(crash.info.index, 1);
  assertStringIncludes(crash.message, "uncaught in chunk 1");
  assertStringIncludes(crash.message, "will be replaced");
  // What the Worker threw is kept as the cause.
  assertStringIncludes(String(crash.cause), "uncaught in chunk 1");
  for (let i = 0; i < 5; i++) emitter.write(cmd(OK));
  await emitter.close();
  assertEquals([...l.done.keys()].sort(), [0, 2, 3, 4, 5, 6]);
  const stats = emitter.stats;
  assertEquals(stats.replaced, 1);
  assertEquals(stats.buffers.lost, 1);
  assertClosed(stats);
});

Deno.test("BufferEmit in thread mode replaces a Worker that ends itself (RELIABILITY 5)", async (t) => {
  for (
    const [what, how] of [[CLOSE, "self.close()"], [
      EXIT,
      "Deno.exit() with code 7",
    ]] as const
  ) {
    await t.step(how, async () => {
      // No timeout: the parent learns of the end from the Worker entry.
      const { l, emitter } = faults({ pool: 1, concurrency: 1, borrow: true });
      emitter.write(cmd(OK));
      emitter.write(cmd(what));
      emitter.write(cmd(OK));
      await emitter.close();
      assertEquals([...l.done.keys()].sort(), [0, 2]);
      assertEquals(l.errors.length, 1);
      assertEquals(l.errors[0]!.kind, "crash");
      assertStringIncludes(l.errors[0]!.message, how);
      assertEquals(emitter.stats.replaced, 1);
      assertEquals(emitter.stats.buffers.lost, 1);
      assertClosed(emitter.stats);
    });
  }
});

Deno.test("BufferEmit in thread mode keeps the results a Worker held when it ends itself", async () => {
  // Found by mutation testing: the replies of one message leave together, so
  // chunk 0's result is still held when chunk 1, in the same message, calls
  // self.close(). The entry sends it before it says it is closing.
  const { l, emitter } = faults({ pool: 1, concurrency: 2, borrow: true });
  emitter.write(cmd(OK));
  emitter.write(cmd(CLOSE));
  await emitter.close();
  assertEquals([...l.done.keys()], [0]);
  assertEquals(l.errors.map((e) => [e.info.index, e.kind]), [[1, "crash"]]);
  assertStringIncludes(l.errors[0]!.message, "self.close()");
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode times out a hung callback and replaces its Worker (RELIABILITY 5, 6)", async (t) => {
  for (const what of [HANG, HANG_ASYNC]) {
    await t.step(
      what === HANG ? "a busy loop" : "a promise that never settles",
      async () => {
        const { l, emitter } = faults({
          pool: 2,
          concurrency: 1,
          timeout: 2_000,
          borrow: true,
        });
        // Warm up both Workers so that start-up does not count against the deadline.
        emitter.write(cmd(OK));
        emitter.write(cmd(OK));
        await until(() => l.done.size === 2, "warm-up");
        emitter.write(cmd(what));
        for (let i = 0; i < 20; i++) {
          if (!emitter.write(cmd(OK))) await emitter.ready;
        }
        await emitter.close();
        assertEquals(l.errors.length, 1);
        const error = l.errors[0]!;
        assertEquals(error.kind, "timeout");
        assertEquals(error.info.index, 2);
        assertStringIncludes(error.message, "did not settle within 2000 ms");
        // The chunks on the other Worker were unaffected.
        assertEquals(l.done.size, 22);
        assertEquals(emitter.stats.replaced, 1);
        assertEquals(emitter.stats.buffers.lost, 1);
        assertClosed(emitter.stats);
      },
    );
  }
});

Deno.test("BufferEmit in thread mode charges a chunk's timeout from its start, not from its wait", async () => {
  // Eight chunks of 50 ms sent to one Worker at once: the last starts after
  // 350 ms, well past the timeout, yet each runs well within it.
  const { l, emitter } = faults({ pool: 1, concurrency: 8, timeout: 200 });
  for (let i = 0; i < 8; i++) emitter.write(cmd(BUSY));
  await emitter.close();
  assertEquals(l.errors.map((e) => e.message), []);
  assertEquals([...l.done.keys()].sort((a, b) => a - b), [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
  ]);
  assertEquals(emitter.stats.replaced, 0);
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode times out a chunk that hangs behind another on the same Worker", async () => {
  // One Worker holding two chunks: the first replies at once, and the clock
  // of the second, which never settles, must start then.
  // The first Worker of a run may type-check its module, which can take
  // longer than the timeout: start one without a timeout first.
  const warm = new BufferEmit(FAULTS, 4, { mode: "thread", pool: 1 });
  warm.write(cmd(OK));
  await warm.close();
  const { l, emitter } = faults({ pool: 1, concurrency: 2, timeout: 1_000 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    emitter.write(cmd(OK));
    await until(() => l.done.size === 1, "the Worker to be ready");
    emitter.write(cmd(OK)); // both leave in one message to the same Worker
    emitter.write(cmd(HANG_ASYNC));
    const closed = await Promise.race([
      emitter.close().then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), 10_000);
      }),
    ]);
    assert(closed, "close() did not end: the hung chunk never timed out");
  } finally {
    clearTimeout(timer);
    await emitter.abort();
  }
  assertEquals(l.errors.map((e) => [e.kind, e.info.index]), [["timeout", 2]]);
  assertStringIncludes(l.errors[0]!.message, "did not settle within 1000 ms");
  assertEquals([...l.done.keys()].sort(), [0, 1]);
  assertEquals(emitter.stats.replaced, 1);
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode sends the result before a chunk that hangs in a busy loop", async () => {
  // With a timeout, the Worker must not hold the first chunk's result back
  // for the rest of its batch: the second never lets its event loop run.
  const { l, emitter } = faults({ pool: 1, concurrency: 4, timeout: 1_000 });
  emitter.write(cmd(OK));
  await until(() => l.done.size === 1, "the Worker to be ready");
  // Both leave in one message: with four chunks per Worker, even a slow
  // Worker gets batches of two.
  emitter.write(cmd(OK));
  emitter.write(cmd(HANG));
  await emitter.close();
  assertEquals(l.errors.map((e) => [e.kind, e.info.index]), [["timeout", 2]]);
  assertEquals([...l.done.keys()].sort(), [0, 1]);
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode times out chunks whose Worker never becomes ready", async () => {
  const l = log<number>();
  const emitter = new BufferEmit<number>(fixture("hangs_on_load.ts"), 4, {
    mode: "thread",
    pool: 1,
    timeout: 300,
    ...l,
  });
  emitter.write(new Uint8Array(8));
  emitter.write(new Uint8Array(4));
  await emitter.close();
  assertEquals(l.errors.map((e) => [e.kind, e.info.index]), [
    ["timeout", 0],
    ["timeout", 1],
  ]);
  assertStringIncludes(
    l.errors[0]!.message,
    "no Worker was ready to take the chunk within 300 ms (the callback module's top-level code may still be running)",
  );
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode fails the chunks queued on a timed-out Worker with a clear error", async () => {
  const { l, emitter } = faults({
    pool: 1,
    concurrency: 2,
    timeout: 1_000,
  });
  emitter.write(cmd(OK));
  await until(() => l.done.size === 1, "warm-up");
  emitter.write(cmd(HANG));
  emitter.write(cmd(OK));
  await until(() => l.errors.length === 2, "the timeout");
  emitter.write(cmd(OK));
  await emitter.close();
  const [timeout, victim] = l.errors;
  assertEquals(timeout!.kind, "timeout");
  assertEquals(timeout!.info.index, 1);
  assertEquals(victim!.kind, "crash");
  assertEquals(victim!.info.index, 2);
  assertStringIncludes(
    victim!.message,
    "because chunk 1 on the same Worker timed out",
  );
  assertEquals([...l.done.keys()].sort(), [0, 3]);
  assertEquals(emitter.stats.replaced, 1);
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode fails every chunk fast when Workers cannot start (startup)", async (t) => {
  const cases: [string, URL | string, string][] = [
    ["a missing module", fixture("missing.ts"), "missing.ts"],
    [
      "an export that is not a function",
      fixture("not_function.ts"),
      "export 'default' is not a function: received number",
    ],
    [
      "a throw at the top level",
      fixture("top_throw.ts"),
      "the model file is missing",
    ],
  ];
  for (const [name, url, fragment] of cases) {
    await t.step(name, async () => {
      const l = log<number>();
      const emitter = new BufferEmit(url, 4, {
        mode: "thread",
        pool: 2,
        ...l,
      });
      for (let i = 0; i < 6; i++) emitter.write(cmd(OK));
      await until(() => l.errors.length === 6, "six start-up errors");
      // Later chunks fail at once, and no Worker is started again.
      for (let i = 0; i < 3; i++) emitter.write(cmd(OK));
      assertEquals(emitter.stats.workers, 0);
      await emitter.close();
      assertEquals(l.errors.length, 9);
      for (const error of l.errors) {
        assertEquals(error.kind, "startup");
        assertEquals(error.mode, "thread");
        assertStringIncludes(
          error.message,
          "could not be started in 3 Workers in a row",
        );
        assertStringIncludes(error.message, fragment);
      }
      assertClosed(emitter.stats);
    });
  }
});

Deno.test("BufferEmit in thread mode recycles borrowed buffers and gives owned ones away (RELIABILITY 19)", async () => {
  const { emitter } = faults({
    pool: 2,
    clip: true,
    borrow: true,
    maxPending: 4,
  });
  for (let i = 0; i < 500; i++) {
    if (!emitter.write(cmd(OK, 6))) await emitter.ready;
    assertBuffers(emitter.stats);
  }
  await emitter.close();
  const stats = emitter.stats;
  assertEquals(stats.done, 750);
  assertClosed(stats);
  assertEquals(stats.buffers.lost, 0);
  assertEquals(stats.buffers.given, 0);
  // Slots (pool 2 x the default concurrency 8), waiting chunks and the
  // buffer being filled: a bounded set, reused.
  assert(
    stats.buffers.created <= 2 * 8 + 4 + 3,
    `created ${stats.buffers.created}`,
  );

  const { l: owned, emitter: own } = faults({ pool: 2, clip: true });
  for (let i = 0; i < 50; i++) {
    if (!own.write(cmd(OK, 4))) await own.ready;
  }
  await own.close();
  assertClosed(own.stats);
  assertEquals(own.stats.buffers.given, 50);
  assertEquals(owned.done.size, 50);
});

Deno.test("BufferEmit in thread mode sends a slow callback's result before the rest of its batch runs", async () => {
  // Six chunks written at once reach the Worker as one batch. Each callback
  // takes 10 ms, then waits for the parent to have seen the result before
  // it: replies held for the whole batch would leave it waiting in vain.
  const flags = new Int32Array(new SharedArrayBuffer(4 * 6));
  const seen: boolean[] = [];
  const emitter = new ItemEmit<Handshake, boolean>(ECHO, 1, {
    mode: "thread",
    pool: 1,
    exportName: "awaitPrevious",
    onDone: (result, info) => {
      seen[info.index] = result;
      Atomics.store(flags, info.index, 1);
      Atomics.notify(flags, info.index);
    },
  });
  for (let index = 0; index < 6; index++) emitter.write([{ flags, index }]);
  await emitter.close();
  assertEquals(seen, [true, true, true, true, true, true]);
});

Deno.test("BufferEmit in thread mode counts a buffer the callback detached as lost", async () => {
  const l = log<number>();
  const emitter = new BufferEmit<number>(ECHO, 4, {
    mode: "thread",
    pool: 1,
    borrow: true,
    exportName: "detach",
    ...l,
  });
  for (let i = 0; i < 3; i++) emitter.write(cmd(OK));
  await emitter.close();
  assertEquals([...l.done.values()], [4, 4, 4]);
  assertEquals(emitter.stats.buffers.lost, 3);
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode reports a result or a chunk that cannot be cloned", async () => {
  const l = log<unknown>();
  const emitter = new BufferEmit(ECHO, 4, {
    mode: "thread",
    pool: 1,
    borrow: true,
    exportName: "unclonable",
    ...l,
  });
  emitter.write(cmd(OK));
  emitter.write(cmd(OK));
  await emitter.close();
  assertEquals(l.errors.length, 2);
  assertStringIncludes(
    l.errors[0]!.message,
    "cannot be sent back from the Worker",
  );
  assertEquals(emitter.stats.replaced, 0);
  assertEquals(emitter.stats.buffers.lost, 0);
  assertClosed(emitter.stats);

  const items = log<unknown>();
  const itemEmit = new ItemEmit(ECHO, 1, { mode: "thread", pool: 1, ...items });
  itemEmit.write([() => {}]);
  itemEmit.write([1]);
  await itemEmit.close();
  assertEquals(items.errors.length, 1);
  assertStringIncludes(
    items.errors[0]!.message,
    "could not be sent to a Worker",
  );
  assertEquals([...items.done.keys()], [1]);
});

Deno.test("BufferEmit in thread mode keeps buffers bounded under a fast writer and a slow callback (RELIABILITY 16)", async (t) => {
  await t.step("writable applies backpressure", async () => {
    const { l, emitter } = faults({
      pool: 2,
      concurrency: 1,
      maxPending: 2,
      borrow: true,
    });
    let pulled = 0;
    let most = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        most = Math.max(most, pulled - emitter.stats.done);
        if (pulled++ === 60) controller.close();
        else controller.enqueue(cmd(SLOW));
      },
    }, { highWaterMark: 0 });
    await source.pipeTo(emitter.writable);
    assertEquals(l.done.size, 60);
    // Two running, two waiting, and a frame or two in the streams.
    assert(most <= 2 + 2 + 3, `${most} frames ahead of the callbacks`);
    assert(emitter.stats.buffers.created <= 2 + 2 + 3);
    assertClosed(emitter.stats);
  });
  await t.step("a drop policy counts what it dropped", async () => {
    const { emitter } = faults({
      pool: 1,
      concurrency: 1,
      maxPending: 2,
      overflow: "drop-newest",
      borrow: true,
    });
    for (let i = 0; i < 30; i++) emitter.write(cmd(SLOW));
    await emitter.close();
    const stats = emitter.stats;
    assert(stats.droppedChunks > 0);
    assertEquals(stats.done + stats.droppedChunks, 30);
    assert(stats.buffers.created <= 1 + 2 + 3);
    assertClosed(stats);
  });
});

Deno.test("BufferEmit.writable in thread mode rejects pipeTo with the chunk's error and aborts (RELIABILITY 17)", async (t) => {
  await t.step("a failing chunk", async () => {
    const emitter = new BufferEmit(FAULTS, 4, {
      mode: "thread",
      pool: 1,
      maxPending: 1,
    });
    const frames = [cmd(OK), cmd(THROW), cmd(OK), cmd(OK), cmd(OK)];
    const error = await assertRejects(
      () => ReadableStream.from(frames).pipeTo(emitter.writable),
      ChunkError,
      "bad chunk 1",
    );
    assertEquals((error as ChunkError).kind, "callback");
    await emitter.abort();
    assertClosed(emitter.stats);
  });
  await t.step(
    "abort(reason) stops in-flight work and accounts for its buffers",
    async () => {
      const { l, emitter } = faults({
        pool: 1,
        concurrency: 2,
        borrow: true,
        // Far off: it only makes the Worker reply to each chunk at once.
        timeout: 60_000,
      });
      const writer = emitter.writable.getWriter();
      await writer.write(cmd(OK));
      await until(() => l.done.size === 1, "first chunk");
      await writer.write(cmd(HANG));
      await writer.write(cmd(HANG_ASYNC));
      await tick();
      await writer.abort(new Error("user stop"));
      assertEquals(l.errors.map((e) => e.kind), ["aborted", "aborted"]);
      assertStringIncludes(l.errors[0]!.message, "user stop");
      // The hung chunk went down with its Worker. The next one either went
      // too, or was still held back for the busy Worker (which depends on how
      // fast the Worker has been): then its buffer returned to the pool.
      const [ran, next] = l.errors;
      assertEquals(ran!.info.index, 1);
      assertStringIncludes(ran!.message, "while the chunk ran");
      assertEquals(next!.info.index, 2);
      const sent = next!.message.includes("while the chunk ran");
      if (!sent) {
        assertStringIncludes(next!.message, "before a Worker took the chunk");
      }
      const stats = emitter.stats;
      assertEquals(stats.buffers.lost, sent ? 2 : 1);
      assertClosed(stats);
    },
  );
  await t.step("close() flushes the tail and waits", async () => {
    const { l, emitter } = faults({
      pool: 2,
    });
    await ReadableStream.from([cmd(SLOW, 6), cmd(SLOW, 6), cmd(SLOW, 1)])
      .pipeTo(emitter.writable);
    assertEquals(l.done.size, 3);
    assertEquals(l.done.get(2), 2);
    assertEquals(emitter.stats.emitted, 3);
    assertClosed(emitter.stats);
  });
});

Deno.test("BufferEmit in thread mode drains on close() and stops on abort() (RELIABILITY 18)", async (t) => {
  await t.step("close() drains every queued chunk", async () => {
    const { l, emitter } = faults({
      pool: 2,
      concurrency: 1,
      maxPending: Infinity,
    });
    for (let i = 0; i < 30; i++) emitter.write(cmd(SLOW));
    assert(emitter.stats.queued > 0);
    await emitter.close();
    assertEquals(l.done.size, 30);
    assertClosed(emitter.stats);
    assertThrows(() => emitter.write(cmd(OK)), TypeError, "closed");
  });
  await t.step(
    "abort() rejects queued work and terminates running work",
    async () => {
      const { l, emitter } = faults({
        pool: 2,
        concurrency: 1,
        maxPending: Infinity,
        borrow: true,
      });
      emitter.write(cmd(OK));
      emitter.write(cmd(OK));
      await until(() => l.done.size === 2, "both Workers ready");
      emitter.write(cmd(HANG));
      emitter.write(cmd(HANG));
      for (let i = 0; i < 10; i++) emitter.write(cmd(OK));
      await tick();
      await emitter.abort(new Error("shutdown"));
      assertEquals(l.errors.length, 12);
      assert(l.errors.every((e) => e.kind === "aborted"));
      assertStringIncludes(
        l.errors[0]!.message,
        "before the chunk ran: shutdown",
      );
      // Chunk 2 ran on a ready Worker; chunk 3 may have waited for the other.
      const running = l.errors.find((e) => e.info.index === 2)!;
      assertStringIncludes(
        running.message,
        "while the chunk ran: its Worker was terminated",
      );
      const stats = emitter.stats;
      assertEquals(stats.droppedChunks, 10);
      assert(stats.buffers.lost >= 1 && stats.buffers.lost <= 2);
      assertClosed(stats);
      await assertRejects(() => emitter.close(), Error, "shutdown");
      assertThrows(() => emitter.write(cmd(OK)), Error, "shutdown");
    },
  );
  await t.step("an AbortSignal stops it the same way", async () => {
    const controller = new AbortController();
    const { l, emitter } = faults({ pool: 1, signal: controller.signal });
    emitter.write(cmd(OK));
    emitter.write(cmd(HANG_ASYNC));
    await until(() => l.done.size === 1, "a Worker");
    controller.abort(new Error("signalled"));
    await assertRejects(() => emitter.close(), Error, "signalled");
    // close() rejects at once; the abort it reports finishes on its own.
    await until(() => emitter.stats.pending === 0, "the abort");
    assertEquals(l.errors.map((e) => e.kind), ["aborted"]);
    assertClosed(emitter.stats);
  });
});

Deno.test("BufferEmit in thread mode with an already-aborted signal starts nothing (RELIABILITY 20)", async () => {
  const { l, emitter } = faults({
    pool: 2,
    signal: AbortSignal.abort(new Error("too late")),
  });
  assertThrows(() => emitter.write(cmd(OK)), Error, "too late");
  await assertRejects(() => emitter.ready, Error, "too late");
  await assertRejects(() => emitter.close(), Error, "too late");
  assertEquals(emitter.stats.emitted, 0);
  assertEquals(emitter.stats.workers, 0);
  assertEquals(l.errors, []);
});

Deno.test("BufferEmit in thread mode accounts for every buffer after mixed faults (RELIABILITY 19)", async () => {
  const { l, emitter } = faults({
    pool: 2,
    concurrency: 2,
    timeout: 5_000,
    borrow: true,
    maxPending: 4,
  });
  const plan = [OK, THROW, UNCAUGHT, OK, REJECT, CLOSE, OK, EXIT, RANDOM, OK];
  for (let round = 0; round < 3; round++) {
    for (const what of plan) {
      if (!emitter.write(cmd(what))) await emitter.ready;
      assertBuffers(emitter.stats);
    }
  }
  await emitter.close();
  const stats = emitter.stats;
  assertEquals(l.done.size + l.errors.length, 30);
  assertEquals(stats.done + stats.failed, 30);
  for (const error of l.errors) {
    assert(["callback", "crash"].includes(error.kind), error.message);
  }
  for (const [index, result] of l.done) assertEquals(result, index);
  // Up to nine Workers ended themselves or died (a chunk that went down with
  // an earlier Worker never ran); each took its chunks' buffers with it.
  assert(stats.replaced >= 3 && stats.replaced <= 9, `${stats.replaced}`);
  assertEquals(
    stats.buffers.lost,
    l.errors.filter((e) => e.kind === "crash").length,
  );
  assertClosed(stats);
});

Deno.test("BufferEmit in thread mode bounds its queue for a writer that ignores write()'s false (RELIABILITY 28)", async () => {
  const { l, emitter } = faults({ pool: 1, concurrency: 2, maxPending: 2 });
  let writes = 0;
  assertThrows(
    () => {
      for (;;) {
        emitter.write(cmd(SLOW));
        writes++;
      }
    },
    RangeError,
    "'maxQueued'",
  );
  // Two in the Worker, 64 (the default for maxPending 2) waiting.
  assertEquals(writes, 2 + 64);
  assertEquals(emitter.stats.queued, 64);
  await emitter.close();
  assertEquals(l.done.size, 66);
});

/** An outbox as the pool drives it: `held` counts the chunks sent and not answered. */
function outbox(concurrency: number) {
  const batches: number[][] = [];
  let held = 0;
  const box: Outbox<number> = new Outbox<number>(concurrency, (jobs) => {
    box.sending(held);
    held += jobs.length;
    batches.push(jobs);
  });
  return {
    batches,
    box,
    push: (job: number) => box.push(job, held),
    /** The worker answers `n` chunks in one message. */
    reply: (n: number) => {
      for (let i = 0; i < n; i++) box.replied();
      held -= n;
      box.turn(held);
    },
  };
}

Deno.test("Outbox sends at the end of the task while the worker runs low, and holds chunks for a busy one", async () => {
  // Four chunks per Worker: it leaves while the Worker holds at most one.
  const { batches, box, push, reply } = outbox(4);
  push(0);
  assertEquals(batches, [], "nothing leaves before the task ends");
  await Promise.resolve();
  assertEquals(batches, [[0]]);
  push(1); // it holds one: still low
  await Promise.resolve();
  assertEquals(batches, [[0], [1]]);
  push(2);
  push(3);
  await tick();
  assertEquals(batches, [[0], [1]], "it holds two: enough to keep busy");
  assertEquals(box.length, 2);
  reply(1);
  await Promise.resolve();
  assertEquals(batches, [[0], [1], [2, 3]]);
  assertEquals(box.length, 0);
});

Deno.test("Outbox sends a slow worker batches of half its chunks", async () => {
  // Four chunks per Worker: batches of two.
  const { batches, push, reply } = outbox(4);
  push(0);
  await Promise.resolve();
  await new Promise((resolve) => setTimeout(resolve, 5));
  // One chunk in 5 ms or more: far over SLOW_MS (0.1 ms) per chunk.
  reply(1);
  push(1); // now it holds none: low, so everything written in this task leaves
  push(2);
  push(3);
  push(4);
  push(5);
  await Promise.resolve();
  assertEquals(batches, [[0], [1, 2], [3, 4], [5]]);
  // It holds five: a slow one's outbox leaves once it makes a batch.
  push(6);
  await Promise.resolve();
  assertEquals(batches.length, 4, "one chunk is not a batch yet");
  push(7);
  await Promise.resolve();
  assertEquals(batches.at(-1), [6, 7]);
});

Deno.test({
  name:
    "BufferEmit in thread mode names the Worker when abort() fails a chunk it had not taken",
  // Found by mutation testing: the pool worded it "before a worker took the
  // chunk" in every mode, where thread mode says "Worker" (as the test of
  // RELIABILITY 17 expects whenever the chunk was still held back).
  fn: async () => {
    const { l, emitter } = faults({ pool: 1, concurrency: 8 });
    emitter.write(cmd(OK));
    await until(() => l.done.size === 1, "the Worker to be ready");
    for (let i = 0; i < 4; i++) emitter.write(cmd(HANG_ASYNC));
    await tick();
    // The Worker holds four chunks: the fifth waits in its outbox.
    emitter.write(cmd(HANG_ASYNC));
    await emitter.abort(new Error("stop"));
    const held = l.errors.find((e) => e.info.index === 5)!;
    assertStringIncludes(
      held.message,
      "the emitter was aborted before a Worker took the chunk: stop",
    );
    assertClosed(emitter.stats);
  },
});

Deno.test("BufferEmit in thread mode retries a chunk whose Worker died, with its bytes intact", async (t) => {
  // Chunk i holds 8 bytes from 10 * i; chunk 1 ends its Worker on its first attempt.
  const chunk = (i: number) => {
    const bytes = Uint8Array.from({ length: 8 }, (_, k) => 10 * i + k);
    if (i === 1) bytes[0] = DIE_ONCE;
    return bytes;
  };
  const run = async (options: BufferEmitOptions<number[]>) => {
    const dir = await Deno.makeTempDir();
    Deno.env.set("OCYCLE_RETRY_DIR", dir);
    try {
      const done = new Map<number, number[]>();
      const errors: ChunkError[] = [];
      const emitter = new BufferEmit<number[]>(fixture("retry.ts"), 8, {
        mode: "thread",
        pool: 1,
        concurrency: 1,
        onDone: (result, info) => {
          assert(!done.has(info.index), `chunk ${info.index} done twice`);
          done.set(info.index, result);
        },
        onError: (error) => errors.push(error),
        ...options,
      });
      for (let i = 0; i < 3; i++) {
        await emitter.ready;
        emitter.write(chunk(i));
      }
      await emitter.close();
      return { done, errors, stats: emitter.stats };
    } finally {
      Deno.env.delete("OCYCLE_RETRY_DIR");
      await Deno.remove(dir, { recursive: true });
    }
  };
  for (const borrow of [true, false]) {
    await t.step(`retries: 1, borrow: ${borrow}`, async () => {
      const { done, errors, stats } = await run({
        retries: 1,
        retryDelay: 10,
        borrow,
      });
      assertEquals(errors.map((e) => e.message), []);
      for (let i = 0; i < 3; i++) {
        assertEquals(done.get(i), Array.from(chunk(i)), `chunk ${i}`);
      }
      assertEquals(stats.retried, 1);
      assertEquals(stats.replaced, 1);
      // The Worker died with a copy: the buffer stayed in the parent.
      assertEquals(stats.buffers.lost, 0);
      assertEquals(stats.buffers.given, 0);
      assertClosed(stats);
    });
  }
  await t.step("retries: 0 fails the chunk as before", async () => {
    const { done, errors, stats } = await run({ borrow: true });
    assertEquals([...done.keys()].sort(), [0, 2]);
    assertEquals(errors.length, 1);
    assertEquals(errors[0]!.kind, "crash");
    assertEquals(errors[0]!.info.index, 1);
    assertEquals(stats.retried, 0);
    assertEquals(stats.buffers.lost, 1);
  });
});

Deno.test("BufferEmit in thread mode retries a chunk that timed out and reports its last timeout", async () => {
  // Chunk 1 hangs on every attempt: with retries: 1 it times out twice, on
  // two Workers, and fails once; the chunks around it are done.
  const { l, emitter } = faults({
    pool: 1,
    concurrency: 4,
    timeout: 500,
    retries: 1,
    retryDelay: 10,
  });
  emitter.write(cmd(SLOW));
  emitter.write(cmd(HANG_ASYNC));
  emitter.write(cmd(SLOW));
  emitter.write(cmd(SLOW));
  await emitter.close();
  assertEquals([...l.done.keys()].sort(), [0, 2, 3]);
  assertEquals(l.errors.length, 1);
  assertEquals(l.errors[0]!.kind, "timeout");
  assertEquals(l.errors[0]!.info.index, 1);
  assertStringIncludes(l.errors[0]!.message, "(after 2 attempts)");
  assertEquals(emitter.stats.retried, 1);
  assertEquals(emitter.stats.replaced, 2);
  assertClosed(emitter.stats);
});

Deno.test("BufferEmit in thread mode, loaded from disk, names the read access its Workers need", async (t) => {
  // The README grants a program read access to its callback module only;
  // a Worker loads this package's files as a dynamic import does.
  const program = fixture("local_copy.ts").pathname;
  const callback = new URL("./fixtures/idle/callback.ts", import.meta.url)
    .pathname;
  const src = new URL("../src", import.meta.url).pathname;
  const run = async (read: string) => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--import-map=${
          new URL("../.ci/import_map.json", import.meta.url).pathname
        }`,
        `--allow-read=${read}`,
        program,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      code,
      stdout: decoder.decode(stdout),
      stderr: decoder.decode(stderr),
    };
  };
  await t.step(
    "with the callback module only: a clear error, at once",
    async () => {
      const ran = await run(callback);
      assertEquals(ran.code, 0, ran.stderr);
      assertStringIncludes(
        ran.stdout,
        `error Chunk 0 (offset 0`,
      );
      assertStringIncludes(
        ran.stdout,
        `failed in thread mode: a Worker could not be started: Error: thread mode loads this package's files into each Worker, and they are on disk: grant --allow-read=${src} (or use the package from JSR, which needs no read access for it)`,
      );
      assertEquals(ran.stderr, "");
    },
  );
  await t.step("with the package's files too: it runs", async () => {
    const ran = await run(`${callback},${src}`);
    assertEquals([ran.code, ran.stdout, ran.stderr], [0, "result 4\n", ""]);
  });
});
