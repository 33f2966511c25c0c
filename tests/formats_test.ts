// Copyright the @ocycle/core authors. MIT license.
import { assertEquals, assertThrows } from "@std/assert";
import { ItemEmit, SampleEmit, TextEmit } from "../mod.ts";

Deno.test("SampleEmit counts frames and never splits one", async (t) => {
  await t.step("stereo Int16Array with clip", async () => {
    const chunks: Int16Array[] = [];
    const offsets: number[] = [];
    const s = new SampleEmit(
      (chunk, _t0, info) => {
        chunks.push(chunk);
        offsets.push(info.offset);
        assertEquals(info.length * 2, chunk.length);
      },
      3,
      { type: Int16Array, channels: 2, clip: true },
    );
    s.write(Int16Array.from([1, -1, 2, -2]));
    s.write(Int16Array.from([3, -3, 4, -4, 5, -5, 6, -6, 7, -7]));
    await s.close();
    assertEquals(chunks.map((c) => [...c]), [
      [1, -1, 2, -2, 3, -3],
      [4, -4, 5, -5, 6, -6],
      [7, -7],
    ]);
    assertEquals(chunks[0] instanceof Int16Array, true);
    assertEquals(offsets, [0, 3, 6]);
    assertEquals(s.stats.written, 7);
  });
  await t.step("Float32Array by default, with borrow", async () => {
    let sum = 0;
    const s = new SampleEmit(
      (chunk) => {
        for (const v of chunk) sum += v;
      },
      4,
      { borrow: true, clip: true },
    );
    s.write(Float32Array.from([0.5, 0.5, 0.5, 0.5, 1]));
    await s.close();
    assertEquals(sum, 3);
  });
  await t.step("another type or a partial frame is a TypeError", async () => {
    const s = new SampleEmit(() => {}, 4, { type: Int16Array, channels: 2 });
    assertThrows(
      () => s.write(new Float32Array(4) as unknown as Int16Array),
      TypeError,
      "'data' must be an Int16Array or a Uint8Array of its little-endian bytes: received Float32Array of length 4",
    );
    assertThrows(
      () => s.write(new Int16Array(3)),
      TypeError,
      "whole frames of 2 channels: received Int16Array of length 3",
    );
    await s.close();
  });
  await t.step("a view of a detached buffer is a TypeError", async () => {
    // RELIABILITY item 35.
    const s = new SampleEmit(() => {}, 4, { type: Int16Array, channels: 2 });
    const frame = new Int16Array(4);
    frame.buffer.transfer();
    assertThrows(
      () => s.write(frame),
      TypeError,
      "Cannot write to SampleEmit as 'data' must not be a view of a detached ArrayBuffer",
    );
    await s.close();
  });
  await t.step("a bad type or channels is named", () => {
    assertThrows(
      () => new SampleEmit(() => {}, 4, { type: Array as never }),
      TypeError,
      "'type' must be a typed array constructor",
    );
    assertThrows(
      () => new SampleEmit(() => {}, 4, { channels: 0 }),
      RangeError,
      "'channels' must be a positive integer: received number 0",
    );
  });
});

Deno.test("ItemEmit emits arrays of items that belong to the callback", async () => {
  const chunks: { id: number }[][] = [];
  const items = new ItemEmit<{ id: number }>(
    (chunk) => {
      chunks.push(chunk);
    },
    2,
    { clip: true, hop: 1 },
  );
  items.write([{ id: 1 }, { id: 2 }]);
  items.write([{ id: 3 }]);
  items.write([]);
  await items.close({ flush: false });
  assertEquals(chunks, [[{ id: 1 }, { id: 2 }], [{ id: 2 }, { id: 3 }]]);
  chunks[0]!.push({ id: 99 }); // the callback's to keep: changing it is fine
  assertEquals(chunks[1], [{ id: 2 }, { id: 3 }]);
  assertThrows(
    () => new ItemEmit(() => {}, 2, { borrow: true }),
    TypeError,
    "only bytes and samples are pooled",
  );
});

Deno.test("ItemEmit keeps the items of a write it must defer, even if the caller then changes the array", async () => {
  const chunks: number[][] = [];
  const scratch = [7, 7];
  const items: ItemEmit<number, void> = new ItemEmit<number, void>(
    (chunk, _t0, info) => {
      chunks.push(chunk);
      if (info.index === 0) {
        items.write(scratch); // deferred: this chunk is being handed on
        scratch.fill(0);
      }
    },
    2,
    { clip: true },
  );
  items.write([1, 2]);
  await items.close();
  assertEquals(chunks, [[1, 2], [7, 7]]);
});

Deno.test("ItemEmit sampler with hop < size starts a fresh window after the pause", async () => {
  const chunks: number[][] = [];
  const items = new ItemEmit<number>(
    (chunk) => {
      chunks.push(chunk);
    },
    4,
    { clip: true, hop: 2, sampler: 100 },
  );
  items.write([0, 1, 2, 3, 4, 5], 1000); // emits [0..3]; the carry goes
  items.write([20, 21, 22, 23], 1100); // resumes: a fresh window
  await items.close({ flush: false });
  assertEquals(chunks, [[0, 1, 2, 3], [20, 21, 22, 23]]);
});

