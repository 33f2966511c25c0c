// Copyright the @ocycle/core authors. MIT license.
import {
  assert,
  assertEquals,
  assertFalse,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { deadline } from "@std/async/deadline";
import {
  BufferEmit,
  ChunkError,
  type ChunkInfo,
  type EmitterStats,
  fanout,
  ItemEmit,
  SampleEmit,
} from "../mod.ts";
import {
  MAX_RETRY_DELAY,
  retryDelay,
  RetryingRunner,
} from "../src/run/_retry.ts";
import type { Runner, Task } from "../src/run/_runner.ts";
import { BufferPool } from "../src/core/_buffer_pool.ts";

const bytes = (...values: number[]) => Uint8Array.from(values);
const range = (n: number, from = 0) =>
  Uint8Array.from({ length: n }, (_, i) => (from + i) & 255);
const sleep = (ms: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves once `check` holds, polling; fails after a generous deadline. */
async function until(
  check: () => boolean,
  what: string,
  ms = 5_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${ms} ms waiting: ${what}`);
    }
    await sleep(5);
  }
}

/** The pool's invariant: every buffer ever made is in exactly one place. */
export function assertBuffersAddUp(stats: EmitterStats): void {
  const b = stats.buffers;
  assertEquals(
    b.created,
    b.free + b.out + b.given + b.discarded + b.lost,
    `buffers do not add up: ${JSON.stringify(b)}`,
  );
}

Deno.test("BufferEmit.write() emits the whole buffer once size is reached without clip", async () => {
  const chunks: number[][] = [];
  const buff = new BufferEmit((chunk) => {
    chunks.push([...chunk]);
  }, 4);
  buff.write(bytes(1, 2, 3));
  assertEquals(chunks, []);
  buff.write(bytes(4, 5));
  assertEquals(chunks, [[1, 2, 3, 4, 5]]);
  buff.write(bytes(6, 7, 8, 9, 10, 11));
  assertEquals(chunks[1], [6, 7, 8, 9, 10, 11]);
  buff.write(bytes(12));
  await buff.close();
  assertEquals(chunks[2], [12]);
  assertEquals(buff.stats.emitted, 3);
});

Deno.test("BufferEmit.write() emits a chunk as soon as a write fills it exactly", async () => {
  for (const clip of [false, true]) {
    const chunks: number[][] = [];
    const buff = new BufferEmit(
      (chunk) => {
        chunks.push([...chunk]);
      },
      4,
      { clip },
    );
    buff.write(range(2));
    buff.write(range(2, 2));
    assertEquals(chunks, [[0, 1, 2, 3]], `clip ${clip}`);
    await buff.close();
    assertEquals(chunks.length, 1);
  }
});

Deno.test("BufferEmit.write() carries the remainder when clip is set", async (t) => {
  await t.step("one write may emit several chunks", async () => {
    const chunks: number[][] = [];
    const infos: ChunkInfo[] = [];
    const buff = new BufferEmit(
      (chunk, _t0, info) => {
        chunks.push([...chunk]);
        infos.push(info);
      },
      3,
      { clip: true },
    );
    buff.write(range(8));
    assertEquals(chunks, [[0, 1, 2], [3, 4, 5]]);
    buff.write(range(2, 8));
    assertEquals(chunks[2], [6, 7, 8]);
    await buff.close();
    assertEquals(chunks[3], [9]);
    assertEquals(infos.map((i) => [i.index, i.offset, i.length, i.final]), [
      [0, 0, 3, false],
      [1, 3, 3, false],
      [2, 6, 3, false],
      [3, 9, 1, true],
    ]);
    assertEquals(infos.map((i) => i.reason), ["size", "size", "size", "close"]);
  });
  await t.step("hop < size makes overlapping windows", async () => {
    const chunks: number[][] = [];
    const offsets: number[] = [];
    const buff = new BufferEmit(
      (chunk, _t0, info) => {
        chunks.push([...chunk]);
        offsets.push(info.offset);
      },
      4,
      { clip: true, hop: 2 },
    );
    buff.write(range(3));
    buff.write(range(5, 3));
    await buff.close({ flush: false });
    assertEquals(chunks, [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]);
    assertEquals(offsets, [0, 2, 4]);
  });
  await t.step(
    "hop > size leaves gaps that are counted as skipped",
    async () => {
      const chunks: number[][] = [];
      const buff = new BufferEmit(
        (chunk) => {
          chunks.push([...chunk]);
        },
        2,
        { clip: true, hop: 5 },
      );
      for (const b of range(12)) buff.write(bytes(b));
      await buff.close();
      assertEquals(chunks, [[0, 1], [5, 6], [10, 11]]);
      assertEquals(buff.stats.skipped, 6);
    },
  );
});

Deno.test("BufferEmit sampler drops writes during the pause and the carried remainder", async (t) => {
  await t.step("a number of milliseconds", async () => {
    const chunks: { data: number[]; t0: number }[] = [];
    const buff = new BufferEmit(
      (chunk, t0) => {
        chunks.push({ data: [...chunk], t0 });
      },
      4,
      { clip: true, sampler: 100 },
    );
    buff.write(range(6), 1000); // emits [0..3] at T=1000, drops the carried 4, 5
    buff.write(range(4, 10), 1050); // before 1100: dropped whole
    buff.write(range(4, 20), 1100); // resumes: a fresh chunk
    buff.write(range(4, 30), 1300);
    await buff.close();
    assertEquals(chunks, [
      { data: [0, 1, 2, 3], t0: 1000 },
      { data: [20, 21, 22, 23], t0: 1100 },
      { data: [30, 31, 32, 33], t0: 1300 },
    ]);
    assertEquals(buff.stats.written, 18);
    assertEquals(buff.stats.dropped, 2 + 4);
  });
  await t.step("a function called once per emit", async () => {
    const pauses = [10, 20];
    const seen: number[] = [];
    const buff = new BufferEmit(
      (_c, t0) => {
        seen.push(t0);
      },
      1,
      { sampler: () => pauses.shift() ?? 0 },
    );
    for (let t = 0; t < 40; t += 5) buff.write(bytes(1), t);
    await buff.close();
    assertEquals(seen, [0, 10, 30, 35]);
    assertEquals(buff.stats.dropped, 4);
  });
  await t.step(
    "a bad value from the function is a RangeError naming it",
    async () => {
      const buff = new BufferEmit(() => {}, 1, { sampler: () => NaN });
      assertThrows(
        () => buff.write(bytes(1)),
        RangeError,
        "'sampler' must return a finite number of milliseconds >= 0: received number NaN",
      );
      await buff.close();
      assertEquals(buff.stats.emitted, 0); // the write failed whole
      assertEquals(buff.stats.written, 0);
    },
  );
});

Deno.test("BufferEmit.write() fails whole when the sampler throws or returns NaN or Infinity", async (t) => {
  // RELIABILITY item 34: a caller that retries the write duplicates nothing.
  for (
    const [name, bad] of [
      ["a sampler that throws", () => {
        throw new Error("sampler broke");
      }],
      ["a sampler that returns NaN", () => NaN],
      ["a sampler that returns Infinity", () => Infinity],
    ] as const
  ) {
    for (const clip of [true, false]) {
      await t.step(`${name}, clip ${clip}`, async () => {
        const chunks: number[][] = [];
        let broken = true;
        const buff = new BufferEmit(
          (chunk) => {
            chunks.push([...chunk]);
          },
          4,
          { clip, sampler: () => broken ? bad() : 0 },
        );
        buff.write(range(2), 1000);
        const before = buff.stats;
        assertThrows(() => buff.write(range(4, 2), 1001));
        assertEquals(chunks, []); // nothing of the frame reached a callback
        assertEquals(buff.stats, before);
        broken = false;
        buff.write(range(4, 2), 1001); // the retry
        await buff.close({ flush: false });
        assertEquals(chunks, [clip ? [0, 1, 2, 3] : [0, 1, 2, 3, 4, 5]]);
        assertEquals(buff.stats.written, 6);
      });
    }
  }
  await t.step(
    "when the write resumes after a pause, with hop > size",
    async () => {
      const chunks: number[][] = [];
      let broken = false;
      const buff = new BufferEmit(
        (chunk) => {
          chunks.push([...chunk]);
        },
        2,
        {
          clip: true,
          hop: 3,
          sampler: () => {
            if (broken) throw new Error("sampler broke");
            return 10;
          },
        },
      );
      buff.write(range(2), 0); // emits [0, 1], pauses until 10
      broken = true;
      const before = buff.stats;
      assertThrows(() => buff.write(range(3, 2), 20), Error, "sampler broke");
      assertEquals(buff.stats, before);
      broken = false;
      buff.write(range(3, 2), 20);
      await buff.close({ flush: false });
      assertEquals(chunks, [[0, 1], [2, 3]]);
    },
  );
});

Deno.test("BufferEmit sampler pauses run on a monotonic clock, t0 on the wall clock", async (t) => {
  // RELIABILITY item 33: a wall-clock step (NTP, a laptop waking) drops nothing.
  const realNow = Date.now;
  const HOUR = 3_600_000;
  await t.step("the wall clock steps back an hour mid-stream", async () => {
    const t0s: number[] = [];
    const buff = new BufferEmit(
      (_c, t0) => {
        t0s.push(t0);
      },
      4,
      { clip: true, sampler: 0 },
    );
    try {
      const wall = realNow();
      Date.now = () => wall;
      buff.write(range(4)); // emits, pauses for 0 ms
      Date.now = () => wall - HOUR;
      for (let i = 0; i < 70; i++) buff.write(range(4));
      assertEquals(buff.stats.dropped, 0);
      assertEquals(buff.stats.emitted, 71);
      assertEquals(t0s[0], wall);
      assertEquals(t0s[1], wall - HOUR); // t0 follows Date.now
      assertEquals(t0s[70], wall - HOUR);
    } finally {
      Date.now = realNow;
    }
    await buff.close();
  });
  await t.step(
    "the wall clock steps forward an hour: the pause still holds",
    async () => {
      const t0s: number[] = [];
      const buff = new BufferEmit(
        (_c, t0) => {
          t0s.push(t0);
        },
        4,
        { clip: true, sampler: 60_000 },
      );
      try {
        const wall = realNow();
        Date.now = () => wall;
        buff.write(range(4)); // emits, pauses for a minute
        Date.now = () => wall + HOUR;
        buff.write(range(4)); // a steady clock is still in the pause
        assertEquals(t0s, [wall]);
        assertEquals(buff.stats.dropped, 4);
      } finally {
        Date.now = realNow;
      }
      await buff.close();
    },
  );
  await t.step(
    "through fanout, which stamps frames from the wall clock",
    async () => {
      const t0s: number[][] = [[], []];
      const targets = [0, 1].map((i) =>
        new BufferEmit(
          (_c, t0) => {
            t0s[i]!.push(t0);
          },
          4,
          { clip: true, sampler: 0 },
        )
      );
      const out = fanout(...targets);
      try {
        const wall = realNow();
        Date.now = () => wall;
        out.write(range(4));
        Date.now = () => wall - HOUR;
        for (let i = 0; i < 3; i++) out.write(range(4));
      } finally {
        Date.now = realNow;
      }
      await out.close();
      assertEquals(t0s[0]!.length, 4);
      assertEquals(t0s[0], t0s[1]); // every target sees the same t0
      assertEquals(targets[0]!.stats.dropped, 0);
    },
  );
  await t.step("a caller's t0 is the data's own clock", async () => {
    const t0s: number[] = [];
    const buff = new BufferEmit(
      (_c, t0) => {
        t0s.push(t0);
      },
      2,
      { clip: true, sampler: 100 },
    );
    buff.write(range(2), 5000);
    buff.write(range(2), 5050); // in the pause, by the data's clock
    buff.write(range(2), 5100);
    await buff.close();
    assertEquals(t0s, [5000, 5100]);
    assertEquals(buff.stats.dropped, 2);
  });
  await t.step("maxWait fires on time whatever Date.now says", async () => {
    const lengths: number[] = [];
    const buff = new BufferEmit(
      (c) => {
        lengths.push(c.length);
      },
      100,
      { maxWait: 20 },
    );
    try {
      const wall = realNow();
      Date.now = () => wall - HOUR;
      buff.write(range(3));
      await until(() => lengths.length === 1, "the maxWait chunk");
    } finally {
      Date.now = realNow;
    }
    await buff.close();
    assertEquals(lengths, [3]);
  });
  await t.step(
    "a pause of 0 drops nothing, even on a monotonic clock that has not moved",
    async () => {
      // The pause ends at the time it began: a write made then is kept.
      const realPerfNow = performance.now;
      const buff = new BufferEmit(() => {}, 4, { clip: true, sampler: 0 });
      try {
        performance.now = () => 1_000;
        buff.write(range(4)); // emits, pauses until 1000
        buff.write(range(4)); // at 1000: the pause is over
      } finally {
        performance.now = realPerfNow;
      }
      await buff.close();
      const { emitted, dropped } = buff.stats;
      assertEquals({ emitted, dropped }, { emitted: 2, dropped: 0 });
    },
  );
});

Deno.test("BufferEmit sampler with hop < size does not stitch the carry to the data after the pause", async () => {
  const chunks: number[][] = [];
  const buff = new BufferEmit(
    (chunk) => {
      chunks.push([...chunk]);
    },
    4,
    { clip: true, hop: 2, sampler: 100 },
  );
  buff.write(range(6), 1000); // emits [0..3]; the carried 2, 3 and 4, 5 go
  buff.write(range(4, 20), 1100); // resumes: a fresh window
  await buff.close({ flush: false });
  assertEquals(chunks, [[0, 1, 2, 3], [20, 21, 22, 23]]);
  // 4 and 5; the carried elements were emitted already.
  assertEquals(buff.stats.dropped, 2);
});

Deno.test({
  name:
    "BufferEmit sampler with hop > size counts as dropped only elements that were written",
  // Found by mutation testing: the pause counted the gap to the next window
  // (hop - size elements, not yet written) as dropped: 9 dropped of 7 written.
  fn: async () => {
    const chunks: number[][] = [];
    const buff = new BufferEmit(
      (chunk) => {
        chunks.push([...chunk]);
      },
      2,
      { clip: true, hop: 5, sampler: 100 },
    );
    buff.write(range(2), 1000); // emits [0, 1]; nothing else was written
    assertEquals(buff.stats.dropped, 0);
    buff.write(range(5, 2), 1200); // resumes: emits [2, 3], drops 4 to 6
    await buff.close();
    assertEquals(chunks, [[0, 1], [2, 3]]);
    const { written, dropped, skipped } = buff.stats;
    assertEquals({ written, dropped, skipped }, {
      written: 7,
      dropped: 3,
      skipped: 0,
    });
  },
});

Deno.test("BufferEmit chunk t0 is the timestamp of the write that supplied its first element", async (t) => {
  await t.step(
    "with clip, the write that starts the carried chunk",
    async () => {
      const t0s: number[] = [];
      const buff = new BufferEmit(
        (_c, t0, info) => {
          assertEquals(info.t0, t0);
          t0s.push(t0);
        },
        4,
        { clip: true },
      );
      buff.write(range(3), 10);
      buff.write(range(3), 20); // completes chunk 0; chunk 1 starts in this write
      buff.write(range(3), 30); // chunk 2 starts at offset 8, in this write
      buff.write(range(3), 40);
      await buff.close();
      assertEquals(t0s, [10, 20, 30]);
    },
  );
  await t.step(
    "with hop, each window start keeps its own write's time",
    async () => {
      const t0s: number[] = [];
      const buff = new BufferEmit(
        (_c, t0) => {
          t0s.push(t0);
        },
        4,
        { clip: true, hop: 1 },
      );
      for (let i = 0; i < 6; i++) buff.write(bytes(i), 100 + i);
      await buff.close({ flush: false });
      assertEquals(t0s, [100, 101, 102]);
    },
  );
  await t.step("the clock is read only when a chunk starts", async () => {
    const realNow = Date.now;
    let reads = 0;
    Date.now = () => {
      reads++;
      return realNow();
    };
    try {
      const buff = new BufferEmit(() => {}, 100, { clip: true });
      for (let i = 0; i < 100; i++) buff.write(range(10));
      assertEquals(reads, 10); // one per chunk, not one per write
      await buff.close();
    } finally {
      Date.now = realNow;
    }
  });
});

Deno.test("BufferEmit owned chunks never change, borrowed ones are recycled", async (t) => {
  await t.step("borrow: false", async () => {
    const kept: Uint8Array[] = [];
    const buff = new BufferEmit(
      (chunk) => {
        kept.push(chunk);
      },
      4,
      { clip: true },
    );
    for (let i = 0; i < 5; i++) buff.write(range(4, i * 4));
    await buff.close();
    kept.forEach((chunk, i) => assertEquals([...chunk], [...range(4, i * 4)]));
    assertBuffersAddUp(buff.stats);
  });
  await t.step("borrow: true", async () => {
    const backing = new Set<ArrayBufferLike>();
    const copies: number[][] = [];
    const buff = new BufferEmit(
      (chunk) => {
        backing.add(chunk.buffer);
        copies.push([...chunk]);
      },
      4,
      { clip: true, borrow: true },
    );
    for (let i = 0; i < 50; i++) buff.write(range(4, i * 4));
    await buff.close();
    assertEquals(copies.length, 50);
    assertEquals(copies[49], [...range(4, 196)]);
    // A synchronous callback needs at most two buffers: the one being
    // filled and the one being read.
    assert(backing.size <= 2, `${backing.size} buffers used`);
    const stats = buff.stats;
    assert(stats.buffers.created <= 2);
    assertEquals(stats.buffers.out, 0);
    assertBuffersAddUp(stats);
  });
});

Deno.test("BufferEmit runs async callbacks one at a time, in order, with backpressure", async (t) => {
  await t.step("order and maxPending", async () => {
    const order: string[] = [];
    let running = 0;
    const buff = new BufferEmit(
      async (chunk, _t0, info) => {
        running++;
        assertEquals(running, 1);
        order.push(`start ${info.index}`);
        await new Promise((r) => setTimeout(r, 5));
        order.push(`end ${info.index}`);
        running--;
        return chunk[0];
      },
      2,
      { clip: true, maxPending: 2 },
    );
    assert(buff.write(range(2))); // runs at once
    assert(buff.write(range(2, 2))); // waits: 1
    assertFalse(buff.write(range(2, 4))); // waits: 2, at the bound
    assertEquals(buff.stats.queued, 2);
    await buff.ready;
    assert(buff.stats.queued < 2);
    await buff.close();
    assertEquals(order, [
      "start 0",
      "end 0",
      "start 1",
      "end 1",
      "start 2",
      "end 2",
    ]);
  });
  await t.step("drop-newest and drop-oldest count what they drop", async () => {
    for (const overflow of ["drop-newest", "drop-oldest"] as const) {
      const seen: number[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => release = r);
      const buff = new BufferEmit(
        async (chunk) => {
          await gate;
          seen.push(chunk[0]!);
        },
        1,
        { maxPending: 1, overflow },
      );
      for (let i = 0; i < 4; i++) buff.write(bytes(i));
      assertEquals(buff.stats.droppedChunks, 2);
      assertEquals(buff.stats.dropped, 2);
      release();
      await buff.close();
      assertEquals(seen, overflow === "drop-newest" ? [0, 1] : [0, 3]);
      assertBuffersAddUp(buff.stats);
    }
  });
  await t.step(
    "a dropped chunk of stereo samples counts its frames, not its samples",
    async () => {
      for (const overflow of ["drop-newest", "drop-oldest"] as const) {
        const gate = Promise.withResolvers<void>();
        const buff = new SampleEmit(() => gate.promise, 1, {
          type: Int16Array,
          channels: 2,
          maxPending: 1,
          overflow,
        });
        for (let i = 0; i < 4; i++) buff.write(Int16Array.of(i, -i));
        const { written, dropped, droppedChunks } = buff.stats;
        assertEquals({ written, dropped, droppedChunks }, {
          written: 4,
          dropped: 2,
          droppedChunks: 2,
        }, overflow);
        gate.resolve();
        await buff.close();
      }
    },
  );
  await t.step(
    "what an overflow policy drops goes back to the pool (RELIABILITY 29)",
    async () => {
      for (const overflow of ["drop-newest", "drop-oldest"] as const) {
        let release!: () => void;
        const gate = new Promise<void>((r) => release = r);
        const buff = new BufferEmit(() => gate, 1024, {
          maxPending: 2,
          overflow,
        });
        for (let i = 0; i < 1000; i++) buff.write(new Uint8Array(1024));
        const { droppedChunks, buffers } = buff.stats;
        assertEquals(droppedChunks, 1000 - 3);
        // One running, two waiting, one being filled, one spare: no buffer
        // is made per dropped chunk.
        assert(buffers.created <= 6, `${overflow}: ${buffers.created} made`);
        assertEquals(buffers.given, 1);
        release();
        await buff.close();
        assertEquals(buff.stats.buffers.given, 3);
        assertBuffersAddUp(buff.stats);
      }
    },
  );
});

Deno.test("BufferEmit.ready waits until fewer than maxPending chunks wait, also when one write makes many", async () => {
  let seen: EmitterStats | undefined;
  const buff = new BufferEmit(
    async () => {
      await sleep(1);
    },
    1,
    { clip: true, maxPending: 2 },
  );
  // One frame, ten chunks: chunk 0 runs, nine wait.
  assertFalse(buff.write(range(10)));
  assertEquals(buff.stats.queued, 9);
  await buff.ready.then(() => seen = buff.stats);
  // It resolved only once the queue was below maxPending: chunks 0 to 7
  // done, 8 running, 9 waiting.
  assertEquals(
    [seen!.queued, seen!.inFlight, seen!.done],
    [1, 1, 8],
  );
  await buff.close();
  assertEquals(buff.stats.done, 10);
});

Deno.test("BufferEmit.write() says false while maxPending chunks wait, also for a frame that cuts nothing after chunks cut by a flush", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  let inside = true;
  const buff: BufferEmit<void> = new BufferEmit(
    async (_chunk, _t0, info) => {
      // Chunk 0's callback writes ten bytes: applied once the flush that
      // cut it is done, they cut chunks 1 and 2 (both wait) and leave two.
      if (info.index === 0 && inside) {
        inside = false;
        buff.write(range(10));
      }
      await gate;
    },
    4,
    { clip: true, maxPending: 1 },
  );
  assert(buff.write(range(2)));
  buff.flush();
  assertEquals([buff.stats.inFlight, buff.stats.queued], [1, 2]);
  // One byte more: it lands in the partial chunk and cuts nothing, but the
  // queue is over maxPending.
  assertFalse(buff.write(range(1)));
  release();
  await buff.close();
  assertEquals(buff.stats.done, 4);
});

Deno.test("BufferEmit holds one buffer while a callback is done with each borrowed chunk when it returns, and a second only while one holds its chunk", async (t) => {
  await t.step("a synchronous callback: one buffer, refilled", async () => {
    const buff = new BufferEmit((chunk) => void chunk[0], 4, { borrow: true });
    for (let i = 0; i < 10; i++) buff.write(range(4, i));
    assertEquals(buff.stats.emitted, 10);
    assertEquals(buff.stats.buffers.created, 1);
    await buff.close();
    assertEquals(buff.stats.buffers.created, 1);
  });
  await t.step(
    "clip without hop (hop === size): nothing is carried, one buffer",
    async () => {
      const buff = new BufferEmit((chunk) => void chunk[0], 4, {
        borrow: true,
        clip: true,
      });
      buff.write(range(10));
      for (let i = 0; i < 10; i++) buff.write(range(4, i));
      assertEquals(buff.stats.emitted, 12);
      assertEquals(buff.stats.buffers.created, 1);
      await buff.close();
      assertEquals(buff.stats.buffers.created, 1);
    },
  );
  await t.step(
    "an asynchronous callback: a second buffer while it runs",
    async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => release = r);
      const buff = new BufferEmit(() => gate, 4, { borrow: true });
      buff.write(range(4));
      buff.write(range(2));
      assertEquals(buff.stats.buffers.created, 2);
      release();
      await until(() => buff.stats.done === 1, "chunk 0 done");
      await buff.close();
      assertEquals(buff.stats.buffers.created, 2);
    },
  );
  await t.step(
    "a window overlap is carried: the next buffer is taken first",
    async () => {
      const buff = new BufferEmit((chunk) => void chunk[0], 4, {
        borrow: true,
        clip: true,
        hop: 2,
      });
      buff.write(range(10));
      assertEquals(buff.stats.emitted, 4);
      assertEquals(buff.stats.buffers.created, 2);
      await buff.close();
    },
  );
});

Deno.test("BufferEmit overflow drop-oldest drops the oldest waiting chunks and keeps the newest", async () => {
  const ran: [number, number][] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const buff = new BufferEmit(
    async (chunk, _t0, info) => {
      await gate;
      ran.push([info.index, chunk.length]);
    },
    1,
    { maxPending: 3, overflow: "drop-oldest" },
  );
  // Chunk i is one write of i + 1 bytes: 0 runs, 1 to 3 wait, and each of
  // 4 to 7 pushes out the oldest waiting one.
  for (let i = 0; i < 8; i++) buff.write(range(i + 1));
  assertEquals(buff.stats.queued, 3);
  assertEquals(buff.stats.droppedChunks, 4);
  assertEquals(buff.stats.dropped, 2 + 3 + 4 + 5); // chunks 1 to 4
  release();
  await buff.close();
  assertEquals(ran, [[0, 1], [5, 6], [6, 7], [7, 8]]);
  assertEquals(buff.stats.done, 4);
  assertEquals(buff.stats.droppedChunks, 4);
  assertBuffersAddUp(buff.stats);
});

Deno.test("BufferEmit with maxPending 0 lets a writer go on once nothing waits", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const buff = new BufferEmit(() => gate, 1, { maxPending: 0 });
  assert(buff.write(bytes(1))); // runs at once: nothing waits
  assertFalse(buff.write(bytes(2))); // one waits: slow down
  const ready = buff.ready;
  release();
  await ready; // resolves once the queue is empty
  await ReadableStream.from([bytes(3), bytes(4)]).pipeTo(buff.writable);
  assertEquals(buff.stats.done, 4);
});

Deno.test("BufferEmit maxWait emits a partial chunk, never an empty one", async () => {
  const chunks: { data: number[]; reason: string }[] = [];
  const buff = new BufferEmit(
    (chunk, _t0, info) => {
      chunks.push({ data: [...chunk], reason: info.reason });
    },
    10,
    { clip: true, maxWait: 20 },
  );
  buff.write(range(3));
  await new Promise((r) => setTimeout(r, 60));
  assertEquals(chunks, [{ data: [0, 1, 2], reason: "maxWait" }]);
  await new Promise((r) => setTimeout(r, 40)); // nothing buffered: no empty chunk
  assertEquals(chunks.length, 1);
  // Size wins the race: the timer was armed, but the chunk filled first.
  buff.write(range(10, 3));
  assertEquals(chunks[1], { data: [...range(10, 3)], reason: "size" });
  await new Promise((r) => setTimeout(r, 40));
  assertEquals(chunks.length, 2);
  buff.write(range(1, 13));
  await buff.close(); // the timer is cleared: the sanitizer would catch it
  assertEquals(chunks[2], { data: [13], reason: "close" });
  assertEquals(
    chunks.flatMap((c) => c.data),
    [...range(14)],
    "no element lost or repeated",
  );
});

Deno.test("BufferEmit maxWait starts again for elements written after it fired with nothing new", async (t) => {
  // A full window is emitted by size and its tail carried; the timer then
  // fires with only carried elements, which were already emitted. A new
  // element must start the timer again, not wait for the next window.
  for (
    const [hop, expected] of [
      [2, { data: [2, 3, 4], offset: 2 }],
      [3, { data: [3, 4], offset: 3 }],
    ] as const
  ) {
    await t.step(`hop ${hop}, size 4`, async () => {
      const chunks: { data: number[]; offset: number; reason: string }[] = [];
      const buff = new BufferEmit(
        (chunk, _t0, info) => {
          chunks.push({
            data: [...chunk],
            offset: info.offset,
            reason: info.reason,
          });
        },
        4,
        { clip: true, hop, maxWait: 30 },
      );
      try {
        buff.write(range(4));
        assertEquals(chunks.length, 1);
        await sleep(100); // the timer fires: nothing new, nothing emitted
        assertEquals(chunks.length, 1);
        buff.write(bytes(4));
        await until(() => chunks.length === 2, "the maxWait chunk", 2_000);
        assertEquals(chunks[1], {
          ...expected,
          data: [...expected.data],
          reason: "maxWait",
        });
      } finally {
        await buff.close();
      }
      assertEquals(chunks.length, 2);
    });
  }
});

Deno.test("BufferEmit maxWait counts from the first element after a chunk cut by size", async () => {
  // The timer the first element started must not carry over to the next
  // chunk, or that chunk would leave early.
  const maxWait = 300;
  const chunks: { data: number[]; reason: string; at: number }[] = [];
  const buff = new BufferEmit(
    (chunk, _t0, info) => {
      chunks.push({
        data: [...chunk],
        reason: info.reason,
        at: performance.now(),
      });
    },
    4,
    { maxWait },
  );
  try {
    buff.write(range(3)); // starts the timer
    await sleep(200);
    buff.write(range(1, 3)); // fills the chunk: size wins
    const since = performance.now();
    buff.write(range(1, 4)); // the first element of the next chunk
    await until(() => chunks.length === 2, "the maxWait chunk", 5_000);
    assertEquals(chunks.map((c) => [c.data, c.reason]), [
      [[0, 1, 2, 3], "size"],
      [[4], "maxWait"],
    ]);
    // Timers never fire early: allow only for the clocks' rounding.
    const waited = chunks[1]!.at - since;
    assert(waited >= maxWait - 10, `emitted after ${waited} ms`);
  } finally {
    await buff.close();
  }
});

Deno.test("BufferEmit with hop < size gives a flush() or maxWait chunk its own write's t0, and final only at close()", async () => {
  const chunks: {
    data: number[];
    t0: number;
    reason: string;
    final: boolean;
  }[] = [];
  const buff = new BufferEmit(
    (chunk, t0, info) => {
      assertEquals(info.t0, t0);
      chunks.push({
        data: [...chunk],
        t0,
        reason: info.reason,
        final: info.final,
      });
    },
    4,
    { clip: true, hop: 2, maxWait: 30 },
  );
  buff.write(range(6), 100); // windows at 0 and 2 by size; 4 and 5 carried
  buff.write(bytes(6), 200); // starts the window at 6
  buff.flush(); // the window at 4: its first element came with t0 100
  buff.write(range(3, 7), 300);
  await until(() => chunks.length === 4, "the maxWait chunk");
  buff.write(bytes(10), 400);
  await buff.close();
  assertEquals(chunks, [
    { data: [0, 1, 2, 3], t0: 100, reason: "size", final: false },
    { data: [2, 3, 4, 5], t0: 100, reason: "size", final: false },
    { data: [4, 5, 6], t0: 100, reason: "flush", final: false },
    { data: [7, 8, 9], t0: 300, reason: "maxWait", final: false },
    { data: [10], t0: 400, reason: "close", final: true },
  ]);
});

Deno.test("BufferEmit.close() flushes the tail, waits, and forbids writes", async (t) => {
  await t.step("flush by default", async () => {
    const done: number[] = [];
    const buff = new BufferEmit(
      async (chunk) => {
        await new Promise((r) => setTimeout(r, 5));
        return chunk.length;
      },
      4,
      { clip: true, onDone: (n) => done.push(n) },
    );
    buff.write(range(10));
    await buff.close();
    assertEquals(done, [4, 4, 2]);
    assertThrows(() => buff.write(range(1)), TypeError, "closed");
    assertThrows(() => buff.flush(), TypeError, "closed");
  });
  await t.step("flush: false counts the tail as dropped", async () => {
    const buff = new BufferEmit(() => {}, 4, { clip: true });
    buff.write(range(10));
    await buff.close({ flush: false });
    assertEquals(buff.stats.emitted, 2);
    assertEquals(buff.stats.dropped, 2);
  });
  await t.step("flush() emits now; an empty flush emits nothing", async () => {
    const lengths: number[] = [];
    const buff = new BufferEmit((c) => {
      lengths.push(c.length);
    }, 4);
    buff.flush();
    buff.write(range(3));
    buff.flush();
    buff.flush();
    await buff.close();
    assertEquals(lengths, [3]);
  });
  await t.step("Symbol.asyncDispose closes", async () => {
    const lengths: number[] = [];
    {
      await using buff = new BufferEmit((c) => {
        lengths.push(c.length);
      }, 4);
      buff.write(range(3));
    }
    assertEquals(lengths, [3]);
  });
});

Deno.test("BufferEmit callback errors reach the user with the chunk's info", async (t) => {
  await t.step("to onError, and the emitter keeps serving", async () => {
    const errors: [ChunkError, ChunkInfo][] = [];
    const done: number[] = [];
    const buff = new BufferEmit(
      (chunk) => {
        if (chunk[0] === 1) throw new Error("bad chunk");
        return chunk[0];
      },
      1,
      {
        onError: (e, i) => errors.push([e, i]),
        onDone: (v) => done.push(v!),
      },
    );
    for (let i = 0; i < 3; i++) buff.write(bytes(i), 100 + i);
    await buff.close();
    assertEquals(done, [0, 2]);
    assertEquals(errors.length, 1);
    const [error, info] = errors[0]!;
    assert(error instanceof ChunkError);
    assertEquals(error.kind, "callback");
    assertEquals(error.mode, "serial");
    assertEquals(info.index, 1);
    assertEquals(error.info, info);
    assert(error.message.includes("Chunk 1 (offset 1, t0 101)"));
    assert(error.message.includes("bad chunk"));
    assert(error.cause instanceof Error);
    assertEquals(buff.stats.failed, 1);
  });
  await t.step("without onError it rejects close()", async () => {
    const buff = new BufferEmit(async () => {
      await Promise.resolve();
      throw new Error("async boom");
    }, 1);
    buff.write(bytes(1));
    await assertRejects(() => buff.close(), ChunkError, "async boom");
  });
  await t.step("without onError it rejects the next ready, once", async () => {
    const buff = new BufferEmit(() => {
      throw new Error("sync boom");
    }, 1);
    buff.write(bytes(1));
    await assertRejects(() => buff.ready, ChunkError, "sync boom");
    await buff.ready; // reported once
    buff.write(bytes(2));
    buff.write(bytes(3));
    await assertRejects(() => buff.close(), AggregateError, "2 chunks");
  });
  await t.step("onDone throwing is reported as a chunk error", async () => {
    const errors: ChunkError[] = [];
    const buff = new BufferEmit(() => 1, 1, {
      onDone: () => {
        throw new Error("onDone broke");
      },
      onError: (e) => errors.push(e),
    });
    buff.write(bytes(1));
    await buff.close();
    assertEquals(errors[0]?.kind, "onDone");
  });
  await t.step(
    "onDone throwing counts the chunk as failed, not done",
    async () => {
      const buff = new BufferEmit(() => 1, 1, {
        onDone: () => {
          throw new Error("onDone broke");
        },
        onError: () => {},
      });
      buff.write(bytes(1));
      await buff.close();
      assertEquals([buff.stats.done, buff.stats.failed], [0, 1]);
    },
  );
  await t.step(
    "onError throwing rejects close() with what it threw",
    async () => {
      const buff = new BufferEmit(
        () => {
          throw new Error("bad chunk");
        },
        1,
        {
          onError: () => {
            throw new Error("onError broke");
          },
        },
      );
      buff.write(bytes(1));
      const error = await assertRejects(() => buff.close(), ChunkError);
      assertStringIncludes(error.message, "onError threw: onError broke");
      assertEquals(error.info.index, 0);
    },
  );
  await t.step(
    "close() waits for the chunks queued behind one that fails",
    async () => {
      for (const reported of [false, true]) {
        const gate = Promise.withResolvers<void>();
        const ran: number[] = [];
        const buff = new BufferEmit(
          async (chunk, _t0, info) => {
            await gate.promise;
            if (info.index === 0) throw new Error("chunk 0 broke");
            ran.push(chunk[0]!);
          },
          1,
          reported ? { onError: () => {} } : {},
        );
        for (let i = 0; i < 3; i++) buff.write(bytes(i)); // 0 runs, 1 and 2 wait
        const closing = buff.close();
        gate.resolve();
        if (reported) await closing;
        else await assertRejects(() => closing, ChunkError, "chunk 0 broke");
        // Chunk 0 failed with nothing running, but chunks 1 and 2 waited.
        assertEquals(ran, [1, 2], `onError: ${reported}`);
        const { done, failed, pending } = buff.stats;
        assertEquals({ done, failed, pending }, {
          done: 2,
          failed: 1,
          pending: 0,
        });
      }
    },
  );
});

Deno.test("BufferEmit.abort() stops queued work with a clear error", async (t) => {
  await t.step(
    "queued chunks fail as aborted, running ones are let go",
    async () => {
      const errors: ChunkError[] = [];
      const buff = new BufferEmit(() => new Promise<void>(() => {}), 1, {
        onError: (e) => errors.push(e),
        borrow: true,
      });
      for (let i = 0; i < 4; i++) buff.write(bytes(i));
      buff.write(new Uint8Array(0));
      await buff.abort(new Error("stop"));
      assertEquals(errors.map((e) => e.kind), [
        "aborted",
        "aborted",
        "aborted",
        "aborted",
      ]);
      assertEquals(new Set(errors.map((e) => e.info.index)).size, 4);
      assertThrows(() => buff.write(bytes(1)), Error, "stop");
      await assertRejects(() => buff.close(), Error, "stop");
      await assertRejects(() => buff.ready, Error, "stop");
      const stats = buff.stats;
      assertEquals(stats.pending, 0);
      assertEquals(stats.buffers.out, 0);
      assertBuffersAddUp(stats);
    },
  );
  await t.step(
    "what never ran is counted: queued chunks, and the rest of a write waiting for room",
    async () => {
      const buff = new BufferEmit(() => new Promise<void>(() => {}), 4, {
        clip: true,
        maxPending: 1,
        maxQueued: 2,
        onError: () => {},
      });
      // Chunk 0 runs, 1 and 2 wait, the other 28 bytes wait for room.
      assertFalse(buff.write(new Uint8Array(40)));
      await buff.abort(new Error("stop"));
      const { written, emitted, dropped, droppedChunks } = buff.stats;
      assertEquals({ written, emitted, dropped, droppedChunks }, {
        written: 40,
        emitted: 3,
        dropped: 28,
        droppedChunks: 2,
      });
      assertBuffersAddUp(buff.stats);
    },
  );
  await t.step("an already-aborted signal: nothing is dispatched", async () => {
    let calls = 0;
    const buff = new BufferEmit(
      () => {
        calls++;
      },
      1,
      { signal: AbortSignal.abort(new Error("too late")) },
    );
    assertThrows(() => buff.write(bytes(1)), Error, "too late");
    await assertRejects(() => buff.close(), Error, "too late");
    assertEquals(calls, 0);
  });
  await t.step("a signal aborted later stops the emitter", async () => {
    const controller = new AbortController();
    const errors: ChunkError[] = [];
    const buff = new BufferEmit(() => new Promise<void>(() => {}), 1, {
      signal: controller.signal,
      onError: (e) => errors.push(e),
    });
    buff.write(bytes(1));
    buff.write(bytes(2));
    controller.abort(new Error("cancelled"));
    // close() and a second abort() settle only once the abort is complete.
    await assertRejects(() => buff.close(), Error, "cancelled");
    assertEquals(errors.length, 2);
    assertEquals(buff.stats.pending, 0);
    await buff.abort();
  });
  await t.step(
    "timeout fails a hung async callback and frees its slot",
    async () => {
      const errors: ChunkError[] = [];
      const done: number[] = [];
      const buff = new BufferEmit(
        (chunk) => {
          if (chunk[0] === 0) return new Promise<number>(() => {});
          return chunk[0]!;
        },
        1,
        {
          timeout: 30,
          onError: (e) => errors.push(e),
          onDone: (v) => done.push(v),
        },
      );
      buff.write(bytes(0));
      buff.write(bytes(1));
      await buff.close();
      assertEquals(errors[0]?.kind, "timeout");
      assertEquals(errors[0]?.info.index, 0);
      assertEquals(done, [1]);
    },
  );
  await t.step(
    "a callback's own TimeoutError is its error, not a timeout",
    async () => {
      const errors: ChunkError[] = [];
      const buff = new BufferEmit(
        async () => {
          await sleep(1);
          throw new DOMException("the upstream timed out", "TimeoutError");
        },
        1,
        { timeout: 5_000, onError: (e) => errors.push(e) },
      );
      buff.write(bytes(0));
      await buff.close();
      assertEquals(errors.map((e) => e.kind), ["callback"]);
      assertStringIncludes(errors[0]!.message, "the upstream timed out");
    },
  );
});

Deno.test("BufferEmit.close() and abort() settle once, in whatever order they come", async (t) => {
  await t.step(
    "close() again returns the first close's promise, and its errors",
    async () => {
      const buff = new BufferEmit(() => {
        throw new Error("bad chunk");
      }, 1);
      buff.write(bytes(1));
      const first = buff.close();
      assertStrictEquals(buff.close(), first);
      const error = await assertRejects(() => first, ChunkError, "bad chunk");
      assertStrictEquals(await assertRejects(() => buff.close()), error);
    },
  );
  await t.step(
    "a close() waiting for a callback rejects with the reason of an abort() made meanwhile",
    async () => {
      const gate = Promise.withResolvers<void>();
      const buff = new BufferEmit(() => gate.promise, 1);
      buff.write(bytes(1));
      const closing = buff.close();
      const reason = new Error("stop");
      const aborting = buff.abort(reason);
      gate.resolve();
      await aborting;
      assertStrictEquals(await assertRejects(() => closing), reason);
    },
  );
  await t.step(
    "abort() after close() does nothing: close() still resolves, writes still say closed",
    async () => {
      const buff = new BufferEmit(() => {}, 4);
      buff.write(bytes(1));
      await buff.close();
      await buff.abort(new Error("too late"));
      await buff.close();
      assertThrows(() => buff.write(bytes(1)), TypeError, "is closed");
      assertEquals(buff.stats.emitted, 1);
    },
  );
  await t.step("a second abort() keeps the first reason", async () => {
    const buff = new BufferEmit(() => {}, 4);
    const first = new Error("first");
    await buff.abort(first);
    await buff.abort(new Error("second"));
    assertStrictEquals(await assertRejects(() => buff.close()), first);
    assertStrictEquals(assertThrows(() => buff.write(bytes(1))), first);
  });
  await t.step(
    "abort() without a reason: an AbortError that names the emitter",
    async () => {
      const buff = new BufferEmit(() => {}, 4);
      await buff.abort();
      const error = await assertRejects(() => buff.close(), DOMException);
      assertEquals(error.name, "AbortError");
      assertEquals(error.message, "BufferEmit was aborted");
    },
  );
  await t.step(
    "a write after abort() throws the reason itself, or a TypeError that quotes it",
    async () => {
      const reason = new RangeError("stop");
      const aborted = new BufferEmit(() => {}, 4);
      await aborted.abort(reason);
      assertStrictEquals(assertThrows(() => aborted.write(bytes(1))), reason);
      assertStrictEquals(assertThrows(() => aborted.flush()), reason);
      const withString = new BufferEmit(() => {}, 4);
      await withString.abort("no more");
      assertThrows(
        () => withString.write(bytes(1)),
        TypeError,
        "Cannot write to BufferEmit as it was aborted: no more",
      );
    },
  );
  await t.step(
    "a closed emitter lets go of its signal: the signal's listener is removed",
    async () => {
      const controller = new AbortController();
      const { signal } = controller;
      let listeners = 0;
      const add = signal.addEventListener.bind(signal);
      const remove = signal.removeEventListener.bind(signal);
      signal.addEventListener = (...args: Parameters<typeof add>) => {
        listeners++;
        add(...args);
      };
      signal.removeEventListener = (...args: Parameters<typeof remove>) => {
        listeners--;
        remove(...args);
      };
      const buff = new BufferEmit(() => {}, 4, { signal });
      assertEquals(listeners, 1);
      await buff.close();
      assertEquals(listeners, 0);
      controller.abort();
    },
  );
});

Deno.test("BufferEmit.stats counts and the buffers always add up", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const buff = new BufferEmit(() => gate, 4, {
    clip: true,
    borrow: true,
    maxPending: 3,
  });
  for (let i = 0; i < 5; i++) buff.write(range(4));
  const during = buff.stats;
  assertEquals(during.inFlight, 1);
  assertEquals(during.queued, 4);
  assertEquals(during.pending, 5);
  assertEquals(during.buffers.out, 6); // five chunks and the one being filled
  assertBuffersAddUp(during);
  release();
  await buff.close();
  const after = buff.stats;
  assertEquals(after.done, 5);
  assertEquals(after.written, 20);
  assertEquals(after.buffers.out, 0);
  assertBuffersAddUp(after);
});

Deno.test("BufferEmit.write() accepts every kind of bytes", async () => {
  const chunks: number[][] = [];
  const buff = new BufferEmit((c) => {
    chunks.push([...c]);
  }, 1);
  buff.write(new Uint16Array([0x0201]));
  buff.write(new Uint8Array([3, 4]).buffer);
  buff.write(new DataView(new Uint8Array([9, 5, 9]).buffer, 1, 1));
  buff.write("é");
  await buff.close();
  assertEquals(chunks, [[1, 2], [3, 4], [5], [0xc3, 0xa9]]);
});

const text = (chunk: Uint8Array) => new TextDecoder().decode(chunk);

Deno.test("BufferEmit calls from a serial callback, onDone or onError have defined results", async (t) => {
  // RELIABILITY item 32.
  await t.step(
    "a write from a callback keeps stream order: it lands after the write that cut the chunk",
    async () => {
      const chunks: string[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (chunk, _t0, info) => {
          chunks.push(text(chunk));
          if (info.index === 0) assert(buff.write("BB"));
        },
        4,
        { clip: true },
      );
      buff.write("AAAAaaaa");
      assertEquals(chunks, ["AAAA", "aaaa"]);
      await buff.close();
      assertEquals(chunks, ["AAAA", "aaaa", "BB"]);
      assertEquals(buff.stats.written, 10);
    },
  );
  await t.step(
    "writes from onDone keep their order, also those their chunks make in turn",
    async () => {
      const chunks: string[] = [];
      const buff: BufferEmit<string> = new BufferEmit(
        (chunk) => text(chunk),
        2,
        {
          clip: true,
          onDone: (s) => {
            chunks.push(s);
            if (s === "ab") buff.write("12");
            if (s === "12") buff.write("34");
          },
        },
      );
      buff.write("abcdef");
      await buff.close();
      assertEquals(chunks, ["ab", "cd", "ef", "12", "34"]);
    },
  );
  await t.step(
    "a deferred write keeps what was written even if the caller then changes its data",
    async () => {
      const chunks: number[][] = [];
      const scratch = new Uint8Array(2);
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (chunk, _t0, info) => {
          chunks.push([...chunk]);
          if (info.index === 0) {
            scratch.set([7, 7]);
            buff.write(scratch);
            scratch.set([8, 8]);
            buff.write(scratch);
            scratch.fill(0);
          }
        },
        2,
        { clip: true },
      );
      buff.write(range(2));
      await buff.close();
      assertEquals(chunks, [[0, 1], [7, 7], [8, 8]]);
    },
  );
  await t.step(
    "a bad write from a callback throws there, at once",
    async () => {
      let thrown: unknown;
      const buff: BufferEmit<void> = new BufferEmit<void>(() => {
        try {
          buff.write(42 as never);
        } catch (error) {
          thrown = error;
        }
      }, 1);
      buff.write(bytes(1));
      assert(thrown instanceof TypeError);
      await buff.close();
      assertEquals(buff.stats.written, 1);
    },
  );
  await t.step(
    "a write from a callback with a bad t0 or over a detached buffer throws there, at once",
    async () => {
      const detached = new Uint8Array(2);
      detached.buffer.transfer();
      const thrown: Error[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(() => {
        for (
          const write of [
            () => buff.write(bytes(1), NaN),
            () => buff.write(detached),
          ]
        ) {
          try {
            write();
          } catch (error) {
            thrown.push(error as Error);
          }
        }
      }, 1);
      buff.write(bytes(1));
      assertEquals(thrown.map((e) => e.constructor), [RangeError, TypeError]);
      assertStringIncludes(
        thrown[0]!.message,
        "Cannot write to BufferEmit as 't0' must be a finite number",
      );
      assertStringIncludes(
        thrown[1]!.message,
        "Cannot write to BufferEmit as 'data' must not be a view of a detached ArrayBuffer",
      );
      await buff.close();
      assertEquals(buff.stats.written, 1);
    },
  );
  await t.step(
    "a write from onDone of an async chunk goes behind the chunks that wait",
    async () => {
      const ran: number[] = [];
      const wrote = Promise.withResolvers<void>();
      const buff: BufferEmit<void> = new BufferEmit<void>(
        async (chunk) => {
          await Promise.resolve();
          ran.push(chunk[0]!);
        },
        1,
        {
          onDone: (_, info) => {
            if (info.index !== 0) return;
            // Outside any write: it takes effect at once.
            buff.write(bytes(9));
            wrote.resolve();
          },
        },
      );
      for (let i = 0; i < 3; i++) buff.write(bytes(i)); // 0 runs, 1 and 2 wait
      await wrote.promise;
      await buff.close();
      assertEquals(ran, [0, 1, 2, 9]);
    },
  );
  await t.step(
    "a deferred write whose sampler throws is dropped and rejects close(), not the outer write",
    async () => {
      const chunks: number[][] = [];
      let asked = 0;
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (chunk, _t0, info) => {
          chunks.push([...chunk]);
          if (info.index === 0) buff.write(range(2, 10), 0);
        },
        2,
        {
          clip: true,
          sampler: () => {
            if (asked++ > 0) throw new Error("sampler broke");
            return 0;
          },
        },
      );
      buff.write(range(2), 0); // its own frame is written whole: no throw
      assertEquals(chunks, [[0, 1]]);
      assertEquals(buff.stats.written, 4);
      assertEquals(buff.stats.dropped, 2);
      await assertRejects(() => buff.close(), Error, "sampler broke");
    },
  );
  await t.step(
    "a failed chunk and a failed deferred write reject close() as errors in the emitter",
    async () => {
      let asked = 0;
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (_chunk, _t0, info) => {
          if (info.index !== 0) return;
          buff.write(range(2, 10), 0); // deferred: its sampler throws
          throw new Error("chunk 0 broke");
        },
        2,
        {
          clip: true,
          sampler: () => {
            if (asked++ > 0) throw new Error("sampler broke");
            return 0;
          },
        },
      );
      buff.write(range(2), 0);
      const error = await assertRejects(() => buff.close(), AggregateError);
      // Not "2 chunks of BufferEmit failed": one of them is no chunk's.
      assertStringIncludes(error.message, "2 errors in BufferEmit: ");
      assertStringIncludes(error.message, "chunk 0 broke");
      assertStringIncludes(error.message, "sampler broke");
    },
  );
  await t.step(
    "close() from onDone while a write cuts several chunks: nothing vanishes",
    async () => {
      const lengths: number[] = [];
      let closing: Promise<void> | undefined;
      let refused: unknown;
      const buff: BufferEmit<number> = new BufferEmit(
        (chunk) => chunk.length,
        4,
        {
          clip: true,
          onDone: (n) => {
            lengths.push(n);
            closing ??= buff.close();
            try {
              buff.write(bytes(1)); // after close(): refused
            } catch (error) {
              refused ??= error;
            }
          },
        },
      );
      buff.write(range(14));
      assert(closing !== undefined);
      assert(refused instanceof TypeError);
      await closing;
      assertEquals(lengths, [4, 4, 4, 2]);
      assertEquals(buff.stats.written, 14);
      assertEquals(buff.stats.dropped, 0);
      assertEquals(buff.stats.buffers.out, 0);
      assertBuffersAddUp(buff.stats);
      assertThrows(() => buff.write(bytes(1)), TypeError, "closed");
    },
  );
  await t.step(
    "close() from a callback runs after the writes deferred before it",
    async () => {
      const chunks: string[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (chunk, _t0, info) => {
          chunks.push(text(chunk));
          if (info.index === 0) {
            buff.write("xy");
            void buff.close();
          }
        },
        3,
        { clip: true },
      );
      buff.write("abcd");
      await buff.close();
      assertEquals(chunks, ["abc", "dxy"]);
      assertEquals(buff.stats.dropped, 0);
    },
  );
  await t.step(
    "close({ flush: false }) from a callback drops the tail of the write that cut the chunk, and counts it",
    async () => {
      const chunks: string[] = [];
      let closing: Promise<void> | undefined;
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (chunk, _t0, info) => {
          chunks.push(text(chunk));
          if (info.index === 0) closing = buff.close({ flush: false });
        },
        2,
        { clip: true },
      );
      buff.write("abcdefg");
      await closing;
      assertEquals(chunks, ["ab", "cd", "ef"]);
      const { written, emitted, dropped } = buff.stats;
      assertEquals({ written, emitted, dropped }, {
        written: 7,
        emitted: 3,
        dropped: 1,
      });
    },
  );
  await t.step(
    "a write from the callback of a chunk close() flushes is refused",
    async () => {
      let refused: unknown;
      const buff: BufferEmit<void> = new BufferEmit<void>(() => {
        try {
          buff.write(bytes(9));
        } catch (error) {
          refused = error;
        }
      }, 4);
      buff.write(bytes(1));
      await buff.close();
      assert(refused instanceof TypeError);
      assertEquals(buff.stats.written, 1);
    },
  );
  await t.step(
    "abort() from a callback: no later chunk runs, the rest is counted as dropped",
    async () => {
      const seen: number[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (_chunk, _t0, info) => {
          seen.push(info.index);
          buff.write(bytes(1, 2, 3)); // deferred, then dropped by the abort
          void buff.abort(new Error("enough"));
        },
        4,
        { clip: true },
      );
      assertEquals(buff.write(range(16)), true);
      assertEquals(seen, [0]);
      await assertRejects(() => buff.close(), Error, "enough");
      assertThrows(() => buff.write(bytes(1)), Error, "enough");
      assertEquals(buff.stats.written, 16 + 3);
      assertEquals(buff.stats.emitted, 1);
      assertEquals(buff.stats.dropped, 12 + 3);
      assertEquals(buff.stats.buffers.out, 0);
      assertBuffersAddUp(buff.stats);
    },
  );
  await t.step(
    "abort() from onError stops the write too; a close() asked before it rejects",
    async () => {
      const seen: number[] = [];
      let closing: Promise<void> | undefined;
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (_chunk, _t0, info) => {
          seen.push(info.index);
          throw new Error("bad");
        },
        2,
        {
          clip: true,
          onError: (error) => {
            if (error.kind !== "callback") return;
            closing = buff.close();
            void buff.abort(new Error("stopped"));
          },
        },
      );
      buff.write(range(8));
      assertEquals(seen, [0]);
      assertEquals(buff.stats.dropped, 6);
      await assertRejects(() => closing!, Error, "stopped");
    },
  );
  await t.step(
    "flush() from a callback emits once the write that cut the chunk is done",
    async () => {
      const chunks: string[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (chunk, _t0, info) => {
          chunks.push(text(chunk));
          if (info.index === 0) buff.flush();
        },
        3,
        { clip: true },
      );
      buff.write("abcde");
      assertEquals(chunks, ["abc", "de"]);
      await buff.close();
      assertEquals(chunks, ["abc", "de"]);
    },
  );
});

Deno.test("BufferEmit bounds its queue for a writer that ignores write()'s false (RELIABILITY 28)", async (t) => {
  const slow = () => sleep(20);
  await t.step(
    "a write that would queue a chunk past maxQueued throws, whole",
    async () => {
      const buff = new BufferEmit(slow, 4, { maxPending: 2, maxQueued: 8 });
      let writes = 0;
      const error = assertThrows(() => {
        for (;;) {
          buff.write(new Uint8Array(4));
          writes++;
        }
      }, RangeError);
      assertEquals(writes, 9); // one running, eight waiting
      assert(error.message.includes("'maxQueued'"), error.message);
      assert(error.message.includes("await 'ready'"), error.message);
      const { written, queued } = buff.stats;
      assertEquals([written, queued], [36, 8]);
      await buff.ready;
      buff.write(new Uint8Array(4)); // after ready, writing goes on
      await buff.close();
      assertEquals(buff.stats.done, 10);
    },
  );
  await t.step("the default bound is 4 * maxPending, at least 64", () => {
    for (const [maxPending, bound] of [[16, 64], [32, 128]] as const) {
      const buff = new BufferEmit(() => new Promise(() => {}), 1, {
        maxPending,
      });
      let writes = 0;
      assertThrows(() => {
        for (;;) {
          buff.write(new Uint8Array(1));
          writes++;
        }
      }, RangeError);
      assertEquals(writes, bound + 1);
      buff.abort();
    }
  });
  await t.step(
    "maxPending is 16 by default: write() says false once 16 chunks wait",
    async () => {
      const gate = Promise.withResolvers<void>();
      const buff = new BufferEmit(() => gate.promise, 1);
      const said: boolean[] = [];
      for (let i = 0; i < 17; i++) said.push(buff.write(bytes(i)));
      // One runs; the 16th chunk to wait is the first one told to slow down.
      assertEquals(said.indexOf(false), 16);
      assertEquals(buff.stats.queued, 16);
      gate.resolve();
      await buff.close();
    },
  );
  await t.step(
    "one large write cuts what fits; the rest waits and nothing is lost",
    async () => {
      const seen: number[] = [];
      const buff = new BufferEmit(
        async (chunk, _t0, info) => {
          await sleep(1);
          seen.push(info.offset, chunk[0]!);
        },
        4,
        { clip: true, maxPending: 2, maxQueued: 8 },
      );
      const big = new Uint8Array(4 * 100).map((_, i) => i >> 2);
      assertFalse(buff.write(big));
      assertEquals(buff.stats.queued, 8);
      big.fill(255); // the rest was copied: the writer may reuse its buffer
      // A next write is refused whole while the rest waits.
      assertThrows(() => buff.write(new Uint8Array(4)), RangeError, "await");
      assertEquals(buff.stats.written, 400);
      await buff.close();
      assertEquals(buff.stats.done, 100);
      assertEquals(
        seen,
        Array.from({ length: 100 }, (_, i) => [4 * i, i]).flat(),
      );
    },
  );
  await t.step(
    "close() cuts the rest of a waiting write first, then flushes its tail",
    async () => {
      const gate = Promise.withResolvers<void>();
      const infos: ChunkInfo[] = [];
      const buff = new BufferEmit(
        (_chunk, _t0, info) => {
          infos.push(info);
          return gate.promise;
        },
        4,
        { clip: true, maxPending: 2, maxQueued: 8 },
      );
      assertFalse(buff.write(new Uint8Array(4 * 20 + 2)));
      assertEquals(buff.stats.queued, 8);
      const closing = buff.close();
      gate.resolve();
      await closing;
      assertEquals(infos.length, 21);
      const last = infos[20]!;
      assertEquals(
        [last.offset, last.length, last.reason, last.final],
        [80, 2, "close", true],
      );
      assertEquals(buff.stats.dropped, 0);
    },
  );
  await t.step(
    "once ready resolves the rest was cut: the next write is taken",
    async () => {
      const firsts: number[] = [];
      const buff = new BufferEmit(
        async (chunk) => {
          await Promise.resolve();
          firsts.push(chunk[0]!);
        },
        4,
        { clip: true, maxPending: 2, maxQueued: 4 },
      );
      const big = new Uint8Array(4 * 10).map((_, i) => i >> 2);
      assertFalse(buff.write(big)); // 1 runs, 4 wait, 5 chunks' worth waits
      await buff.ready;
      buff.write(Uint8Array.of(10, 10, 10, 10)); // must not throw
      await buff.close();
      assertEquals(firsts, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    },
  );
  await t.step(
    "a write from a callback waits for the rest of the write that cut its chunk",
    async () => {
      const gate = Promise.withResolvers<void>();
      const seen: string[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(
        async (chunk, _t0, info) => {
          seen.push(text(chunk));
          if (info.index === 0) buff.write("x"); // deferred
          await gate.promise;
        },
        2,
        { clip: true, maxPending: 1, maxQueued: 2 },
      );
      // "ab" runs, "cd" and "ef" wait, "ghi" waits for room; "x" follows it.
      assertFalse(buff.write("abcdefghi"));
      gate.resolve();
      await buff.close();
      assertEquals(seen, ["ab", "cd", "ef", "gh", "ix"]);
      assertEquals([buff.stats.written, buff.stats.dropped], [10, 0]);
    },
  );
  await t.step(
    "flush() while part of a write waits for room flushes once that part is cut, in order, dropping nothing",
    async () => {
      for (const write of [true, false]) {
        const gate = Promise.withResolvers<void>();
        const seen: string[] = [];
        const buff: BufferEmit<void> = new BufferEmit<void>(
          async (chunk, _t0, info) => {
            seen.push(`${text(chunk)}:${info.reason}`);
            if (info.index === 0 && write) buff.write("x"); // deferred
            await gate.promise;
          },
          2,
          { clip: true, maxPending: 1, maxQueued: 2 },
        );
        assertFalse(buff.write("abcdefghi")); // "ghi" waits for room
        buff.flush();
        gate.resolve();
        await buff.close();
        // The "x" written before the flush comes before it; without it the
        // flush cuts the "i" left once "gh" is cut.
        assertEquals(
          seen,
          write
            ? ["ab:size", "cd:size", "ef:size", "gh:size", "ix:size"]
            : ["ab:size", "cd:size", "ef:size", "gh:size", "i:flush"],
        );
        assertEquals(buff.stats.dropped, 0);
      }
    },
  );
  await t.step(
    "writes and a flush deferred from a callback wait behind a deferred write that waits for room, in order",
    async () => {
      const gate = Promise.withResolvers<void>();
      const seen: string[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(
        async (chunk, _t0, info) => {
          seen.push(text(chunk));
          if (info.index === 0) {
            // All deferred: "xyzuvw" fills the queue and "vw" waits for room.
            buff.write("xyzuvw");
            buff.flush();
            buff.write("q");
          }
          await gate.promise;
        },
        2,
        { clip: true, maxPending: 1, maxQueued: 2 },
      );
      buff.write("ab");
      gate.resolve();
      await deadline(buff.close(), 5000);
      assertEquals(seen, ["ab", "xy", "zu", "vw", "q"]);
      assertEquals([buff.stats.written, buff.stats.dropped], [9, 0]);
    },
  );
  await t.step(
    "close() waits for a write deferred from a callback that waits for room, and flushes it",
    async () => {
      const gates = Array.from(
        { length: 6 },
        () => Promise.withResolvers<void>(),
      );
      const seen: string[] = [];
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (chunk, _t0, info) => {
          seen.push(text(chunk));
          if (info.index === 0) {
            buff.write("xyzuvw"); // "vw" waits for room
            buff.write("q"); // waits behind it
          }
          return gates[info.index]!.promise;
        },
        2,
        { clip: true, maxPending: 1, maxQueued: 2 },
      );
      buff.write("ab");
      gates[0]!.resolve();
      // "xy" runs, "zu" and "vw" wait: "q" still waits for room
      await until(() => seen.length === 2, "xy to start");
      const closing = buff.close();
      for (const gate of gates) gate.resolve();
      await closing;
      assertEquals(seen, ["ab", "xy", "zu", "vw", "q"]);
      assertEquals([buff.stats.written, buff.stats.dropped], [9, 0]);
    },
  );
  await t.step(
    "abort() counts the writes deferred from a callback that waited for room",
    async () => {
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (_chunk, _t0, info) => {
          if (info.index === 0) {
            buff.write("xyzuvw"); // "vw" waits for room
            buff.write("q"); // waits behind it
          }
          return new Promise<void>(() => {});
        },
        2,
        { clip: true, maxPending: 1, maxQueued: 2, onError: () => {} },
      );
      buff.write("ab");
      assertEquals(buff.stats.emitted, 3);
      await buff.abort(new Error("stop"));
      const { written, emitted, dropped, droppedChunks } = buff.stats;
      assertEquals({ written, emitted, dropped, droppedChunks }, {
        written: 9,
        emitted: 3,
        dropped: 3,
        droppedChunks: 2,
      });
      assertBuffersAddUp(buff.stats);
    },
  );
  await t.step(
    "abort() settles a close() asked from a callback while part of the write waits for room",
    async () => {
      let closing: Promise<void> | undefined;
      const buff: BufferEmit<void> = new BufferEmit<void>(
        (_chunk, _t0, info) => {
          if (info.index === 0) closing = buff.close(); // deferred
          return new Promise<void>(() => {});
        },
        2,
        { clip: true, maxPending: 1, maxQueued: 2, onError: () => {} },
      );
      assertFalse(buff.write("abcdefgh")); // "gh" waits for room
      await buff.abort(new Error("stop"));
      await assertRejects(() => deadline(closing!, 5000), Error, "stop");
      assertEquals(buff.stats.dropped, 2);
    },
  );
  await t.step(
    'maxPending 0 with overflow "drop-oldest": nothing may wait, so a chunk with no room is the one dropped',
    async () => {
      const gate = Promise.withResolvers<void>();
      const ran: number[] = [];
      const buff = new BufferEmit(
        (chunk) => {
          ran.push(chunk[0]!);
          return gate.promise;
        },
        1,
        { maxPending: 0, overflow: "drop-oldest" },
      );
      buff.write(bytes(1)); // runs
      buff.write(bytes(2)); // nowhere to wait
      gate.resolve();
      await buff.close();
      assertEquals(ran, [1]);
      const { emitted, done, dropped, droppedChunks } = buff.stats;
      assertEquals({ emitted, done, dropped, droppedChunks }, {
        emitted: 2,
        done: 1,
        dropped: 1,
        droppedChunks: 1,
      });
      assertBuffersAddUp(buff.stats);
    },
  );
  await t.step("drop policies never throw: they drop and count", () => {
    for (const overflow of ["drop-newest", "drop-oldest"] as const) {
      const buff = new BufferEmit(() => new Promise(() => {}), 1, {
        maxPending: 2,
        maxQueued: 2,
        overflow,
      });
      for (let i = 0; i < 1000; i++) buff.write(new Uint8Array(1));
      assertEquals(buff.stats.droppedChunks, 1000 - 3);
      buff.abort();
    }
  });
});

Deno.test("BufferEmit.ready, while it waits, rejects with an abort's reason or a chunk's error", async (t) => {
  await t.step("abort()", async () => {
    const buff = new BufferEmit(() => new Promise<void>(() => {}), 1, {
      maxPending: 1,
      onError: () => {},
    });
    buff.write(bytes(0)); // runs, forever
    assertFalse(buff.write(bytes(1))); // waits: maxPending reached
    const ready = buff.ready;
    const reason = new Error("stop");
    await buff.abort(reason);
    assertStrictEquals(await assertRejects(() => ready), reason);
  });
  await t.step("a chunk that fails without onError", async () => {
    const gate = Promise.withResolvers<void>();
    const buff = new BufferEmit(
      async (_chunk, _t0, info) => {
        if (info.index !== 0) return;
        await gate.promise;
        throw new Error("chunk 0 broke");
      },
      1,
      { maxPending: 1 },
    );
    buff.write(bytes(0)); // runs, until the gate opens
    assertFalse(buff.write(bytes(1))); // waits: maxPending reached
    const ready = buff.ready;
    gate.resolve();
    await assertRejects(() => ready, ChunkError, "chunk 0 broke");
    await buff.close(); // the error was reported once, through ready
    assertEquals([buff.stats.done, buff.stats.failed], [1, 1]);
  });
});

Deno.test("BufferPool keeps at most `keep` free buffers and counts the others as discarded", () => {
  const pool = new BufferPool(
    { alloc: (n: number) => new Uint8Array(n) },
    4,
    2,
  );
  const taken = [pool.take(), pool.take(), pool.take()];
  for (const buffer of taken) pool.release(buffer);
  assertEquals(pool.counts(), {
    created: 3,
    free: 2,
    out: 0,
    given: 0,
    discarded: 1,
    lost: 0,
  });
  assertStrictEquals(pool.take(), taken[1]); // the last one kept is taken first
});

Deno.test("BufferPool takes every free buffer before it makes one, and a lost buffer leaves for good", () => {
  const pool = new BufferPool(
    { alloc: (n: number) => new Uint8Array(n) },
    4,
    3,
  );
  const taken = [pool.take(), pool.take(), pool.take()];
  for (const buffer of taken) pool.release(buffer);
  const again = [pool.take(), pool.take(), pool.take()];
  assertEquals(new Set(again), new Set(taken)); // all three reused
  assertEquals(pool.counts().created, 3);
  pool.lose(); // the first, with a Worker that died
  pool.give(); // the second, now the callback's
  pool.release(again[2]!);
  assertEquals(pool.counts(), {
    created: 3,
    free: 1,
    out: 0,
    given: 1,
    discarded: 0,
    lost: 1,
  });
});

Deno.test("BufferEmit with retries runs a serial chunk again after a timeout", async (t) => {
  /** A callback that hangs on the attempts `hangs` says, counting attempts per chunk. */
  const counting = (hangs: (index: number, attempt: number) => boolean) => {
    const attempts: number[] = [];
    const callback = (_c: Uint8Array, _t0: number, info: ChunkInfo) => {
      const attempt = attempts[info.index] = (attempts[info.index] ?? 0) + 1;
      if (hangs(info.index, attempt)) return new Promise<number>(() => {});
      return Promise.resolve(info.index);
    };
    return { attempts, callback };
  };
  await t.step("a chunk that hangs once is done on its retry", async () => {
    const { attempts, callback } = counting((i, n) => i === 0 && n === 1);
    const done: [number, number][] = [];
    const errors: ChunkError[] = [];
    const buff = new BufferEmit(callback, 1, {
      timeout: 30,
      retries: 1,
      retryDelay: 5,
      onDone: (v, info) => done.push([v, info.index]),
      onError: (e) => errors.push(e),
    });
    buff.write(bytes(0));
    buff.write(bytes(1));
    await buff.close();
    assertEquals(errors.map((e) => e.message), []);
    // Once each, with its own info, in order: the retry kept the slot.
    assertEquals(done, [[0, 0], [1, 1]]);
    assertEquals(attempts, [2, 1]);
    assertEquals(buff.stats.retried, 1);
    assertEquals(buff.stats.done, 2);
  });
  await t.step(
    "a chunk that always hangs fails once, after every attempt",
    async () => {
      const { attempts, callback } = counting((i) => i === 0);
      const errors: ChunkError[] = [];
      const buff = new BufferEmit(callback, 1, {
        timeout: 20,
        retries: 2,
        retryDelay: 5,
        onError: (e) => errors.push(e),
      });
      buff.write(bytes(0));
      await buff.close();
      assertEquals(errors.length, 1);
      assertEquals(errors[0]!.kind, "timeout");
      assertStringIncludes(errors[0]!.message, "(after 3 attempts)");
      assertEquals(attempts, [3]);
      assertEquals(buff.stats.retried, 2);
      assertEquals(buff.stats.failed, 1);
    },
  );
  await t.step("a callback that throws or rejects is not retried", async () => {
    const attempts: number[] = [];
    const errors: ChunkError[] = [];
    const buff = new BufferEmit(
      (_c, _t0, info) => {
        attempts[info.index] = (attempts[info.index] ?? 0) + 1;
        if (info.index === 0) throw new RangeError("bad chunk");
        return Promise.reject(new Error("rejected chunk"));
      },
      1,
      {
        timeout: 1_000,
        retries: 3,
        retryDelay: 5,
        onError: (e) => errors.push(e),
      },
    );
    buff.write(bytes(0));
    buff.write(bytes(1));
    await buff.close();
    assertEquals(errors.map((e) => e.kind), ["callback", "callback"]);
    assertEquals(attempts, [1, 1]);
    assertEquals(buff.stats.retried, 0);
  });
  await t.step(
    "a retry that throws fails the chunk with that throw, and says after how many attempts",
    async () => {
      const attempts: number[] = [];
      const done: number[] = [];
      const errors: ChunkError[] = [];
      const buff = new BufferEmit(
        (_c, _t0, info) => {
          const attempt = attempts[info.index] = (attempts[info.index] ?? 0) +
            1;
          if (attempt === 1) return new Promise<number>(() => {});
          throw new RangeError("bad on its second run");
        },
        1,
        {
          timeout: 20,
          retries: 3,
          retryDelay: 5,
          onDone: (v) => done.push(v),
          onError: (e) => errors.push(e),
        },
      );
      buff.write(bytes(0));
      await buff.close();
      assertEquals(done, []);
      assertEquals(errors.length, 1);
      assertEquals(errors[0]!.kind, "callback");
      assertStringIncludes(
        errors[0]!.message,
        "bad on its second run (after 2 attempts)",
      );
      assertEquals(attempts, [2]);
      assertEquals(buff.stats.retried, 1);
    },
  );
  await t.step(
    "a callback's own error is not retried, whatever its kind field says",
    async () => {
      const attempts: number[] = [];
      const errors: ChunkError[] = [];
      const buff = new BufferEmit(
        (_c, _t0, info) => {
          attempts[info.index] = (attempts[info.index] ?? 0) + 1;
          // A library's error may well carry a kind of its own.
          return Promise.reject(
            Object.assign(new Error("upstream timed out"), { kind: "timeout" }),
          );
        },
        1,
        {
          timeout: 1_000,
          retries: 2,
          retryDelay: 5,
          onError: (e) => errors.push(e),
        },
      );
      buff.write(bytes(0));
      await buff.close();
      assertEquals(errors.map((e) => e.kind), ["callback"]);
      assertEquals(errors[0]!.message.includes("attempts"), false);
      assertEquals(attempts, [1]);
      assertEquals(buff.stats.retried, 0);
    },
  );
  await t.step(
    "abort() while a retry runs fails the chunk as running, not as waiting",
    async () => {
      const attempts: number[] = [];
      const errors: ChunkError[] = [];
      let aborting: Promise<void> | undefined;
      const buff = new BufferEmit(
        (_c, _t0, info) => {
          const attempt = attempts[info.index] = (attempts[info.index] ?? 0) +
            1;
          // Once this attempt is under way, not from inside it.
          if (attempt === 2) {
            queueMicrotask(() => aborting = buff.abort(new Error("stop now")));
          }
          return new Promise<number>(() => {});
        },
        1,
        {
          timeout: 20,
          retries: 2,
          retryDelay: 5,
          onError: (e) => errors.push(e),
        },
      );
      buff.write(bytes(0));
      await until(() => aborting !== undefined, "the retry");
      await aborting;
      assertEquals(attempts, [2]);
      assertEquals(errors.length, 1);
      assertEquals(errors[0]!.kind, "aborted");
      assertEquals(errors[0]!.message.includes("waited to be retried"), false);
      assertStringIncludes(errors[0]!.message, "stop now (after 2 attempts)");
      assertEquals(buff.stats.retried, 1);
    },
  );
  await t.step(
    "abort() during a retry's delay fails the chunk, and nothing runs after",
    async () => {
      const { attempts, callback } = counting(() => true);
      const errors: ChunkError[] = [];
      const buff = new BufferEmit(callback, 1, {
        timeout: 20,
        retries: 2,
        // Far beyond the test: the sanitizers fail it if the timer is left.
        retryDelay: 60_000,
        onError: (e) => errors.push(e),
      });
      buff.write(bytes(0));
      await until(() => attempts[0] === 1, "the first attempt");
      await sleep(100);
      await buff.abort(new Error("stop now"));
      await sleep(50);
      assertEquals(attempts, [1]);
      assertEquals(errors.length, 1);
      assertEquals(errors[0]!.kind, "aborted");
      assertStringIncludes(errors[0]!.message, "waited to be retried");
      assertStringIncludes(errors[0]!.message, "stop now");
      assertEquals(buff.stats.retried, 0);
      assertEquals(buff.stats.pending, 0);
    },
  );
});

/** A one-byte chunk for a RetryingRunner over a runner the test drives. */
function retryTask(index: number): Task<Uint8Array> {
  return {
    chunk: bytes(index),
    info: {
      index,
      offset: index,
      length: 1,
      t0: 0,
      reason: "size",
      final: false,
    },
    buffer: undefined,
    lost: false,
    owned: true,
  };
}

Deno.test("RetryingRunner retries nothing once aborted, not even a chunk that crashed just before", async () => {
  let runs = 0;
  const inner: Runner<Uint8Array, number> = {
    capacity: 1,
    copies: false,
    run: (task) => {
      runs++;
      return Promise.reject(
        new ChunkError("crash", task.info, "thread", "it fell over"),
      );
    },
    close: () => Promise.resolve(),
    abort: () => Promise.resolve(),
    counts: () => ({ workers: 0, replaced: 0 }),
  };
  const runner = new RetryingRunner(inner, "thread", 3, 0);
  const result = runner.run(retryTask(0));
  // The crash is known, but its retry not yet decided: the abort comes first.
  await runner.abort(new Error("stop"));
  const error = await assertRejects(() => Promise.resolve(result), ChunkError);
  assertEquals(error.kind, "crash");
  assertEquals(error.message.includes("attempts"), false);
  assertEquals(runs, 1);
  assertEquals(runner.counts().retried, 0);
  await runner.close();
});

Deno.test("RetryingRunner waits longer before each retry, doubling from retryDelay up to its cap", async () => {
  const crashes: Runner<Uint8Array, number> = {
    capacity: 1,
    copies: false,
    run: (task) =>
      Promise.reject(
        new ChunkError("crash", task.info, "process", "it fell over"),
      ),
    close: () => Promise.resolve(),
    abort: () => Promise.resolve(),
    counts: () => ({ workers: 0, replaced: 0 }),
  };
  const runner = new RetryingRunner(crashes, "process", 5, 3000);
  // The delays asked for are what is checked, not how long anything took:
  // each timer runs at once.
  const waits: number[] = [];
  const realSetTimeout = globalThis.setTimeout;
  const spy = (fn: () => void, ms = 0) => {
    waits.push(ms);
    return realSetTimeout(fn, 0);
  };
  globalThis.setTimeout = spy as unknown as typeof setTimeout;
  let error: ChunkError;
  try {
    error = await assertRejects(
      () => Promise.resolve(runner.run(retryTask(0))),
      ChunkError,
    );
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  assertEquals(error.kind, "crash");
  assertStringIncludes(error.message, "(after 6 attempts)");
  assertEquals(runner.counts().retried, 5);
  // Before jitter: 3 s, 6 s, then 12 s capped at MAX_RETRY_DELAY; jitter
  // takes off up to half.
  const full = [3000, 6000, MAX_RETRY_DELAY, MAX_RETRY_DELAY, MAX_RETRY_DELAY];
  assertEquals(waits.length, full.length, `${waits}`);
  waits.forEach((ms, i) =>
    assert(ms >= full[i]! / 2 && ms <= full[i]!, `wait ${i + 1}: ${ms} ms`)
  );
  await runner.close();
});

Deno.test("retryDelay() doubles per attempt, with jitter, up to a cap", () => {
  assertEquals(retryDelay(100, 1, 0), 50);
  assertEquals(retryDelay(100, 1, 1), 100);
  assertEquals(retryDelay(100, 2, 0), 100);
  assertEquals(retryDelay(100, 3, 0.5), 300);
  assertEquals(retryDelay(100, 30, 0), MAX_RETRY_DELAY / 2);
  assertEquals(retryDelay(100, 30, 1), MAX_RETRY_DELAY);
  assertEquals(retryDelay(0, 5, 0.5), 0);
});

Deno.test("BufferEmit.write() copies the common write into a lent buffer and loses none of it", async (t) => {
  // After one write through the write path, the emitter copies frames that
  // fit in the partial chunk itself (WritePath.lend()); every way out of
  // that must hand the copied bytes back first.
  const join = (chunks: Uint8Array[]) => {
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) all.set(c, (at += c.length) - c.length);
    return all;
  };

  await t.step(
    "chunks, flush(), stats and close() see every byte",
    async () => {
      const seen: Uint8Array[] = [];
      const buff = new BufferEmit((chunk) => void seen.push(chunk.slice()), 50);
      const sent: Uint8Array[] = [];
      for (let i = 0; i < 40; i++) {
        const frame = range(1 + (i * 7) % 13, i * 3);
        assert(buff.write(frame));
        sent.push(frame);
        // Each of these hands the loan back: most writes come between.
        if (i % 11 === 10) {
          assertEquals(buff.stats.written, join(sent).length);
        }
        if (i === 25) buff.flush();
      }
      await buff.close();
      assertEquals(join(seen), join(sent));
    },
  );

  await t.step("the maxWait timer emits what was copied", async () => {
    const seen: Uint8Array[] = [];
    const buff = new BufferEmit((chunk) => void seen.push(chunk.slice()), 100, {
      maxWait: 20,
    });
    buff.write(range(10));
    buff.write(range(10, 10));
    buff.write(range(10, 20));
    await until(() => seen.length === 1, "the maxWait chunk");
    assertEquals(seen[0], range(30));
    await buff.close();
  });

  await t.step(
    "a carry after a cut starts the maxWait clock again",
    async () => {
      const seen: number[] = [];
      const buff = new BufferEmit((chunk) => void seen.push(chunk.length), 10, {
        clip: true,
        hop: 7,
        maxWait: 20,
      });
      buff.write(range(10)); // a chunk; its last 3 bytes carried
      buff.write(range(2));
      await until(() => seen.length === 2, "the maxWait chunk");
      assertEquals(seen, [10, 5]);
      await buff.close();
    },
  );

  await t.step("a detached view or a bad t0 is refused as before", async () => {
    const buff = new BufferEmit(() => {}, 100);
    buff.write(range(4));
    buff.write(range(4));
    const view = new Uint8Array(8);
    view.buffer.transfer();
    assertThrows(
      () => buff.write(view),
      TypeError,
      "Cannot write to BufferEmit as 'data' must not be a view of a detached",
    );
    buff.write(range(4));
    buff.write(range(4));
    assertThrows(() => buff.write(range(4), NaN), RangeError, "'t0'");
    assertEquals(buff.stats.written, 16);
    await buff.close();
  });

  await t.step(
    "write() after close() or abort() throws; abort counts the copy",
    async () => {
      const closed = new BufferEmit(() => {}, 100);
      closed.write(range(4));
      closed.write(range(4));
      const closing = closed.close();
      assertThrows(() => closed.write(range(4)), TypeError, "closed");
      await closing;
      const aborted = new BufferEmit(() => {}, 100);
      aborted.write(range(4));
      aborted.write(range(6));
      const stopping = aborted.abort(new Error("stop"));
      assertThrows(() => aborted.write(range(4)), Error, "stop");
      await stopping;
      assertEquals(aborted.stats.dropped, 10);
    },
  );

  await t.step(
    "close() from a callback ends the writes, a carry or not",
    async () => {
      const buff = new BufferEmit(() => void buff.close(), 4, {
        clip: true,
        hop: 3,
      });
      buff.write(range(4)); // a chunk, whose callback closes; 1 byte carried
      assertThrows(() => buff.write(range(1)), TypeError, "closed");
      await buff.close();
    },
  );

  await t.step(
    "a write from a callback waits for the write that cut",
    async () => {
      const seen: Uint8Array[] = [];
      const buff = new BufferEmit(
        (chunk) => {
          seen.push(chunk.slice());
          if (seen.length === 1) {
            buff.write(bytes(99));
            buff.write(bytes(98));
          }
        },
        4,
        { clip: true, hop: 3 },
      );
      buff.write(bytes(0, 1, 2, 3, 4)); // 4 follows the cut, then 99, 98
      buff.write(bytes(5, 6, 7));
      await buff.close();
      assertEquals(seen.slice(0, 2), [bytes(0, 1, 2, 3), bytes(3, 4, 99, 98)]);
      assertEquals(buff.stats.written, 10);
    },
  );

  await t.step("a frame that completes the chunk cuts it at once", () => {
    const seen: number[] = [];
    const buff = new BufferEmit((chunk) => void seen.push(chunk.length), 8);
    buff.write(range(4));
    buff.write(range(4));
    assertEquals(seen, [8]);
    return buff.close();
  });

  await t.step(
    "a window started by a copied frame is stamped then",
    async () => {
      const infos: ChunkInfo[] = [];
      const buff = new BufferEmit(
        (_chunk, _t0, info) => void infos.push(info),
        10,
        {
          clip: true,
          hop: 3,
        },
      );
      buff.write(range(1)); // the window at 0
      await sleep(5);
      buff.write(range(5)); // the window at 3 starts in this frame
      const after = Date.now();
      await sleep(20);
      buff.write(range(4)); // completes the window at 0, starts the one at 9
      buff.write(range(1)); // so that close() emits the window at 3
      await buff.close();
      assertEquals(infos[1]!.offset, 3);
      assert(infos[1]!.t0 <= after, `stamped ${infos[1]!.t0 - after} ms late`);
    },
  );
  await t.step(
    "a copied frame whose last byte starts a window is stamped by its own write",
    async () => {
      const realNow = Date.now;
      let clock = 1_000;
      Date.now = () => clock;
      const infos: ChunkInfo[] = [];
      try {
        const buff = new BufferEmit(
          (_chunk, _t0, info) => void infos.push(info),
          10,
          { clip: true, hop: 3 },
        );
        buff.write(range(1)); // the window at 0, stamped 1000
        clock = 2_000;
        buff.write(range(3)); // bytes 1 to 3: the window at 3 starts at its last
        clock = 3_000;
        buff.write(range(6)); // completes the window at 0
        buff.write(range(1)); // so that close() emits the window at 3
        await buff.close();
      } finally {
        Date.now = realNow;
      }
      assertEquals(
        infos.map((i) => [i.offset, i.t0, i.reason]),
        [[0, 1_000, "size"], [3, 2_000, "close"]],
      );
    },
  );

  await t.step(
    "only bytes are copied so: other kinds still check each frame",
    async () => {
      const pairs = new SampleEmit(() => {}, 100, {
        type: Uint8Array,
        channels: 2,
      });
      pairs.write(Uint8Array.of(1, 2));
      pairs.write(Uint8Array.of(3, 4));
      assertThrows(
        () => pairs.write(Uint8Array.of(5)),
        TypeError,
        "whole frames",
      );
      await pairs.close();
      const items = new ItemEmit(() => {}, 100);
      items.write([1, 2]);
      items.write([3]);
      assertThrows(
        () => items.write(Uint8Array.of(4) as unknown as number[]),
        TypeError,
        "must be an array of items",
      );
      await items.close();
    },
  );

  await t.step("write() says false while the queue has no room", async () => {
    const gate = Promise.withResolvers<void>();
    const buff = new BufferEmit(() => gate.promise, 4, { maxPending: 1 });
    assert(buff.write(range(4))); // runs
    assertFalse(buff.write(range(4))); // waits: no room
    assertFalse(buff.write(range(1)));
    assertFalse(buff.write(range(1)));
    gate.resolve();
    await buff.close();
    assertEquals(buff.stats.done, 3);
  });
});
