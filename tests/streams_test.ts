// Copyright the @ocycle/core authors. MIT license.
import {
  assert,
  assertEquals,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { BufferEmit, ChunkError, fanout, rechunk } from "../mod.ts";
import { assertBuffersAddUp } from "./buffer_emit_test.ts";

function frames(n: number, size: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => new Uint8Array(size).fill(i));
}

Deno.test("Emitter.writable applies backpressure to a fast writer", async () => {
  let running = 0, maxQueued = 0;
  const buff = new BufferEmit(
    async () => {
      running++;
      await new Promise((r) => setTimeout(r, 1));
      running--;
    },
    64,
    { clip: true, borrow: true, maxPending: 2 },
  );
  const source = ReadableStream.from(
    (function* () {
      for (let i = 0; i < 200; i++) {
        maxQueued = Math.max(maxQueued, buff.stats.queued);
        yield new Uint8Array(64);
      }
    })(),
  );
  await source.pipeTo(buff.writable);
  assertEquals(buff.stats.done, 200);
  assert(maxQueued <= 2, `queued ${maxQueued}`);
  // Bounded: one filling, one running, at most maxPending waiting, plus one
  // chunk the stream had already handed over.
  assert(buff.stats.buffers.created <= 5, `${buff.stats.buffers.created}`);
  assertBuffersAddUp(buff.stats);
});

Deno.test("Emitter.writable rejects pipeTo with a failing chunk's error", async () => {
  const buff = new BufferEmit((chunk) => {
    if (chunk[0] === 3) throw new Error("chunk three is bad");
  }, 8);
  await assertRejects(
    () => ReadableStream.from(frames(10, 8)).pipeTo(buff.writable),
    ChunkError,
    "chunk three is bad",
  );
  await buff.close(); // the error was reported once, through pipeTo
});

Deno.test("Emitter.writable abort(reason) stops in-flight work and returns the buffers", async () => {
  const errors: ChunkError[] = [];
  const buff = new BufferEmit(() => new Promise<void>(() => {}), 4, {
    borrow: true,
    onError: (e) => errors.push(e),
  });
  const writer = buff.writable.getWriter();
  await writer.write(new Uint8Array(4));
  await writer.write(new Uint8Array(4));
  const reason = new Error("user abort");
  await writer.abort(reason);
  assertEquals(errors.map((e) => e.kind), ["aborted", "aborted"]);
  // The reason reaches the emitter: its chunks' errors and close() carry it.
  for (const error of errors) assertStrictEquals(error.cause, reason);
  assertStrictEquals(await assertRejects(() => buff.close()), reason);
  assertEquals(buff.stats.buffers.out, 0);
  assertBuffersAddUp(buff.stats);
});

Deno.test("Emitter.writable close() flushes and waits", async () => {
  const done: number[] = [];
  const buff = new BufferEmit(
    async (c) => {
      await new Promise((r) => setTimeout(r, 2));
      return c.length;
    },
    10,
    { clip: true, onDone: (n) => done.push(n) },
  );
  await ReadableStream.from(frames(5, 3)).pipeTo(buff.writable);
  assertEquals(done, [10, 5]);
});

Deno.test("fanout() writes every frame to every emitter, paced by the slowest", async () => {
  const fast: number[] = [], slow: number[] = [];
  const t0s = new Map<string, number[]>([["fast", []], ["slow", []]]);
  const a = new BufferEmit(
    (c, t0) => {
      fast.push(c.length);
      t0s.get("fast")!.push(t0);
    },
    4,
    { clip: true },
  );
  const b = new BufferEmit(
    async (c, t0) => {
      await new Promise((r) => setTimeout(r, 2));
      slow.push(c.length);
      t0s.get("slow")!.push(t0);
    },
    8,
    { clip: true, maxPending: 1 },
  );
  let maxQueued = 0;
  const source = ReadableStream.from(
    (function* () {
      for (let i = 0; i < 40; i++) {
        maxQueued = Math.max(maxQueued, b.stats.queued);
        yield new Uint8Array(4);
      }
    })(),
  );
  const out = fanout(a, b);
  assertEquals(out.targets.length, 2);
  await source.pipeTo(out.writable);
  assertEquals(fast.length, 40);
  assertEquals(slow.length, 20);
  assert(maxQueued <= 1, `slow queue reached ${maxQueued}`);
  // Every other fast chunk starts with the same frame as a slow one.
  assertEquals(t0s.get("slow"), t0s.get("fast")!.filter((_, i) => i % 2 === 0));
});

