// Copyright the @ocycle/core authors. MIT license.
// Process mode against real Deno subprocesses: every fault of RELIABILITY.md
// items 2, 3, 6 to 15, 18 to 22 that concerns a child. Every test closes or
// aborts its emitter, which ends and awaits every child it started.

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { BufferEmit, ChunkError, ItemEmit, SampleEmit } from "@ocycle/core";
import type { ChunkInfo } from "@ocycle/core";
import { TRANSPORT } from "../src/core/_options.ts";
import { Pool } from "../src/pool/_pool.ts";
import type { PoolOptions } from "../src/pool/_slot.ts";
import {
  type Encoded,
  pieces,
  ProcessKind,
  type ProcessTuning,
} from "../src/pool/_process.ts";
import type { ProcessSettings } from "../src/pool/_process_args.ts";
import type { Task } from "../src/run/_runner.ts";
import { encodeTaskMeta, taskRawOffset } from "../src/wire/_values.ts";
import type {
  Exit,
  Job,
  Transport,
  TransportEvents,
  TransportKind,
} from "../src/pool/_transport.ts";
import { keepStderr } from "./_stderr.ts";

const faults = new URL("./fixtures/process/faults.ts", import.meta.url);

interface Run<R> {
  results: Map<number, R>;
  errors: ChunkError[];
  done: number;
}

/** Writes `chunks` chunks of 4 bytes (chunk i holds the byte i) to a process-mode BufferEmit. */
async function runChunks<R>(
  exportName: string,
  chunks: number,
  options: ConstructorParameters<typeof BufferEmit>[2] = {},
): Promise<Run<R> & { emitter: BufferEmit<R> }> {
  const run: Run<R> = { results: new Map(), errors: [], done: 0 };
  const emitter = new BufferEmit<R>(
    faults,
    4,
    {
      mode: "process",
      pool: 1,
      concurrency: 1,
      exportName,
      onDone: (result: R, info: ChunkInfo) => {
        assert(!run.results.has(info.index), `chunk ${info.index} done twice`);
        run.results.set(info.index, result);
        run.done++;
      },
      onError: (error: ChunkError) => run.errors.push(error),
      ...options,
    } as ConstructorParameters<typeof BufferEmit>[2],
  );
  for (let i = 0; i < chunks; i++) {
    await emitter.ready;
    emitter.write(new Uint8Array(4).fill(i));
  }
  await emitter.close();
  return { ...run, emitter };
}

