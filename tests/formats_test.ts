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
      "'data' must be a Int16Array: received Float32Array of length 4",
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

Deno.test("ItemEmit rejects a frame that is not an array", async () => {
  const items = new ItemEmit<number>(() => {}, 2);
  assertThrows(
    () => items.write(5 as unknown as number[]),
    TypeError,
    "'data' must be an array of items: received number 5",
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
