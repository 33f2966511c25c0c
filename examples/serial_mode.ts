// Copyright the @ocycle/core authors. MIT license.
/**
 * Serial mode, the default: the callback runs inline, on the thread that
 * writes. Frames of 10 bytes go in; exact 29-byte chunks come out, the
 * remainder carried, the short tail flushed on close.
 *
 * ```sh
 * deno run examples/serial_mode.ts
 * ```
 *
 * @module
 */

import { BufferEmit } from "@ocycle/core";

const seen: string[] = [];
const buff = new BufferEmit(
  (chunk, t0, info) => {
    const text = new TextDecoder().decode(chunk);
    seen.push(text);
    console.log(
      `chunk ${info.index}: ${chunk.length} bytes from offset ${info.offset}, first frame at ${
        new Date(t0).toISOString()
      }: ${text}`,
    );
    return text.length;
  },
  29,
  {
    clip: true,
    onDone: (length, info) => {
      if (info.final) {
        console.log(
          `the tail (${length} bytes) was flushed on close`,
        );
      }
    },
  },
);

for (let i = 0; i < 10; i++) buff.write("asdfghjkl;");
await buff.close();

// 100 bytes in exact chunks of 29: three full chunks and a 13-byte tail.
const lengths = seen.map((s) => s.length);
if (
  lengths.join() !== "29,29,29,13" || seen.join("") !== "asdfghjkl;".repeat(10)
) {
  throw new Error(`unexpected chunks: ${lengths.join()}`);
}
console.log(`stats: ${JSON.stringify(buff.stats)}`);