Deno.test("ItemEmit rejects a frame that is not an array", async () => {
  const items = new ItemEmit<number>(() => {}, 2);
  assertThrows(
    () => items.write(5 as unknown as number[]),
    TypeError,
    "'data' must be an array of items: received number 5",
  );
  // A string is quoted up to 40 characters, then only its length is told.
  assertThrows(
    () => items.write("x".repeat(40) as unknown as number[]),
    TypeError,
    `received string "${"x".repeat(40)}"`,
  );
  assertThrows(
    () => items.write("x".repeat(41) as unknown as number[]),
    TypeError,
    "received a string of length 41",
  );
  await items.close();
});

Deno.test("TextEmit counts code points and never splits a surrogate pair", async (t) => {
  await t.step("clip", async () => {
    const chunks: string[] = [];
    const text = new TextEmit(
      (chunk) => {
        chunks.push(chunk);
      },
      2,
      { clip: true },
    );
    for (const ch of "a😀b🎉🎉c") text.write(ch);
    text.write("d😀e");
    await text.close();
    assertEquals(chunks, ["a😀", "b🎉", "🎉c", "d😀", "e"]);
  });
  await t.step("hop over mixed text", async () => {
    const chunks: string[] = [];
    const text = new TextEmit(
      (chunk) => {
        chunks.push(chunk);
      },
      3,
      { clip: true, hop: 2 },
    );
    text.write("x😀y🎉z");
    await text.close({ flush: false });
    assertEquals(chunks, ["x😀y", "y🎉z"]);
  });
  await t.step(
    "a pair whose low surrogate is 0xDFFF (U+1F3FF), and the other edges",
    async () => {
      // "\u{1F3FF}" (🏿) is D83C DFFF: its low surrogate is the last one.
      const edges = "\u{10000}\u{1F3FF}\u{10FFFF}";
      const chunks: string[] = [];
      const text = new TextEmit(
        (chunk) => {
          chunks.push(chunk);
        },
        2,
        { clip: true },
      );
      text.write(`a${edges}`);
      for (const ch of `b${edges}`) text.write(ch);
      text.write("🏿🏿🏿");
      await text.close();
      assertEquals(chunks, [
        "a\u{10000}",
        "\u{1F3FF}\u{10FFFF}",
        "b\u{10000}",
        "\u{1F3FF}\u{10FFFF}",
        "🏿🏿",
        "🏿",
      ]);
      assertEquals(text.stats.written, 11);
    },
  );
  await t.step(
    "a lone surrogate is one code point, also before a low surrogate",
    async () => {
      const chunks: string[] = [];
      const text = new TextEmit(
        (chunk) => {
          chunks.push(chunk);
        },
        1,
        { clip: true },
      );
      // Only a high surrogate followed by a low one is a pair.
      text.write("\uDC00\uDC01\uD800a\uD800");
      await text.close();
      assertEquals(chunks, ["\uDC00", "\uDC01", "\uD800", "a", "\uD800"]);
      assertEquals(text.stats.written, 5);
    },
  );
  await t.step("without clip a chunk is everything written", async () => {
    const chunks: string[] = [];
    const text = new TextEmit((chunk) => {
      chunks.push(chunk);
    }, 3);
    text.write("ab");
    text.write("cde");
    text.write("f");
    await text.close();
    assertEquals(chunks, ["abcde", "f"]);
  });
  await t.step("a non-string is a TypeError", async () => {
    const text = new TextEmit(() => {}, 3);
    assertThrows(
      () => text.write(new Uint8Array(2) as unknown as string),
      TypeError,
      "'data' must be a string: received Uint8Array of length 2",
    );
    await text.close();
  });
});

/** Chunks of `size` frames the emitter gets from `pieces` of raw bytes. */
async function fromBytes<T extends Int16Array | Float32Array | Float64Array>(
  type: { new (n: number): T } & typeof Int16Array,
  channels: number,
  size: number,
  pieces: Uint8Array[],
): Promise<
  {
    chunks: number[][];
    stats: { heldBytes: number; droppedBytes: number; written: number };
  }
> {
  const chunks: number[][] = [];
  const emitter = new SampleEmit(
    (chunk) => {
      chunks.push([...chunk]);
    },
    size,
    { type, channels, clip: true },
  );
  for (const piece of pieces) emitter.write(piece);
  const held = emitter.stats.heldBytes;
  await emitter.close();
  const { droppedBytes, written } = emitter.stats;
  return { chunks, stats: { heldBytes: held, droppedBytes, written } };
}