/** Runs a fixture script of tests/fixtures/process/ in a Deno of its own. */
async function runScript(
  name: string,
  args: string[] = [],
  options: { env?: Record<string, string>; stderr?: "piped" | "null" } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--import-map=${
        new URL("../.ci/import_map.json", import.meta.url).pathname
      }`,
      new URL(`./fixtures/process/${name}`, import.meta.url).pathname,
      ...args,
    ],
    ...(options.env === undefined ? {} : { env: options.env }),
    stdout: "piped",
    stderr: options.stderr ?? "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: options.stderr === "null" ? "" : decoder.decode(output.stderr),
  };
}

function only(errors: ChunkError[]): ChunkError {
  assertEquals(errors.length, 1, errors.map((e) => e.message).join("\n"));
  return errors[0]!;
}

/** Asserts that chunk 1 failed with `kind` and every other chunk came back. */
function assertOnlyChunk1Failed(
  run: Run<unknown>,
  chunks: number,
  kind: string,
): ChunkError {
  const error = only(run.errors);
  assert(error instanceof ChunkError);
  assertEquals(error.kind, kind, error.message);
  assertEquals(error.mode, "process");
  assertEquals(error.info.index, 1);
  for (let i = 0; i < chunks; i++) {
    if (i !== 1) assertEquals(run.results.get(i), i, `chunk ${i}`);
  }
  assertEquals(run.results.has(1), false);
  return error;
}

Deno.test("process mode runs chunks in children and returns results to onDone", async () => {
  const run = await runChunks<{ index: number; offset: number; total: number }>(
    "random",
    12,
    { pool: 2, concurrency: 2 },
  );
  assertEquals(run.errors, []);
  assertEquals(run.done, 12);
  for (let i = 0; i < 12; i++) {
    // Each result reaches onDone with its own chunk's info (item 2).
    assertEquals(run.results.get(i), { index: i, offset: 4 * i, total: 4 * i });
  }
  const stats = run.emitter.stats;
  assertEquals(stats.workers, 0);
  assertEquals(stats.replaced, 0);
  assertEquals(stats.buffers.out, 0);
});

Deno.test("process mode carries rich results, samples and items through the codec", async (t) => {
  await t.step("Maps, Dates and typed arrays survive", async () => {
    const results: unknown[] = [];
    const emitter = new BufferEmit(faults, 3, {
      mode: "process",
      pool: 1,
      exportName: "rich",
      onDone: (r) => results.push(r),
    });
    emitter.write(new Uint8Array([9, 8, 7]), 1234);
    await emitter.close();
    const r = results[0] as {
      map: Map<string, number>;
      date: Date;
      bytes: Uint8Array;
      floats: Float64Array;
    };
    assertEquals(r.map.get("first"), 9);
    assertEquals(r.date.getTime(), 1234);
    assertEquals(r.bytes, new Uint8Array([9, 8]));
    assert(r.floats instanceof Float64Array);
  });
  await t.step("samples arrive as their typed array", async () => {
    const results: unknown[] = [];
    const emitter = new SampleEmit(faults, 2, {
      mode: "process",
      pool: 1,
      type: Float32Array,
      channels: 2,
      exportName: "samples",
      onDone: (r) => results.push(r),
    });
    emitter.write(new Float32Array([0.5, 1, 1.5, 2]));
    await emitter.close();
    assertEquals(results, [{ type: "Float32Array", values: [0.5, 1, 1.5, 2] }]);
  });
  await t.step("items arrive as an array", async () => {
    const results: unknown[] = [];
    const emitter = new ItemEmit(faults, 2, {
      mode: "process",
      pool: 1,
      exportName: "items",
      onDone: (r) => results.push(r),
    });
    emitter.write([{ a: 1 }, new Date(5)]);
    await emitter.close();
    assertEquals(results, [[{ a: 1 }, new Date(5)]]);
  });
});

Deno.test("process mode reports a throw with the chunk's info and the child keeps serving", async () => {
  // Item 3.
  const run = await runChunks<number>("throwing", 4);
  const error = assertOnlyChunk1Failed(run, 4, "callback");
  assertStringIncludes(error.message, "chunk 1 is bad");
  assertEquals((error.cause as Error).name, "RangeError");
  assertEquals(run.emitter.stats.replaced, 0);
});

Deno.test("process mode kills and replaces a child whose callback hangs past timeout", async () => {
  // Item 6: the pipelined chunk behind the stuck one is not failed.
  const run = await runChunks<number>("hang", 5, {
    timeout: 1000,
    concurrency: 2,
  });
  const error = assertOnlyChunk1Failed(run, 5, "timeout");
  assertStringIncludes(error.message, "did not settle within 1000 ms");
  assertEquals(error.signal, "SIGKILL");
  assertEquals(run.emitter.stats.replaced, 1);
});

Deno.test("process mode does not charge a chunk for its wait behind the one running", async () => {
  // One child holding two chunks at a time, each taking 0.6 of the timeout:
  // a chunk's clock starts when the one before it settles, not when it is
  // sent, or the second would time out.
  const run = await runChunks<number>("paced", 3, {
    pool: 1,
    concurrency: 2,
    timeout: 1500,
  });
  assertEquals(run.errors.map((e) => e.message), []);
  assertEquals([...run.results.entries()].sort(), [[0, 0], [1, 1], [2, 2]]);
  assertEquals(run.emitter.stats.replaced, 0);
});

Deno.test("process mode reports a child SIGKILLed mid-task and serves the queued chunks", async () => {
  // Item 7.
  let pid = 0;
  const errors: ChunkError[] = [];
  const results = new Map<number, number>();
  const emitter = new BufferEmit<number>(faults, 4, {
    mode: "process",
    pool: 1,
    concurrency: 1,
    exportName: "pid",
    onDone: (result, info) => {
      results.set(info.index, result);
      if (info.index === 0) {
        pid = result;
        Deno.kill(pid, "SIGKILL");
      }
    },
    onError: (error) => errors.push(error),
  });
  for (let i = 0; i < 4; i++) emitter.write(new Uint8Array(4));
  await emitter.close();
  assert(pid > 0);
  const error = only(errors);
  assertEquals(error.info.index, 1);
  assertEquals(error.kind, "crash");
  assertEquals(error.signal, "SIGKILL");
  assertEquals(error.exitCode, 137);
  assertStringIncludes(error.message, "(child 0, killed by SIGKILL)");
  assertEquals(results.get(2), 2);
  assertEquals(results.get(3), 3);
  assertEquals(emitter.stats.replaced, 1);
});

Deno.test("process mode survives a child that runs out of memory", async () => {
  // Item 8: the parent lives and the next chunks run in a new child.
  const { value: run, stderr } = await keepStderr(() =>
    runChunks<number>("oom", 3, {
      v8Flags: ["--max-old-space-size=16"],
    })
  );
  const error = assertOnlyChunk1Failed(run, 3, "crash");
  assert(error.exitCode !== 0, error.message);
  assertMatch(error.stderr, /heap|memory/i);
  // V8's report went to the parent's stderr, marked with the child.
  assertMatch(stderr, /^\[ocycle child \d+\] .*(heap|memory)/im);
});

Deno.test("process mode gives up on a child that dies before it is ready", async (t) => {
  // Item 9: bounded retries, one clear start-up error, no respawn loop.
  await t.step("a module that exits while loading", async () => {
    const errors: ChunkError[] = [];
    const emitter = new BufferEmit(
      new URL("./fixtures/process/dies_on_load.ts", import.meta.url),
      2,
      {
        mode: "process",
        pool: 2,
        onError: (error) => errors.push(error),
      },
    );
    for (let i = 0; i < 3; i++) emitter.write(new Uint8Array(2));
    const { stderr } = await keepStderr(() => emitter.close());
    assertStringIncludes(stderr, "] dies_on_load: exiting with status 3\n");
    assertEquals(errors.length, 3);
    for (const error of errors) {
      assertEquals(error.kind, "startup");
      assertStringIncludes(error.message, "exited before they were ready");
      assertEquals(error.exitCode, 3);
      assertStringIncludes(error.stderr, "exiting with status 3");
    }
    // Two first children, then at most startAttempts - 1 more before giving up.
    assert(emitter.stats.replaced <= 2, `replaced ${emitter.stats.replaced}`);
    assertEquals(emitter.stats.workers, 0);
  });
  await t.step("a module that throws while loading", async () => {
    const errors: ChunkError[] = [];
    const emitter = new BufferEmit(
      new URL("./fixtures/process/throws_on_load.ts", import.meta.url),
      2,
      { mode: "process", pool: 1, onError: (error) => errors.push(error) },
    );
    emitter.write(new Uint8Array(2));
    emitter.write(new Uint8Array(2));
    await emitter.close();
    assertEquals(errors.length, 2);
    assertEquals(errors[0]!.kind, "startup");
    assertStringIncludes(errors[0]!.message, "cannot load this module");
    assertEquals(emitter.stats.replaced, 0);
  });
  await t.step(
    "a module that fails to load says so, plainly (RELIABILITY 54)",
    async () => {
      // A bare import its project's config does not map: Deno's error comes
      // with a hint and terminal colours, and the pool kills the child.
      const dir = await Deno.makeTempDir({ prefix: "ocycle-bare-" });
      try {
        await Deno.writeTextFile(`${dir}/deno.json`, "{}\n");
        await Deno.writeTextFile(
          `${dir}/callback.ts`,
          'import { x } from "unmapped-pkg";\nexport default () => x;\n',
        );
        const url = new URL(`file://${dir}/callback.ts`);
        const errors: ChunkError[] = [];
        const emitter = new BufferEmit(url, 2, {
          mode: "process",
          pool: 1,
          onError: (error) => errors.push(error),
        });
        emitter.write(new Uint8Array(2));
        await emitter.close();
        const error = only(errors);
        assertEquals(error.kind, "startup");
        assertStringIncludes(
          error.message,
          `the callback module ${url.href} could not be loaded: Import "unmapped-pkg" not a dependency (at ${url.href}:1:19)`,
        );
        assertEquals(error.message.includes("\x1b"), false, error.message);
        assertEquals(/SIGKILL|hint/.test(error.message), false, error.message);
        assertEquals(error.signal, undefined);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
  await t.step("an export that is not a function", async () => {
    const emitter = new BufferEmit(faults, 2, {
      mode: "process",
      pool: 1,
      exportName: "nope",
    });
    emitter.write(new Uint8Array(2));
    await assertRejects(
      () => emitter.close(),
      ChunkError,
      "its export 'nope' is not a function",
    );
  });
});

Deno.test("process mode refuses malformed frames from a child", async (t) => {
  // Items 11, 12, 13: a protocol error for the chunk that was running, the
  // child replaced, no result given to the wrong chunk.
  await t.step("EOF in the middle of a frame with exit status 0", async () => {
    const run = await runChunks<number>("eofMidFrame", 3);
    const error = assertOnlyChunk1Failed(run, 3, "protocol");
    assertStringIncludes(error.message, "expected 110 bytes, received 20");
    assertEquals(error.exitCode, 0);
  });
  await t.step("a 0xFFFFFFFF length", async () => {
    const run = await runChunks<number>("hugeLength", 3);
    const error = assertOnlyChunk1Failed(run, 3, "protocol");
    assertStringIncludes(
      error.message,
      "body of 4294967295 bytes, over the limit",
    );
  });
  await t.step("a bad magic byte", async () => {
    const run = await runChunks<number>("badMagic", 3);
    const error = assertOnlyChunk1Failed(run, 3, "protocol");
    assertStringIncludes(error.message, "bad magic byte 0x7b");
  });
  await t.step("an unknown message type", async () => {
    const run = await runChunks<number>("unknownType", 3);
    const error = assertOnlyChunk1Failed(run, 3, "protocol");
    assertStringIncludes(error.message, "unknown message type 99");
  });
  await t.step("an unknown task id", async () => {
    const run = await runChunks<number>("unknownId", 3);
    const error = assertOnlyChunk1Failed(run, 3, "protocol");
    assertStringIncludes(error.message, "unknown task id 2147418112");
  });
  await t.step("user code writing raw bytes to stdout", async () => {
    const run = await runChunks<number>("rawPrint", 3);
    const error = assertOnlyChunk1Failed(run, 3, "protocol");
    assertStringIncludes(error.message, "bad magic byte 0x68");
    assertEquals(run.emitter.stats.replaced, 1);
  });
});

