// Copyright the @ocycle/core authors. MIT license.
/**
 * Many concurrent streams, as an edge ingest holds one emitter per upload:
 * 1 000 and 10 000 serial BufferEmits (640-byte writes into 32 000-byte
 * chunks, `borrow: true`), the writes interleaved across streams as uploads
 * arrive (each round, one frame to every stream in a shuffled order), beside
 * a hand-written per-stream accumulator (a buffer and a fill count per
 * stream, the callback called when it is full) in the same process. Each
 * emitter variant runs with and without `maxWait`; the accumulator has a
 * `maxWait` twin that arms a timer on the first byte of each chunk, as a
 * hand-written one would.
 *
 * Reported per variant: throughput (MB/s of frames written, the best of the
 * alternating rounds) and memory per stream (heap and ArrayBuffers, after a
 * full GC, of the streams made and fed one chunk and a half, over what was
 * there before them). Marks: BufferEmit without `maxWait` at least 0.8 × the
 * accumulator's throughput, and at most 1.25 × one chunk buffer (32 000
 * bytes) of memory per emitter.
 *
 * Usage (from the repository root):
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc tests/bench/many_streams_bench.ts \
 *   [--streams 1000,10000] [--rounds 5] [--bytes 64]
 * ```
 *
 * `--bytes` is the MB written per round per variant, whatever the number of
 * streams. Without `--expose-gc` the memory figures are left out.
 *
 * @module
 */

import { BufferEmit } from "../../mod.ts";

const FRAME = 640;
const SIZE = 32_000;
const MAX_WAIT = 1_000;

/** The streams of one variant: write a frame to stream `i`, close them all. */
interface Streams {
  write(i: number, frame: Uint8Array): void;
  close(): Promise<void>;
}

/** What every callback does with a chunk: reads it, as a real one would. */
let seen = 0;
function consume(chunk: Uint8Array): void {
  seen += chunk.length + chunk[0]! + chunk[chunk.length - 1]!;
}

/** A stream as a user would hand-write it: one buffer, a fill count. */
class Accumulator {
  readonly #buffer = new Uint8Array(SIZE);
  #fill = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #maxWait: boolean;

  constructor(maxWait: boolean) {
    this.#maxWait = maxWait;
  }

  write(frame: Uint8Array): void {
    let pos = 0;
    while (pos < frame.length) {
      if (this.#maxWait && this.#fill === 0 && this.#timer === undefined) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#flush();
        }, MAX_WAIT);
      }
      const n = Math.min(frame.length - pos, SIZE - this.#fill);
      this.#buffer.set(
        pos === 0 && n === frame.length ? frame : frame.subarray(pos, pos + n),
        this.#fill,
      );
      this.#fill += n;
      pos += n;
      if (this.#fill === SIZE) this.#flush();
    }
  }

  #flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#fill === 0) return;
    consume(this.#buffer.subarray(0, this.#fill));
    this.#fill = 0;
  }

  close(): void {
    this.#flush();
  }
}

function accumulators(count: number, maxWait: boolean): Streams {
  const streams = Array.from({ length: count }, () => new Accumulator(maxWait));
  return {
    write: (i, frame) => streams[i]!.write(frame),
    close: () => {
      for (const s of streams) s.close();
      return Promise.resolve();
    },
  };
}

function emitters(count: number, maxWait: boolean): Streams {
  const options = maxWait
    ? { borrow: true, maxWait: MAX_WAIT }
    : { borrow: true };
  const streams = Array.from(
    { length: count },
    () => new BufferEmit(consume, SIZE, options),
  );
  return {
    write: (i, frame) => void streams[i]!.write(frame),
    close: async () => {
      for (const s of streams) await s.close();
    },
  };
}

interface Variant {
  readonly name: string;
  readonly make: (count: number) => Streams;
}

const VARIANTS: readonly Variant[] = [
  { name: "accumulator", make: (n) => accumulators(n, false) },
  { name: "BufferEmit", make: (n) => emitters(n, false) },
  { name: "accumulator + maxWait", make: (n) => accumulators(n, true) },
  { name: "BufferEmit + maxWait", make: (n) => emitters(n, true) },
];