Deno.test("SampleEmit.write() takes raw little-endian bytes and carries a split sample or frame", async (t) => {
  const cases = [
    { type: Int16Array, channels: 1, samples: [1, -2, 300, -32768, 32767] },
    { type: Int16Array, channels: 2, samples: [1, -1, 2, -2, 3, -3] },
    { type: Float32Array, channels: 1, samples: [0.5, -1.25, 3e9] },
    {
      type: Float64Array,
      channels: 3,
      samples: [Math.PI, -0, 1e-300, 7, 8, 9],
    },
  ] as const;
  for (const { type, channels, samples } of cases) {
    // Written as the bytes a little-endian machine or a WAV file holds.
    const typed = new type(samples as unknown as number[]);
    const bytes = new Uint8Array(typed.buffer);
    const size = 2;
    const expected: number[][] = [];
    for (let i = 0; i < typed.length; i += size * channels) {
      expected.push([...typed.subarray(i, i + size * channels)]);
    }
    await t.step(
      `${type.name} × ${channels}, split at every two byte offsets`,
      async () => {
        // Every two cuts, so that a carry is followed by another carry.
        for (let a = 0; a <= bytes.length; a++) {
          for (let b = a; b <= bytes.length; b++) {
            const { chunks, stats } = await fromBytes(
              type as typeof Int16Array,
              channels,
              size,
              [bytes.slice(0, a), bytes.slice(a, b), bytes.slice(b)],
            );
            assertEquals(chunks, expected, `split at bytes ${a} and ${b}`);
            assertEquals(stats.heldBytes, 0);
            assertEquals(stats.droppedBytes, 0);
            assertEquals(stats.written, samples.length / channels);
          }
        }
      },
    );
    await t.step(`${type.name} × ${channels}, one byte at a time`, async () => {
      const pieces = [...bytes].map((b) => Uint8Array.of(b));
      assertEquals(
        (await fromBytes(type as typeof Int16Array, channels, size, pieces))
          .chunks,
        expected,
      );
    });
    await t.step(
      `${type.name} × ${channels}, at an odd offset in a buffer`,
      async () => {
        const shifted = new Uint8Array(bytes.length + 1);
        shifted.set(bytes, 1);
        const { chunks } = await fromBytes(
          type as typeof Int16Array,
          channels,
          size,
          [shifted.subarray(1)],
        );
        assertEquals(chunks, expected);
      },
    );
  }
  await t.step(
    "a frame still split at close() is dropped and counted",
    async () => {
      const bytes = new Uint8Array(Int16Array.of(5, 6, 7).buffer);
      const { chunks, stats } = await fromBytes(Int16Array, 2, 4, [bytes]);
      assertEquals(chunks, [[5, 6]]);
      assertEquals(stats, { heldBytes: 2, droppedBytes: 2, written: 1 });
      const odd = await fromBytes(Int16Array, 1, 4, [bytes.subarray(0, 5)]);
      assertEquals(odd.chunks, [[5, 6]]);
      assertEquals(odd.stats, { heldBytes: 1, droppedBytes: 1, written: 2 });
    },
  );
  await t.step("and at abort()", async () => {
    const emitter = new SampleEmit(() => {}, 4, { type: Int16Array });
    emitter.write(Uint8Array.of(1));
    await emitter.abort().catch(() => {});
    assertEquals([emitter.stats.heldBytes, emitter.stats.droppedBytes], [0, 1]);
  });
  await t.step(
    "samples while a split frame waits are a TypeError; the bytes stay",
    async () => {
      const emitter = new SampleEmit(() => {}, 4, { type: Int16Array });
      emitter.write(Uint8Array.of(1, 0, 2));
      assertThrows(
        () => emitter.write(Int16Array.of(3)),
        TypeError,
        "Cannot write to SampleEmit as 'data' is Int16Array of length 1 while 1 bytes of a frame split by an earlier write of bytes wait for the rest of it (2 bytes a frame): write the rest as bytes first",
      );
      // A write that throws leaves the carry as it was.
      assertThrows(
        () => emitter.write(Uint8Array.of(0), NaN),
        RangeError,
        "'t0'",
      );
      assertEquals(emitter.stats.heldBytes, 1);
      emitter.write(Uint8Array.of(0));
      assertEquals([emitter.stats.heldBytes, emitter.stats.written], [0, 2]);
      await emitter.close();
    },
  );
  await t.step("a stream of bytes pipes into writable", async () => {
    const chunks: number[][] = [];
    const emitter = new SampleEmit(
      (chunk) => {
        chunks.push([...chunk]);
      },
      2,
      { type: Int16Array, clip: true },
    );
    const bytes = new Uint8Array(Int16Array.of(1, 2, 3, 4).buffer);
    await ReadableStream.from([
      bytes.slice(0, 3),
      bytes.slice(3, 7),
      bytes.slice(7),
    ])
      .pipeTo(emitter.writable);
    assertEquals(chunks, [[1, 2], [3, 4]]);
  });
  await t.step("a detached buffer is a TypeError", async () => {
    const emitter = new SampleEmit(() => {}, 4, { type: Int16Array });
    const bytes = new Uint8Array(4);
    structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
    assertThrows(() => emitter.write(bytes), TypeError, "detached");
    await emitter.close();
  });
});