Deno.test("process mode sends the child's console to stderr, keeping results intact", async (t) => {
  // Item 13, the better half: console output never reaches the protocol.
  await t.step("results and the stderr tail", async () => {
    const { value: run, stderr } = await keepStderr(() =>
      runChunks<{ index: number; first: number }>("consolePrint", 4)
    );
    // Every chunk's lines reached the parent's stderr, marked with the child.
    for (const i of [0, 1, 2, 3]) {
      assertStringIncludes(stderr, `[ocycle child 0] log ${i}\n`);
    }
    const error = only(run.errors);
    assertEquals(error.kind, "callback");
    assertEquals(error.info.index, 2);
    assertStringIncludes(error.stderr, "log 2");
    // All the callback printed before it threw, however the two pipes raced.
    assertStringIncludes(error.stderr, "count: 3");
    assert(!error.stderr.includes("stderr-sync"), "the marker is not output");
    for (const i of [0, 1, 3]) {
      assertEquals(run.results.get(i), { index: i, first: i });
    }
    assertEquals(run.emitter.stats.replaced, 0);
  });
  await t.step(
    "forwarded to the parent's stderr with the child's index",
    async () => {
      const output = await runScript("print_parent.ts");
      const stderr = output.stderr;
      assertEquals(output.code, 0, stderr);
      assertEquals(output.stdout, "");
      assertStringIncludes(stderr, "[ocycle child 0] log 0");
      assertStringIncludes(stderr, "[ocycle child 0] { dir: 0 }");
    },
  );
});

/** The settings of a bytes child running `exportName` of `url` (the faults fixture). */
function processSettings(
  exportName: string,
  url: URL = faults,
  permissionFlags: string[] = [],
): ProcessSettings {
  return {
    owner: "ProcessPool",
    url,
    exportName,
    layout: { kind: "bytes" },
    borrow: false,
    timeout: Infinity,
    permissionFlags,
    env: undefined,
    v8Flags: [],
  };
}

/** A pool of process-mode children running an export of the faults fixture, one at a time. */
function processPool(
  exportName: string,
  tuning: Partial<ProcessTuning & PoolOptions> = {},
  url: URL = faults,
  permissionFlags: string[] = [],
): Pool<Encoded> {
  const settings = processSettings(exportName, url, permissionFlags);
  return new Pool(new ProcessKind(settings, tuning), {
    pool: 1,
    concurrency: 1,
    timeout: Infinity,
    ...tuning,
  });
}

function task(index: number): Task<Uint8Array> {
  return {
    chunk: new Uint8Array([index, index]),
    info: {
      index,
      offset: 2 * index,
      length: 2,
      t0: 0,
      reason: "size",
      final: false,
    },
    buffer: undefined,
    lost: false,
    owned: true,
  };
}

Deno.test("process mode carries chunks larger than the child's read buffer intact (read in place)", async () => {
  // A body of 256 KiB or more is read straight into the frame being
  // received (FrameDecoder.missingBody() and filled()), not through the
  // child's read buffer; every byte must land where it belongs.
  const size = 3 << 18;
  const bytes = new Uint8Array(2 * size);
  let state = 1;
  for (let i = 0; i < bytes.length; i++) {
    state = Math.imul(state, 48271) >>> 0;
    bytes[i] = state >>> 24;
  }
  const expected = [0, 1].map((k) => {
    let hash = 0x811c9dc5;
    for (const byte of bytes.subarray(k * size, (k + 1) * size)) {
      hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
    }
    return { length: size, hash };
  });
  const results: unknown[] = [];
  const errors: ChunkError[] = [];
  const emitter = new BufferEmit(faults, size, {
    mode: "process",
    pool: 1,
    exportName: "checksum",
    onDone: (result: unknown, info: ChunkInfo) => results[info.index] = result,
    onError: (error: ChunkError) => errors.push(error),
  });
  emitter.write(bytes.subarray(0, size));
  emitter.write(bytes.subarray(size));
  await emitter.close();
  assertEquals(errors, []);
  assertEquals(results, expected);
});

Deno.test("process mode's pool reads frames that arrive one byte at a time", async () => {
  // Item 14 end to end: the child writes every frame one byte per write.
  const dispatcher = processPool("random", { writePiece: 1 });
  try {
    const results = await Promise.all(
      [0, 1, 2].map((i) => dispatcher.run(task(i))),
    );
    assertEquals(results, [
      { index: 0, offset: 0, total: 0 },
      { index: 1, offset: 2, total: 2 },
      { index: 2, offset: 4, total: 4 },
    ]);
  } finally {
    await dispatcher.close();
  }
});