Deno.test("fanout() honours the backpressure of every target, the first as well as the last", async (t) => {
  for (const full of ["first", "last"] as const) {
    await t.step(`the ${full} target full`, async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => release = r);
      const slow = new BufferEmit(() => gate, 1, { maxPending: 1 });
      const fast = new BufferEmit(() => {}, 1, { maxPending: 1 });
      const out = full === "first" ? fanout(slow, fast) : fanout(fast, slow);
      try {
        assert(out.write(new Uint8Array(1))); // the slow one runs it
        // The slow one now has one chunk waiting: maxPending is reached.
        assertEquals(
          out.write(new Uint8Array(1)),
          false,
          "write() must say to wait",
        );
        let ready = false;
        const waiting = out.ready.then(() => ready = true);
        await new Promise((r) => setTimeout(r, 20));
        assertEquals(ready, false, "ready must wait for the slow target");
        release();
        await waiting;
        assertEquals(slow.stats.queued, 0);
      } finally {
        release();
        await out.close();
      }
      assertEquals([slow.stats.done, fast.stats.done], [2, 2]);
    });
  }
});

Deno.test("fanout() keeps writing to the others when one throws", async () => {
  const a = new BufferEmit(() => {}, 4);
  const got: number[] = [];
  const b = new BufferEmit((c) => {
    got.push(c.length);
  }, 4);
  await a.close();
  const out = fanout<Uint8Array>(a, b);
  assertThrows(() => out.write(new Uint8Array(4)), TypeError, "closed");
  assertEquals(got, [4]);
  await out.close();
  assertThrows(
    () => fanout({} as never),
    TypeError,
    "target 0 must be an emitter",
  );
});

Deno.test("fanout() refuses a target that is not a writer: null, or without write() or close()", () => {
  const noop = () => {};
  for (
    const [target, seen] of [
      [null, "null"],
      [{ close: noop }, "object"],
      [{ write: noop }, "object"],
    ] as const
  ) {
    assertThrows(
      () => fanout(new BufferEmit(noop, 4), target as never),
      TypeError,
      `target 1 must be an emitter: received ${seen}`,
    );
  }
});

Deno.test("fanout().write() hands the caller's t0 to every target", async () => {
  const t0s: number[][] = [[], []];
  const targets = t0s.map((seen) =>
    new BufferEmit((_c, t0) => {
      seen.push(t0);
    }, 2)
  );
  const out = fanout(...targets);
  out.write(new Uint8Array(2), 1_000);
  out.write(new Uint8Array(2), 2_000);
  await out.close();
  assertEquals(t0s, [[1_000, 2_000], [1_000, 2_000]]);
});

Deno.test("fanout().write() throws every target's error, as an AggregateError when several fail", async () => {
  const first = new BufferEmit(() => {}, 4);
  const third = new BufferEmit(() => {}, 4);
  const got: number[] = [];
  const second = new BufferEmit((c) => {
    got.push(c.length);
  }, 4);
  await first.close();
  await third.abort(new Error("third is gone"));
  const out = fanout<Uint8Array>(first, second, third);
  const error = assertThrows(
    () => out.write(new Uint8Array(4)),
    AggregateError,
    "2 fanout targets failed to write",
  );
  assertEquals(error.errors.length, 2);
  assert(error.errors[0] instanceof TypeError, String(error.errors[0]));
  assertEquals((error.errors[1] as Error).message, "third is gone");
  assertEquals(got, [4]); // the target between them still got the frame
  await second.close();
});

Deno.test("fanout().ready rejects with every failing target's error, and loses none", async (t) => {
  const failing = (what: string) =>
    new BufferEmit(() => {
      throw new Error(what);
    }, 1);
  await t.step("one fails: its error", async () => {
    const out = fanout(failing("only one"), new BufferEmit(() => {}, 1));
    out.write(new Uint8Array(1));
    await assertRejects(() => out.ready, ChunkError, "only one");
    await out.close(); // the error was reported once, through ready
  });
  await t.step("two fail: both errors, in an AggregateError", async () => {
    const out = fanout(failing("first"), failing("second"));
    out.write(new Uint8Array(1));
    const error = await assertRejects(
      () => out.ready,
      AggregateError,
      "2 fanout targets failed to be ready",
    );
    assertEquals(error.errors.length, 2);
    assertStringIncludes(error.errors[0].message, "first");
    assertStringIncludes(error.errors[1].message, "second");
    await out.close();
  });
});

