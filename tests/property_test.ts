// Copyright the @ocycle/core authors. MIT license.
// RELIABILITY item 1: any split of the same bytes into frames (empty frames,
// frames larger than size, size 1) gives byte-identical chunks, checked
// against a tiny reference model that knows nothing of buffers.
import { assertEquals } from "@std/assert";
import fc from "npm:fast-check@4.10.2";
import { BufferEmit } from "../mod.ts";

interface Expected {
  bytes: number[];
  offset: number;
  final: boolean;
}

/** What the chunks must be, worked out from the whole stream at once. */
function model(
  data: number[],
  size: number,
  clip: boolean,
  hop: number,
  cuts: number[],
): Expected[] {
  const out: Expected[] = [];
  if (!clip) {
    // Without clip a chunk ends at the end of the frame that fills it.
    let start = 0;
    for (const end of [...cuts, data.length]) {
      if (end - start >= size) {
        out.push({
          bytes: data.slice(start, end),
          offset: start,
          final: false,
        });
        start = end;
      }
    }
    if (start < data.length) {
      out.push({ bytes: data.slice(start), offset: start, final: true });
    }
    return out;
  }
  let start = 0, emittedTo = 0;
  for (; start + size <= data.length; start += hop) {
    out.push({
      bytes: data.slice(start, start + size),
      offset: start,
      final: false,
    });
    emittedTo = start + size;
  }
  if (start < data.length && data.length > emittedTo) {
    out.push({ bytes: data.slice(start), offset: start, final: true });
  }
  return out;
}

Deno.test("BufferEmit gives the same chunks for any split of the same bytes", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 300 }),
      fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 40 }),
      fc.integer({ min: 1, max: 40 }),
      fc.boolean(),
      fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }),
      fc.boolean(),
      async (data, rawCuts, size, clip, hop, borrow) => {
        // Repeated cuts make empty frames; cuts past the end are clamped.
        const cuts = rawCuts.map((c) => Math.min(c, data.length)).sort((a, b) =>
          a - b
        );
        const useHop = clip ? hop : undefined;
        const got: Expected[] = [];
        const buff = new BufferEmit(
          (chunk, _t0, info) => {
            got.push({
              bytes: [...chunk],
              offset: info.offset,
              final: info.final,
            });
            if (info.length !== chunk.length) throw new Error("length");
          },
          size,
          {
            clip,
            borrow,
            ...(useHop === undefined ? {} : { hop: useHop }),
          },
        );
        let at = 0;
        for (const cut of [...cuts, data.length]) {
          buff.write(Uint8Array.from(data.slice(at, cut)));
          at = cut;
        }
        await buff.close();
        const expected = model(data, size, clip, useHop ?? size, cuts);
        assertEquals(got, expected);
        const stats = buff.stats;
        assertEquals(stats.written, data.length);
        assertEquals(stats.buffers.out, 0);
      },
    ),
    { numRuns: 2000 },
  );
});