Deno.test("process mode's pool maps a write to a dead child's stdin to that child's error", async () => {
  // Item 10: the child is killed and, before the parent can see it exit, a
  // chunk is written to its stdin: BrokenPipe becomes that chunk's crash
  // error with the exit status, never an unhandled rejection.
  const unhandled: unknown[] = [];
  const onUnhandled = (event: PromiseRejectionEvent) => {
    unhandled.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  const dispatcher = processPool("pid");
  try {
    const pid = await dispatcher.run(task(0)) as number;
    Deno.kill(pid, "SIGKILL");
    // Keep the event loop busy so that the exit is not seen before the write.
    const until = performance.now() + 100;
    while (performance.now() < until) { /* busy */ }
    const big: Task<Uint8Array> = {
      ...task(1),
      chunk: new Uint8Array(300_000),
    };
    const error = await assertRejects(() => dispatcher.run(big), ChunkError);
    assertEquals(error.kind, "crash");
    assertEquals(error.info.index, 1);
    assertEquals(error.signal, "SIGKILL");
    assertStringIncludes(error.message, "broken pipe");
    assertEquals(await dispatcher.run(task(2)), 2);
  } finally {
    await dispatcher.close();
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
  assertEquals(unhandled, []);
});

Deno.test("process mode's pool fails a frame whose body never comes after a stall timeout", async () => {
  // Item 15.
  const dispatcher = processPool("stall", { stallTimeout: 300 });
  try {
    assertEquals(await dispatcher.run(task(0)), 0);
    const error = await assertRejects(
      () => dispatcher.run(task(1)),
      ChunkError,
    );
    assertEquals(error.kind, "protocol");
    assertStringIncludes(
      error.message,
      "15 of 110 bytes arrived and nothing more for 300 ms",
    );
    assertEquals(await dispatcher.run(task(2)), 2);
    assertEquals(dispatcher.counts().replaced, 1);
  } finally {
    await dispatcher.close();
  }
});

Deno.test("process mode's pool gives up on children that never say they are ready", async () => {
  // Item 9, the hanging kind: each child is killed after startTimeout, and
  // after startAttempts of them the chunk fails with one start-up error.
  const dispatcher = processPool(
    "default",
    { startTimeout: 200, startAttempts: 2 },
    new URL("./fixtures/process/hangs_on_load.ts", import.meta.url),
  );
  try {
    const error = await assertRejects(
      () => dispatcher.run(task(0)),
      ChunkError,
    );
    assertEquals(error.kind, "startup");
    assertStringIncludes(error.message, "2 children in a row");
    assertStringIncludes(error.message, "ready within 200 ms");
    assertEquals(error.signal, "SIGKILL");
    assertEquals(dispatcher.counts().replaced, 1);
  } finally {
    await dispatcher.close();
  }
});

Deno.test("process mode close() drains every queued chunk and ends the children", async () => {
  // Item 18, first half.
  const run = await runChunks<number>("slow", 8, { pool: 2, maxPending: 8 });
  assertEquals(run.errors, []);
  assertEquals(run.done, 8);
  assertEquals(run.emitter.stats.workers, 0);
  assertEquals(run.emitter.stats.buffers.out, 0);
  assertRejectsSync(() => run.emitter.write(new Uint8Array(4)), "closed");
});

function assertRejectsSync(fn: () => unknown, fragment: string): void {
  try {
    fn();
  } catch (error) {
    assertStringIncludes((error as Error).message, fragment);
    return;
  }
  throw new Error("expected a throw");
}

Deno.test("process mode abort() kills running chunks and rejects queued ones", async () => {
  // Item 18, second half, and item 19: every buffer is back.
  const errors: ChunkError[] = [];
  const emitter = new BufferEmit(faults, 4, {
    mode: "process",
    pool: 2,
    concurrency: 1,
    exportName: "sleepy",
    onError: (error) => errors.push(error),
  });
  for (let i = 0; i < 6; i++) emitter.write(new Uint8Array(4));
  // Give the children time to start and take chunks (nothing asserts on it:
  // the same must hold if the abort comes first).
  await new Promise((resolve) => setTimeout(resolve, 300));
  assertEquals(emitter.stats.inFlight, 2);
  await emitter.abort(new Error("stop now"));
  assertEquals(emitter.stats.workers, 0);
  assertEquals(emitter.stats.buffers.out, 0);
  assertEquals(errors.length, 6);
  for (const error of errors) {
    assertEquals(error.kind, "aborted");
    assertStringIncludes(error.message, "stop now");
  }
  await assertRejects(() => emitter.close(), Error, "stop now");
});

Deno.test("process mode with an already-aborted signal starts no child", async () => {
  // Item 20.
  const controller = new AbortController();
  controller.abort(new Error("too late"));
  const emitter = new BufferEmit(faults, 4, {
    mode: "process",
    pool: 1,
    exportName: "random",
    signal: controller.signal,
  });
  assertRejectsSync(() => emitter.write(new Uint8Array(4)), "too late");
  await assertRejects(() => emitter.close(), Error, "too late");
  assertEquals(emitter.stats.workers, 0);
});

Deno.test("process mode keeps buffers and children stable across many faults", async () => {
  // Item 19, and item 21 shortened: 400 chunks with a child exiting every 50
  // and a throw every 7; every chunk is accounted for, once.
  const chunks = 400;
  const run = await runChunks<number>("flaky", chunks, {
    pool: 2,
    concurrency: 2,
  });
  const crashes = [], throws = [];
  for (let i = 0; i < chunks; i++) {
    if (i % 50 === 25) crashes.push(i);
    else if (i % 7 === 3) throws.push(i);
  }
  const failed = run.errors.map((e) => e.info.index).sort((a, b) => a - b);
  assertEquals(failed, [...crashes, ...throws].sort((a, b) => a - b));
  for (const error of run.errors) {
    if (crashes.includes(error.info.index)) {
      assertEquals(error.kind, "crash");
      assertEquals(error.exitCode, 1);
    } else assertEquals(error.kind, "callback");
  }
  assertEquals(run.done, chunks - failed.length);
  for (const [index, result] of run.results) assertEquals(result, index);
  const stats = run.emitter.stats;
  assertEquals(stats.replaced, crashes.length);
  assertEquals(stats.workers, 0);
  assertEquals(stats.buffers.out, 0);
  assertEquals(stats.buffers.lost, 0);
  assert(
    stats.buffers.created <= 2 * 2 + 16 + 3,
    `${stats.buffers.created} buffers`,
  );
});

Deno.test("process mode gives a child least privilege", async (t) => {
  // Item 22.
  await t.step("a denied read is a clear error, not a hang", async () => {
    const run = await runChunks<string>("readFile", 1);
    const error = only(run.errors);
    assertEquals(error.kind, "callback");
    assertStringIncludes(
      error.message,
      'Requires read access to "/etc/hostname"',
    );
  });
  await t.step("a granted read works", async () => {
    const run = await runChunks<string>("readFile", 1, {
      permissions: { read: ["/etc/hostname"] },
    });
    assertEquals(run.errors, []);
    assertEquals(typeof run.results.get(0), "string");
  });
  await t.step("no env, net, write or run unless granted", async () => {
    const run = await runChunks<Record<string, string>>("snoop", 1);
    assertEquals(run.results.get(0), {
      env: "NotCapable",
      net: "NotCapable",
      write: "NotCapable",
      run: "NotCapable",
    });
  });
  await t.step("the environment is cleared unless given", async () => {
    const cleared = await runChunks<Record<string, string>>("environment", 1, {
      permissions: { env: true },
    });
    assertEquals(withoutDenoShim(cleared.results.get(0)!), {});
    const given = await runChunks<Record<string, string>>("environment", 1, {
      permissions: { env: true },
      env: { ONLY: "this" },
    });
    assertEquals(withoutDenoShim(given.results.get(0)!), { ONLY: "this" });
  });
});

/**
 * Deno 2.9 adds DENO_NODE_SHIM_ACTIVE and a PATH of its own node-compat shims
 * to every subprocess, even with `clearEnv`: they are the runtime's, not the
 * parent's.
 */
function withoutDenoShim(env: Record<string, string>): Record<string, string> {
  const rest = { ...env };
  delete rest.DENO_NODE_SHIM_ACTIVE;
  if (rest.PATH?.endsWith("node_compat_bin")) delete rest.PATH;
  assertEquals(rest.HOME, undefined);
  return rest;
}

Deno.test("process mode fails a chunk over the frame limit without blaming the callback", async () => {
  // RELIABILITY item 35, with the 1 GiB limit turned down to 1 KiB: the
  // chunk fails as "oversize" before it is sent, and the next one runs.
  const settings = { ...processSettings("random"), owner: "BufferEmit" };
  const errors: ChunkError[] = [];
  const results: unknown[] = [];
  const emitter = new BufferEmit(
    faults,
    4,
    {
      mode: "process",
      pool: 1,
      onDone: (result) => results.push(result),
      onError: (error) => errors.push(error),
      [TRANSPORT]: new ProcessKind(settings, { maxFrameBytes: 1024 }),
    } as ConstructorParameters<typeof BufferEmit>[2],
  );
  emitter.write(new Uint8Array(2000).fill(1));
  emitter.write(new Uint8Array(4).fill(1));
  await emitter.close();
  const error = only(errors);
  assertEquals(error.kind, "oversize");
  assertEquals(error.info.index, 0);
  assertEquals(error.mode, "process");
  assertMatch(
    error.message,
    /the chunk takes \d+ bytes on the pipe to a child process, over process mode's frame limit of 1024 bytes: use a smaller 'size'/,
  );
  assert(!error.message.includes("callback threw"), error.message);
  assertEquals(results, [{ index: 1, offset: 2000, total: 4 }]);
});

Deno.test("ProcessKind.prepare() refuses a chunk whose task frame is over the limit by one byte", async () => {
  // Found by mutation testing: a bound that counts only the meta and the
  // bytes, not the frame's length fields and padding, went unseen, as no
  // test was near it. A body let through over the limit makes the child
  // refuse its parent's frame and exit: a crash instead of "oversize".
  const kind = new ProcessKind(processSettings("random"), {
    maxFrameBytes: 1024,
  });
  await kind.loading();
  const head = taskRawOffset(encodeTaskMeta(task(0).info, undefined).length);
  const over: Task<Uint8Array> = {
    ...task(0),
    chunk: new Uint8Array(1024 - head + 1),
  };
  const error = assertThrows(() => kind.prepare(over), ChunkError);
  assertEquals(error.kind, "oversize");
});

Deno.test("process mode says it needs node:v8 where it cannot be imported", async () => {
  const fixture = (name: string) =>
    new URL(`./fixtures/${name}`, import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-config",
      `--import-map=${fixture("no_node_v8.json")}`,
      fixture("process/without_node_v8.ts"),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(code, 0, new TextDecoder().decode(stderr));
  const errors = JSON.parse(new TextDecoder().decode(stdout)) as string[][];
  assertEquals(errors.map(([kind]) => kind), ["startup"]);
  for (const [, message] of errors) {
    assertStringIncludes(
      message!,
      "process mode needs node:v8, which could not be imported: Error: node:v8 is not available on this runtime",
    );
  }
});

Deno.test("process mode fails a chunk whose module never finishes loading within the start-up deadline (RELIABILITY 38)", async (t) => {
  const run = async (args: string[]) => {
    const { code, stdout, stderr } = await runScript(
      "start_deadline.ts",
      args,
    );
    assertEquals(code, 0, stderr);
    // Nothing calls the child idle while a chunk waits for it.
    assertEquals(stderr.includes("idle"), false, stderr);
    return JSON.parse(stdout) as {
      errors: [string, string][];
      failedMs: number;
      closeMs: number;
    };
  };
  await t.step("startTimeout: 500", async () => {
    const { errors, failedMs, closeMs } = await run(["500"]);
    assertEquals(errors.length, 1);
    assertEquals(errors[0]![0], "startup");
    assertStringIncludes(
      errors[0]![1],
      "no child was ready to take the chunk within 500 ms, the start-up deadline",
    );
    assert(failedMs >= 450 && failedMs < 3000, `failed after ${failedMs} ms`);
    // close() ends a child that is still loading at once: it holds nothing.
    assert(closeMs < 2000, `close() took ${closeMs} ms`);
  });
  await t.step("the default: 10 s, not 90", async () => {
    const { errors, failedMs, closeMs } = await run([]);
    assertEquals(errors.map(([kind]) => kind), ["startup"]);
    assertStringIncludes(errors[0]![1], "within 10000 ms");
    assert(
      failedMs >= 9500 && failedMs < 12_000,
      `failed after ${failedMs} ms`,
    );
    assert(closeMs < 2000, `close() took ${closeMs} ms`);
  });
});

Deno.test("process mode forwards a child's stderr without newlines in pieces, in bounded memory (RELIABILITY 30)", async (t) => {
  await t.step(
    "lines longer than the limit are cut, others are kept",
    async () => {
      const out = await Array.fromAsync(
        ReadableStream.from(["abcdefgh", "ij\nkl", "mnopqrstu\rvw"])
          .pipeThrough(pieces(4)),
      );
      assertEquals(out.join(""), "abcd\nefgh\nij\nklmn\nopqr\nstu\rvw");
    },
  );
  await t.step(
    "200 MiB on one line: the parent's memory does not follow",
    async () => {
      const { code, stdout } = await runScript("stderr_flood.ts", [], {
        stderr: "null",
      });
      assertEquals(code, 0);
      const { result, peakMiB } = JSON.parse(stdout) as {
        result: number;
        peakMiB: number;
      };
      assertEquals(result, 0);
      // About 140 MiB whatever the line's length (50 MiB or 800 MiB alike);
      // holding the line took 938 MiB.
      assert(peakMiB < 400, `the parent peaked at ${peakMiB} MiB`);
    },
  );
});

Deno.test("process mode resolves the callback module's imports through its own project's deno.json (RELIABILITY 36)", async () => {
  const project = new URL("./fixtures/process/project/", import.meta.url);
  const lock = new URL("../deno.lock", import.meta.url);
  const before = await Deno.readTextFile(lock).catch(() => undefined);
  const results: number[] = [];
  const errors: ChunkError[] = [];
  const emitter = new BufferEmit<number>(new URL("callback.ts", project), 3, {
    mode: "process",
    pool: 1,
    permissions: { read: [project.pathname] },
    onDone: (value) => results.push(value),
    onError: (error) => errors.push(error),
  });
  emitter.write(new Uint8Array(3));
  await emitter.close();
  assertEquals(errors.map((e) => e.message), []);
  assertEquals(results, [45]);
  // The library's own lockfile is not the child's.
  assertEquals(await Deno.readTextFile(lock).catch(() => undefined), before);
});

Deno.test("process mode's pool kills a child that does not exit within closeGrace of close()", async () => {
  // The module never finishes loading, so the child ignores the end of its
  // stdin: close() ends it after closeGrace.
  const dispatcher = processPool(
    "default",
    { closeGrace: 200, timeout: 300 },
    new URL("./fixtures/process/hangs_on_load.ts", import.meta.url),
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const error = await assertRejects(
      () => dispatcher.run(task(0)),
      ChunkError,
    );
    assertEquals(error.kind, "timeout");
    const closed = await Promise.race([
      dispatcher.close().then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), 10_000);
      }),
    ]);
    assert(closed, "close() did not end: the child was never killed");
  } finally {
    clearTimeout(timer);
    await dispatcher.abort(new Error("cleanup"));
  }
});