/** A shuffled order of `count` streams (xorshift, fixed seed). */
function shuffled(count: number, seed: number): Uint32Array {
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  let x = seed;
  for (let i = count - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** Frames of different bytes, so that no copy is of one constant buffer. */
const FRAMES = Array.from({ length: 8 }, (_, k) => {
  const frame = new Uint8Array(FRAME);
  for (let i = 0; i < FRAME; i++) frame[i] = (i * 31 + k * 7) & 0xff;
  return frame;
});

/** Writes `frames` frames to each stream, interleaved, in shuffled orders. */
function feed(
  streams: Streams,
  count: number,
  frames: number,
  orders: Uint32Array[],
): void {
  for (let round = 0; round < frames; round++) {
    const order = orders[round % orders.length]!;
    const frame = FRAMES[round % FRAMES.length]!;
    for (let k = 0; k < count; k++) streams.write(order[k]!, frame);
  }
}

const gc = (globalThis as { gc?: () => void }).gc;

/**
 * Heap and ArrayBuffer bytes in use after full collections, once they stop
 * falling: V8 frees the memory of dead ArrayBuffers after the collection
 * that finds them, not during it.
 */
async function used(): Promise<number> {
  let last = Infinity;
  for (let i = 0; i < 20; i++) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const { heapUsed, external } = Deno.memoryUsage();
    const now = heapUsed + external;
    if (Math.abs(now - last) < 64 * 1024) return now;
    last = now;
  }
  return last;
}

/** Bytes per stream of a variant's streams, fed one chunk and a half each. */
async function memoryPerStream(
  variant: Variant,
  count: number,
  orders: Uint32Array[],
): Promise<number> {
  const before = await used();
  const streams = variant.make(count);
  feed(streams, count, Math.ceil(1.5 * SIZE / FRAME), orders);
  const after = await used();
  await streams.close();
  return (after - before) / count;
}

/** MB/s of one variant: its streams made, fed, and closed. */
async function throughput(
  variant: Variant,
  count: number,
  frames: number,
  orders: Uint32Array[],
): Promise<number> {
  // The garbage of the variant before (hundreds of MB of dead buffers) is
  // collected now, not charged to this one's timed loop.
  gc?.();
  const streams = variant.make(count);
  // A chunk's worth first: every stream has its buffer, the code is warm.
  feed(streams, count, SIZE / FRAME, orders);
  const start = performance.now();
  feed(streams, count, frames, orders);
  const ms = performance.now() - start;
  await streams.close();
  return (count * frames * FRAME) / 1e6 / (ms / 1e3);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function option(name: string): string | undefined {
  const at = Deno.args.indexOf(`--${name}`);
  return at === -1 ? undefined : Deno.args[at + 1];
}

async function main(): Promise<void> {
  const counts = (option("streams") ?? "1000,10000").split(",").map(Number);
  const rounds = Number(option("rounds") ?? 5);
  const megabytes = Number(option("bytes") ?? 64);
  for (const count of counts) {
    const orders = [1, 2, 3].map((seed) => shuffled(count, seed * 2654435761));
    // At least a chunk and a half per stream, whatever --bytes says.
    const frames = Math.max(
      Math.ceil(1.5 * SIZE / FRAME),
      Math.round(megabytes * 1e6 / FRAME / count),
    );
    const best = new Map<string, number>();
    // Each round's BufferEmit over its accumulator: a box whose speed drifts
    // between rounds moves both alike.
    const perRound: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // Alternate the order, so that no variant always runs after another.
      const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
      const now = new Map<string, number>();
      for (const variant of order) {
        const mbps = await throughput(variant, count, frames, orders);
        now.set(variant.name, mbps);
        best.set(variant.name, Math.max(best.get(variant.name) ?? 0, mbps));
      }
      perRound.push(now.get("BufferEmit")! / now.get("accumulator")!);
    }
    const memory = new Map<string, number>();
    if (gc !== undefined) {
      for (const variant of VARIANTS) {
        memory.set(
          variant.name,
          await memoryPerStream(variant, count, orders),
        );
      }
    }
    for (const variant of VARIANTS) {
      const bytes = memory.get(variant.name);
      console.log(JSON.stringify({
        streams: count,
        variant: variant.name,
        mbPerSecond: Number(best.get(variant.name)!.toFixed(1)),
        bytesPerStream: bytes === undefined ? null : Math.round(bytes),
      }));
    }
    const ratio = (a: string, b: string) => best.get(a)! / best.get(b)!;
    const plain = ratio("BufferEmit", "accumulator");
    const timed = ratio("BufferEmit + maxWait", "accumulator + maxWait");
    const timedPlain = ratio("BufferEmit + maxWait", "accumulator");
    console.log(
      `${count} streams: BufferEmit / accumulator ${
        plain.toFixed(2)
      } × (mark: at least 0.8 ×) ${
        plain >= 0.8 ? "ok" : "UNDER"
      }; per round, median ${median(perRound).toFixed(2)} × (${
        Math.min(...perRound).toFixed(2)
      }–${Math.max(...perRound).toFixed(2)}); with maxWait ${
        timed.toFixed(2)
      } × its twin, ${timedPlain.toFixed(2)} × the plain accumulator`,
    );
    for (const name of ["BufferEmit", "BufferEmit + maxWait"]) {
      const bytes = memory.get(name);
      if (bytes === undefined) continue;
      const buffers = bytes / SIZE;
      console.log(
        `${count} streams: ${name} holds ${
          buffers.toFixed(2)
        } × one chunk buffer per emitter (mark: at most 1.25 ×) ${
          buffers <= 1.25 ? "ok" : "OVER"
        }`,
      );
    }
  }
  if (seen === 0) throw new Error("no chunk reached a callback");
}

if (import.meta.main) {
  await main();
} else {
  // Under `deno bench`: 1 000 streams, each iteration a chunk per stream.
  const count = 1000;
  const orders = [shuffled(count, 7)];
  const group = "1 000 streams";
  for (const variant of VARIANTS) {
    const streams = variant.make(count);
    Deno.bench({
      name: variant.name,
      group,
      baseline: variant.name === "accumulator",
      fn() {
        feed(streams, count, SIZE / FRAME, orders);
      },
    });
  }
}
