// Copyright the @ocycle/core authors. MIT license.
/**
 * The stream adapters: `rechunk` as a `TransformStream`, an emitter's
 * `writable` with backpressure, and `fanout(...).writable` feeding several
 * emitters from one `pipeTo`.
 *
 * ```sh
 * deno run examples/stream_adapters.ts
 * ```
 *
 * @module
 */

import { BufferEmit, fanout, rechunk } from "@ocycle/core";

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`stream_adapters: ${what}`);
  console.log(`ok: ${what}`);
}

// Uneven reads, as a file or a socket hands them out.
function reads(): ReadableStream<Uint8Array> {
  const sizes = [1000, 7, 4096, 333, 2000, 64, 9000];
  let byte = 0;
  return ReadableStream.from(sizes.map((n) => {
    const frame = new Uint8Array(n);
    for (let i = 0; i < n; i++) frame[i] = byte++ & 0xff;
    return frame;
  }));
}
const total = 1000 + 7 + 4096 + 333 + 2000 + 64 + 9000;

// 1. rechunk: a TransformStream from uneven reads to exact 4 KiB chunks.
const sizes = await Array.fromAsync(
  reads().pipeThrough(rechunk(4096, { clip: true })),
  (chunk) => chunk.length,
);
const expected = [
  ...Array(Math.floor(total / 4096)).fill(4096),
  total % 4096, // the tail, flushed when the stream ends
];
check(
  sizes.join() === expected.join(),
  `rechunk cut ${total} bytes into ${sizes.join(", ")}`,
);

// 2. An emitter's writable: pipeTo waits for a slow async callback (backpressure).
let running = 0, most = 0;
const slow = new BufferEmit(
  async () => {
    most = Math.max(most, ++running);
    await new Promise((resolve) => setTimeout(resolve, 5));
    running--;
  },
  1024,
  { clip: true, maxPending: 2 },
);
await reads().pipeTo(slow.writable);
check(
  slow.stats.done === Math.ceil(total / 1024) && most === 1,
  `writable ran ${slow.stats.done} chunks one at a time`,
);

// 3. fanout: one pipeTo, two emitters with their own sizes, the same stream.
const small: number[] = [], large: number[] = [];
await reads().pipeTo(
  fanout(
    new BufferEmit((c) => small.push(c.length), 2000, { clip: true }),
    new BufferEmit((c) => large.push(c.length), 8000, { clip: true }),
  ).writable,
);
check(
  small.reduce((a, b) => a + b, 0) === total &&
    large.reduce((a, b) => a + b, 0) === total,
  `fanout gave both emitters all ${total} bytes (${small.length} and ${large.length} chunks)`,
);