Deno.test("process mode kills a child that does not exit within closeGrace of end()", async () => {
  // Found by mutation testing: the pool's closeGrace test above times its
  // chunk out first, and a timeout kills the child, so it never reached the
  // grace timer. Here the child's module never finishes loading, so it
  // ignores the end of its stdin, and only closeGrace ends it.
  const settings = processSettings(
    "default",
    new URL("./fixtures/process/hangs_on_load.ts", import.meta.url),
  );
  const kind = new ProcessKind(settings, { closeGrace: 200 });
  await kind.loading();
  const seen: string[] = [];
  const events: TransportEvents = {
    ready: () => seen.push("ready"),
    settled: () => seen.push("settled"),
    flushed: () => {},
    fault: (fault, detail) => seen.push(`${fault}: ${detail}`),
  };
  const child = kind.start(0, events, {
    watch: () => {},
    kill: (pid) => {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // The group is gone already.
      }
    },
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const exit = await Promise.race([
      child.end().then(() => child.gone),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), 10_000);
      }),
    ]);
    assert(exit !== undefined, "end() did not end the child: never killed");
    assertEquals(exit?.signal, "SIGKILL");
    // Told to end, what it does then is no fault.
    assertEquals(seen, []);
  } finally {
    clearTimeout(timer);
    child.kill();
    await child.gone;
  }
});

Deno.test("process mode cuts a long stderr line kept for an error to 2000 characters", async () => {
  // Found by mutation testing: nothing checked the cut, and a child may
  // write megabytes in one line (pieces() splits them at stderrPiece only).
  const dispatcher = processPool("longLastWords");
  try {
    const { value: error } = await keepStderr<ChunkError>(() =>
      assertRejects(() => dispatcher.run(task(0)), ChunkError, "too long")
    );
    assertEquals(error.kind, "callback");
    assertEquals(error.stderr, "y".repeat(2000) + "…");
  } finally {
    await dispatcher.close();
  }
});

Deno.test("process mode starts a child with the v8Flags given", async () => {
  // Found by mutation testing: no test gave v8Flags. --expose-gc is one a
  // callback can see.
  const given = await runChunks<string>("gcExposed", 1, {
    v8Flags: ["--expose-gc"],
  });
  assertEquals(given.errors, []);
  assertEquals(given.results.get(0), "function");
  const none = await runChunks<string>("gcExposed", 1);
  assertEquals(none.results.get(0), "undefined");
});