Deno.test("fanout().close() closes every target, also after one fails, and reports every failure", async (t) => {
  const failing = (what: string) =>
    new BufferEmit(() => {
      throw new Error(what);
    }, 4);
  await t.step("one fails: the others still flush their tails", async () => {
    const tails: number[] = [];
    const good = new BufferEmit((c) => {
      tails.push(c.length);
    }, 4);
    const out = fanout(failing("bad tail"), good);
    out.write(new Uint8Array(2));
    await assertRejects(() => out.close(), ChunkError, "bad tail");
    assertEquals(tails, [2]);
    assertThrows(() => good.write(new Uint8Array(1)), TypeError, "closed");
  });
  await t.step("two fail: both errors, in an AggregateError", async () => {
    const out = fanout(failing("first tail"), failing("second tail"));
    out.write(new Uint8Array(2));
    const error = await assertRejects(
      () => out.close(),
      AggregateError,
      "2 fanout targets failed to close",
    );
    assertEquals(error.errors.length, 2);
    assertStringIncludes(error.errors[0].message, "first tail");
    assertStringIncludes(error.errors[1].message, "second tail");
  });
});

Deno.test("fanout().writable abort(reason) aborts every target with that reason", async () => {
  const targets = [0, 1].map(() => new BufferEmit(() => {}, 4));
  const writer = fanout(...targets).writable.getWriter();
  await writer.write(new Uint8Array(2));
  const reason = new Error("stop all");
  await writer.abort(reason);
  for (const target of targets) {
    assertStrictEquals(await assertRejects(() => target.close()), reason);
    assertEquals(target.stats.dropped, 2); // the tail went with the abort
  }
});

Deno.test("rechunk() re-chunks a byte stream, with info on request", async () => {
  const input = frames(7, 3); // 21 bytes
  const plain = await Array.fromAsync(
    ReadableStream.from(input).pipeThrough(rechunk(5, { clip: true })),
  );
  assertEquals(plain.map((c) => c.length), [5, 5, 5, 5, 1]);
  const windows = await Array.fromAsync(
    ReadableStream.from(input).pipeThrough(
      rechunk(6, { clip: true, hop: 3, info: true, flush: false }),
    ),
  );
  assertEquals(windows.map((w) => w.info.offset), [0, 3, 6, 9, 12, 15]);
  assertEquals([...windows[1]!.chunk], [1, 1, 1, 2, 2, 2]);
  assertThrows(
    () => rechunk(0),
    RangeError,
    "'size' must be a positive integer",
  );
});

Deno.test("rechunk() errors the stream on a frame that is not bytes", async () => {
  const input = [new Uint8Array(3), 42 as never, new Uint8Array(3)];
  await assertRejects(
    () =>
      Array.fromAsync(
        ReadableStream.from(input).pipeThrough(rechunk(2, { clip: true })),
      ),
    TypeError,
    "Cannot write to BufferEmit as 'data' must be",
  );
});

Deno.test("rechunk() drops a partial tail with flush: false and keeps it by default", async (t) => {
  const input = frames(7, 3); // 21 bytes: four chunks of 5 and a tail of 1
  for (
    const [options, sizes] of [
      [{ clip: true }, [5, 5, 5, 5, 1]],
      [{ clip: true, flush: true }, [5, 5, 5, 5, 1]],
      [{ clip: true, flush: false }, [5, 5, 5, 5]],
      [{ flush: false }, [6, 6, 6]],
      [{ clip: true, hop: 3 }, [5, 5, 5, 5, 5, 5, 3]],
      [{ clip: true, hop: 3, flush: false }, [5, 5, 5, 5, 5, 5]],
    ] as const
  ) {
    await t.step(JSON.stringify(options), async () => {
      const chunks = await Array.fromAsync(
        ReadableStream.from(input).pipeThrough(rechunk(5, options)),
      );
      assertEquals(chunks.map((c) => c.length), [...sizes]);
    });
  }
});

Deno.test("serial mode works with no permissions and no Node compatibility", async (t) => {
  const fixture = (name: string) =>
    new URL(`./fixtures/${name}`, import.meta.url).pathname;
  for (
    const [name, flags] of [
      ["with no permissions at all", [
        `--import-map=${fixture("../../.ci/import_map.json")}`,
      ]],
      // As on an edge runtime without node:v8: only process mode needs it.
      ["where node:v8 cannot be imported", [
        `--import-map=${fixture("no_node_v8.json")}`,
      ]],
    ] as const
  ) {
    await t.step(name, async () => {
      const { code, stdout, stderr } = await new Deno.Command(
        Deno.execPath(),
        {
          args: [
            "run",
            "--no-prompt",
            "--no-config",
            ...flags,
            fixture("no_permissions.ts"),
          ],
          stdout: "piped",
          stderr: "piped",
        },
      ).output();
      const err = new TextDecoder().decode(stderr);
      assertEquals(code, 0, err);
      assertEquals(JSON.parse(new TextDecoder().decode(stdout)), {
        // sampler: 0 drops the carried "ij" after a1, as a duty cycle must.
        seen: ["a0:4", "b:6", "a1:4", "b:4"],
        sizes: [4, 4, 2],
      });
    });
  }
});