Deno.test("process mode reports a result that cannot be cloned as the callback's, and the child keeps serving", async () => {
  // Found by mutation testing: no test returned what the codec refuses.
  const dispatcher = processPool("uncloneable");
  try {
    const error = await assertRejects(
      () => dispatcher.run(task(0)),
      ChunkError,
      "the callback's result cannot be cloned",
    );
    assertEquals(error.kind, "callback");
    assertEquals(error.info.index, 0);
    await assertRejects(() => dispatcher.run(task(1)), ChunkError);
    assertEquals(dispatcher.counts().replaced, 0);
  } finally {
    await dispatcher.close();
  }
});

Deno.test("process mode keeps the last stderrLines lines of a child for its errors", async () => {
  const dispatcher = processPool("noisyExit", { stderrLines: 4 });
  try {
    const { value: error, stderr } = await keepStderr<ChunkError>(() =>
      assertRejects(() => dispatcher.run(task(0)), ChunkError)
    );
    // All of it is forwarded; only the last 4 lines are kept for the error.
    assertStringIncludes(stderr, "[ocycle child 0] line 1\n");
    assertEquals(error.kind, "crash");
    assertEquals(error.exitCode, 4);
    assertEquals(error.stderr, "line 2\nline 3\nline 4\nline 5");
    assertStringIncludes(
      error.message,
      "(child 0, exit code 4); its stderr ends: line 3 | line 4 | line 5",
    );
  } finally {
    await dispatcher.close();
  }
});

Deno.test("process mode gives up on the pipes of a child that exits while a grandchild holds them", async () => {
  const dispatcher = processPool("orphan", {}, faults, [
    "--allow-run=/bin/sleep",
  ]);
  let pid = 0;
  try {
    const { value: error, stderr } = await keepStderr<ChunkError>(() =>
      assertRejects(() => dispatcher.run(task(0)), ChunkError)
    );
    pid = Number(/orphan (\d+)/.exec(error.stderr)?.[1] ?? 0);
    assertStringIncludes(stderr, `[ocycle child 0] orphan ${pid}\n`);
    assertEquals(error.kind, "crash");
    assertEquals(error.exitCode, 0);
    assertStringIncludes(
      error.message,
      "the child exited but its pipes stayed open; the chunk was in that child",
    );
  } finally {
    if (pid > 0) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // It is gone already.
      }
    }
    await dispatcher.close();
  }
});

Deno.test({
  name:
    "process mode ends what a child left running in its process group when the child ends",
  // Found by mutation testing: killing the child's pid, not its group, left
  // the sleep running and no test saw it.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const dispatcher = processPool("leaveSleeper", {}, faults, [
      "--allow-run=/bin/sleep",
    ]);
    let pid = 0;
    try {
      pid = await dispatcher.run(task(0)) as number;
      assert(running(pid), "the sleep never started");
    } finally {
      await dispatcher.close();
    }
    try {
      let tries = 0;
      while (running(pid) && tries++ < 250) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert(!running(pid), `sleep ${pid} outlived its child by 5 s`);
    } finally {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone, as it should be.
      }
    }
  },
});

/** Whether a process is alive: it exists and is not a zombie (Linux). */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** A worker of {@linkcode FakeKind}: the test says when it is ready, replies and exits. */
class FakeWorker implements Transport<undefined> {
  readonly index: number;
  readonly events: TransportEvents;
  readonly gone: Promise<Exit>;
  /** Chunk indexes sent to it, in order. */
  readonly got: number[] = [];
  readonly #ids = new Map<number, number>();
  killed = false;
  ended = false;
  #exit!: (exit: Exit) => void;
  #exitOnKill: boolean;

  constructor(index: number, events: TransportEvents, exitOnKill: boolean) {
    this.index = index;
    this.events = events;
    this.#exitOnKill = exitOnKill;
    this.gone = new Promise((resolve) => this.#exit = resolve);
  }

  send(jobs: readonly Job<undefined>[]): undefined {
    for (const job of jobs) {
      this.got.push(job.task.info.index);
      this.#ids.set(job.task.info.index, job.id);
    }
    return undefined;
  }

  end(): Promise<void> {
    this.ended = true;
    if (this.#exitOnKill) this.exit();
    return this.gone.then(() => {});
  }

  kill(): void {
    this.killed = true;
    if (this.#exitOnKill) this.exit();
  }

  stderr(): string {
    return "";
  }

  /** Settles the chunk of this index with its index as the result. */
  reply(index: number): void {
    this.events.settled(this.#ids.get(index)!, false, index);
    this.events.flushed();
  }

  exit(): void {
    this.#exit({ text: "" });
  }
}

/** A transport kind whose workers the test drives by hand. */
class FakeKind implements TransportKind<undefined> {
  readonly mode = "process";
  readonly noun = "fake";
  readonly nouns = "fakes";
  readonly copies = true;
  readonly batches = false;
  readonly oneAtATime: boolean;
  readonly exitOnKill: boolean;
  readonly workers: FakeWorker[] = [];

  constructor(oneAtATime = true, exitOnKill = true) {
    this.oneAtATime = oneAtATime;
    this.exitOnKill = exitOnKill;
  }

  loading(): undefined {
    return undefined;
  }

  prepare(): undefined {
    return undefined;
  }

  takeBack(): void {}

  start(index: number, events: TransportEvents): FakeWorker {
    const worker = new FakeWorker(index, events, this.exitOnKill);
    this.workers.push(worker);
    return worker;
  }
}

/** Lets microtasks and promise callbacks run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("Pool gives each chunk to the ready worker holding the fewest, up to concurrency", async () => {
  const kind = new FakeKind();
  const pool = new Pool(kind, { pool: 2, concurrency: 2, timeout: Infinity });
  const results: Promise<unknown>[] = [];
  results.push(pool.run(task(0)));
  assertEquals(kind.workers.length, 2);
  const [a, b] = kind.workers as [FakeWorker, FakeWorker];
  a.events.ready();
  b.events.ready();
  for (let i = 1; i < 5; i++) results.push(pool.run(task(i)));
  // 0 went to the first ready worker; then always the least busy one, and
  // chunk 4 waits: both hold two.
  assertEquals([a.got, b.got], [[0, 2], [1, 3]]);
  b.reply(1);
  assertEquals([a.got, b.got], [[0, 2], [1, 3, 4]]);
  for (const i of [0, 2]) a.reply(i);
  for (const i of [3, 4]) b.reply(i);
  assertEquals(await Promise.all(results), [0, 1, 2, 3, 4]);
  await pool.close();
  assert(a.ended && b.ended);
});

Deno.test("Pool ends a worker idle for idleTimeout, and a chunk that comes while it ends waits for its replacement (RELIABILITY 52)", async () => {
  const kind = new FakeKind(true, false);
  const pool = new Pool(kind, {
    pool: 1,
    concurrency: 1,
    timeout: Infinity,
    idleTimeout: 30,
  });
  const first = pool.run(task(0));
  const a = kind.workers[0]!;
  a.events.ready();
  a.reply(0);
  assertEquals(await first, 0);
  while (!a.ended) await new Promise((r) => setTimeout(r, 10));
  // It has not exited yet: the pool is full, so the chunk waits for it.
  const second = pool.run(task(1));
  assertEquals(kind.workers.length, 1);
  a.exit();
  await settle();
  assertEquals(kind.workers.length, 2);
  const b = kind.workers[1]!;
  b.events.ready();
  assertEquals(b.got, [1]);
  b.reply(1);
  assertEquals(await second, 1);
  // Ended for being idle, not for a fault: nothing was replaced.
  assertEquals(pool.counts().replaced, 0);
  const closing = pool.close();
  b.exit();
  await closing;
});

Deno.test("Pool keeps an idle worker for a while when no idleTimeout is given (1 s, docs/modes.md)", async () => {
  const kind = new FakeKind();
  const pool = new Pool(kind, { pool: 1, concurrency: 1, timeout: Infinity });
  const first = pool.run(task(0));
  const worker = kind.workers[0]!;
  worker.events.ready();
  worker.reply(0);
  assertEquals(await first, 0);
  // Timers run in the order they are due, however loaded the machine: this
  // one, due long before the idle timer, sees the worker still there.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assertEquals(worker.ended, false);
  assertEquals(pool.counts().workers, 1);
  await pool.close();
});

Deno.test("Pool sends the chunks a crashed worker had not started to the next one first, in order", async () => {
  const kind = new FakeKind();
  const pool = new Pool(kind, { pool: 1, concurrency: 3, timeout: Infinity });
  const results = [0, 1, 2, 3, 4].map((i) =>
    pool.run(task(i)).then((v) => v, (e: ChunkError) => e.kind)
  );
  kind.workers[0]!.events.ready();
  assertEquals(kind.workers[0]!.got, [0, 1, 2]);
  kind.workers[0]!.events.fault("crash", "it fell over");
  await settle();
  // One at a time: only chunk 0 had started. 1 and 2 go back before 3 and 4.
  assertEquals(kind.workers.length, 2);
  const next = kind.workers[1]!;
  next.events.ready();
  assertEquals(next.got, [1, 2, 3]);
  next.reply(1);
  assertEquals(next.got, [1, 2, 3, 4]);
  for (const i of [2, 3, 4]) next.reply(i);
  assertEquals(await Promise.all(results), ["crash", 1, 2, 3, 4]);
  assertEquals(pool.counts().replaced, 1);
  await pool.close();
});

Deno.test("Pool fails a chunk when its worker replies for an unknown id", async () => {
  const kind = new FakeKind();
  const pool = new Pool(kind, { pool: 1, concurrency: 1, timeout: Infinity });
  const result = pool.run(task(0));
  const worker = kind.workers[0]!;
  worker.events.ready();
  worker.events.settled(123456, false, "stray");
  const error = await assertRejects(() => result, ChunkError);
  assertEquals(error.kind, "protocol");
  assertStringIncludes(
    error.message,
    "the fake broke the protocol: a reply for unknown task id 123456",
  );
  assert(worker.killed);
  await pool.close();
});

Deno.test("Pool refuses chunks once closed or aborted", async (t) => {
  await t.step("closed", async () => {
    const pool = new Pool(new FakeKind(), {
      pool: 1,
      concurrency: 1,
      timeout: Infinity,
    });
    await pool.close();
    const error = await assertRejects(() => pool.run(task(0)), ChunkError);
    assertEquals(error.kind, "aborted");
    assertStringIncludes(error.message, "the pool was already closed");
  });
  await t.step("aborted", async () => {
    const pool = new Pool(new FakeKind(), {
      pool: 1,
      concurrency: 1,
      timeout: Infinity,
    });
    await pool.abort(new Error("enough"));
    const error = await assertRejects(() => pool.run(task(0)), ChunkError);
    assertEquals(error.kind, "aborted");
    assertStringIncludes(error.message, "the emitter was aborted: enough");
  });
});

Deno.test("Pool abort() kills every worker and settles once they are gone", async () => {
  const kind = new FakeKind(true, false);
  const pool = new Pool(kind, { pool: 2, concurrency: 1, timeout: Infinity });
  const results = [0, 1, 2].map((i) =>
    pool.run(task(i)).then((v) => v, (e: ChunkError) => e.message)
  );
  kind.workers[0]!.events.ready();
  let aborted = false;
  const aborting = pool.abort(new Error("stop")).then(() => aborted = true);
  assertEquals(await Promise.all(results), [
    "Chunk 0 (offset 0, t0 0) failed in process mode: the emitter was aborted while the chunk ran: its fake was terminated: stop",
    ...[1, 2].map((i) =>
      `Chunk ${i} (offset ${
        2 * i
      }, t0 0) failed in process mode: the emitter was aborted before a fake took the chunk: stop`
    ),
  ]);
  assert(kind.workers.every((w) => w.killed));
  await settle();
  assertEquals(aborted, false, "abort() settled before its workers were gone");
  for (const worker of kind.workers) worker.exit();
  await aborting;
});

Deno.test("Pool counts a worker started after a crash as replaced, not one started after a failed load", async () => {
  const kind = new FakeKind();
  const pool = new Pool(kind, { pool: 1, concurrency: 1, timeout: Infinity });
  const first = pool.run(task(0)).catch((e: ChunkError) => e.kind);
  kind.workers[0]!.events.ready();
  kind.workers[0]!.events.fault("crash", "it fell over");
  assertEquals(await first, "crash");
  await settle();
  assertEquals(pool.counts().replaced, 1);
  kind.workers[1]!.events.fault("load", "it could not load the module");
  await settle();
  assertEquals(kind.workers.length, 3);
  kind.workers[2]!.events.ready();
  const second = pool.run(task(1));
  kind.workers[2]!.reply(1);
  assertEquals(await second, 1);
  assertEquals(pool.counts(), { workers: 1, replaced: 1 });
  await pool.close();
});

Deno.test("Pool gives up on start-up only after startAttempts failures in a row", async () => {
  const kind = new FakeKind();
  const pool = new Pool(kind, {
    pool: 1,
    concurrency: 1,
    timeout: Infinity,
    startAttempts: 2,
  });
  const first = pool.run(task(0));
  kind.workers[0]!.events.fault("load", "not yet");
  await settle();
  // A worker that starts ends the run of failures.
  kind.workers[1]!.events.ready();
  kind.workers[1]!.reply(0);
  assertEquals(await first, 0);
  const lost = pool.run(task(1)).catch((e: ChunkError) => e.kind);
  kind.workers[1]!.events.fault("crash", "it fell over");
  assertEquals(await lost, "crash");
  await settle();
  kind.workers[2]!.events.fault("load", "not yet");
  await settle();
  // One failure in a row, not two: a new worker starts.
  assertEquals(kind.workers.length, 4);
  kind.workers[3]!.events.ready();
  const last = pool.run(task(2));
  kind.workers[3]!.reply(2);
  assertEquals(await last, 2);
  await pool.close();
});

Deno.test("Pool never sends a chunk that timed out waiting for a worker", async () => {
  const kind = new FakeKind();
  const pool = new Pool(kind, { pool: 1, concurrency: 1, timeout: 50 });
  const error = await assertRejects(() => pool.run(task(0)), ChunkError);
  assertEquals(error.kind, "timeout");
  const worker = kind.workers[0]!;
  worker.events.ready();
  assertEquals(worker.got, []);
  await pool.close();
});

Deno.test({
  name:
    "process mode children keep Deno's own settings, the callback sees only env (RELIABILITY 37)",
  // It reads what the child was started with from /proc.
  ignore: Deno.build.os !== "linux",
}, async () => {
  const denoDir = JSON.parse(
    new TextDecoder().decode(
      (await new Deno.Command(Deno.execPath(), {
        args: ["info", "--json"],
        stdout: "piped",
      }).output()).stdout,
    ),
  ).denoDir as string;
  const { code, stdout, stderr } = await runScript("environment.ts", [], {
    env: { DENO_DIR: denoDir, NO_PROXY: "example.invalid" },
  });
  assertEquals(code, 0, stderr);
  const { seen, started } = JSON.parse(stdout) as {
    seen: Record<string, string>;
    started: string[];
  };
  assertEquals(seen.GIVEN, "1");
  assertEquals(seen.DENO_DIR, undefined);
  assertEquals(seen.NO_PROXY, undefined);
  assert(started.includes(`DENO_DIR=${denoDir}`), started.join(" "));
  assert(started.includes("NO_PROXY=example.invalid"), started.join(" "));
});

Deno.test({
  name:
    "process mode children of a program that may not read its environment inherit it, and the callback sees only env (RELIABILITY 53)",
  // It reads what the child was started with from /proc.
  ignore: Deno.build.os !== "linux",
}, async (t) => {
  // No --allow-env, as the README's permissions: DENO_DIR cannot be read to
  // be passed on, so the child inherits everything and hides it.
  const fixture = new URL("./fixtures/process/environment.ts", import.meta.url);
  for (const how of ["all", "list"]) {
    await t.step(
      `permissions.env: ${how === "all" ? "true" : "a list"}`,
      async () => {
        const output = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-read",
            `--allow-run=${Deno.execPath()},/bin/cat`,
            `--import-map=${
              new URL("../.ci/import_map.json", import.meta.url).pathname
            }`,
            fixture.pathname,
            how,
          ],
          clearEnv: true,
          env: {
            DENO_DIR: Deno.env.get("DENO_DIR") ??
              `${Deno.env.get("HOME")}/.cache/deno`,
            SECRET: "s3cret",
            HOME: Deno.env.get("HOME") ?? "/",
          },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const decoder = new TextDecoder();
        const stderr = decoder.decode(output.stderr);
        assertEquals(output.code, 0, stderr);
        const { seen, started } = JSON.parse(decoder.decode(output.stdout)) as {
          seen: Record<string, string>;
          started: string[];
        };
        assert(started.includes("SECRET=s3cret"), started.join(" "));
        assert(
          started.some((v) => v.startsWith("DENO_DIR=")),
          started.join(" "),
        );
        if (how === "all") assertEquals(withoutDenoShim(seen), { GIVEN: "1" });
        else assertEquals(seen, { GIVEN: "1" }); // SECRET: undefined
      },
    );
  }
});

Deno.test("process mode bounds its queue for a writer that ignores write()'s false (RELIABILITY 28)", async () => {
  const emitter = new BufferEmit(faults, 4, {
    mode: "process",
    pool: 1,
    concurrency: 1,
    exportName: "slow",
    maxPending: 1,
    maxQueued: 4,
  });
  let writes = 0;
  assertThrows(
    () => {
      for (;;) {
        emitter.write(new Uint8Array(4));
        writes++;
      }
    },
    RangeError,
    "'maxQueued'",
  );
  assertEquals([writes, emitter.stats.queued], [5, 4]);
  await emitter.close();
  assertEquals(emitter.stats.done, 5);
});

Deno.test({
  name:
    "process mode gives a callback's error the stderr lines the callback wrote before it threw",
  // Found by mutation testing: stderr is read on its own, so the lines a
  // callback wrote just before it threw were often not in yet when its error
  // frame arrived (dozens of 200). The child now marks in stderr how far the
  // parent must read before it reports the error.
  fn: async () => {
    const dispatcher = processPool("lastWords");
    // The 2 200 lines the children write are kept, not printed.
    const { stderr } = await keepStderr(async () => {
      try {
        assertEquals(await dispatcher.run(task(0)), 0);
        const missed: number[] = [];
        for (let i = 1; i <= 200; i++) {
          const error = await assertRejects(
            () => dispatcher.run(task(i)),
            ChunkError,
            `chunk ${i} gives up`,
          );
          if (!error.stderr.includes(`last words of chunk ${i}`)) {
            missed.push(i);
          }
        }
        assertEquals(missed, [], "errors without the callback's last line");
      } finally {
        await dispatcher.close();
      }
    });
    assertStringIncludes(stderr, "] last words of chunk 200\n");
  },
});

/** Options that let a process-mode fixture keep files in a temp dir of its own. */
function retryDir(dir: string) {
  return {
    env: { RETRY_DIR: dir },
    permissions: { env: ["RETRY_DIR"], read: [dir], write: [dir] },
  };
}

Deno.test("process mode retries a chunk whose child crashed, with retries", async (t) => {
  await t.step("retries: 1 runs chunk 1 again and it is done", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const run = await runChunks<number>("crashOnce", 4, {
        retries: 1,
        retryDelay: 10,
        ...retryDir(dir),
      });
      assertEquals(run.errors.map((e) => e.message), []);
      assertEquals([...run.results.entries()].sort(), [
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 3],
      ]);
      assertEquals(run.emitter.stats.retried, 1);
      assertEquals(run.emitter.stats.done, 4);
      assertEquals(run.emitter.stats.failed, 0);
      assertEquals(run.emitter.stats.buffers.out, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("retries: 0 fails chunk 1 as before", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const run = await runChunks<number>("crashOnce", 4, retryDir(dir));
      const error = assertOnlyChunk1Failed(run, 4, "crash");
      assertEquals(error.exitCode, 3);
      assertEquals(error.message.includes("attempts"), false);
      assertEquals(run.emitter.stats.retried, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("process mode retries a chunk that timed out, with retries", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = await runChunks<number>("hangOnce", 3, {
      retries: 1,
      retryDelay: 10,
      timeout: 1000,
      ...retryDir(dir),
    });
    assertEquals(run.errors.map((e) => e.message), []);
    assertEquals([...run.results.entries()].sort(), [[0, 0], [1, 1], [2, 2]]);
    assertEquals(run.emitter.stats.retried, 1);
    assertEquals(run.emitter.stats.replaced, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process mode gives up on a chunk that crashes on every attempt, after a growing delay", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const retryDelay = 300;
    const run = await runChunks<number>("crashAlways", 3, {
      retries: 2,
      retryDelay,
      ...retryDir(dir),
    });
    const error = assertOnlyChunk1Failed(run, 3, "crash");
    assertStringIncludes(error.message, "(after 3 attempts)");
    assertEquals(error.exitCode, 3);
    assertEquals(run.emitter.stats.retried, 2);
    assertEquals(run.emitter.stats.failed, 1);
    const times = (await Deno.readTextFile(`${dir}/attempts`)).trim()
      .split("\n").map(Number);
    assertEquals(times.length, 3);
    // Each delay is at least half its full value (jitter takes off at most
    // half): 150 ms, then 300 ms. Only lower bounds: a child also takes time.
    const [first, second] = [times[1]! - times[0]!, times[2]! - times[1]!];
    assert(first >= retryDelay / 2, `first delay ${first} ms`);
    assert(second >= retryDelay, `second delay ${second} ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process mode never retries a chunk whose callback threw", async () => {
  const run = await runChunks<number>("throwing", 3, {
    retries: 2,
    retryDelay: 10,
  });
  const error = assertOnlyChunk1Failed(run, 3, "callback");
  assertEquals(error.message.includes("attempts"), false);
  assertEquals(run.emitter.stats.retried, 0);
});
