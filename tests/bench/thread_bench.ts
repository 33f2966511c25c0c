// Copyright the @ocycle/core authors. MIT license.
// Thread-mode benchmarks: 64 KiB chunks (BufferEmit size 65536, clip, one
// 64 KiB frame per chunk) to a pool of 2 Workers, with a trivial callback and
// with one that burns 1 ms of CPU. One group per callback, the hand-written
// Deno Worker pool (4 chunks in flight per Worker) as the baseline. Each
// iteration starts its pool and warms it up outside the timed part, times a
// batch of chunks, then closes the pool, so every Worker started is ended.
// `deno task bench` runs it; compare_thread.ts adds piscina and latencies.
// (Each fn is an `async` function: Deno awaits only those.)

import { BufferEmit } from "../../mod.ts";

const CHUNK = 65536;
const POOL = 2;
const TASK = new URL("./thread_task.ts", import.meta.url);
const frame = new Uint8Array(CHUNK).fill(1);

/** Runs `count` chunks through the hand-written pool. */
async function handwritten(
  b: Deno.BenchContext,
  count: number,
  spinMs: number,
): Promise<void> {
  const workers = Array.from(
    { length: POOL },
    () =>
      new Worker(new URL("./handwritten_worker.ts", import.meta.url), {
        type: "module",
      }),
  );
  const free: ArrayBuffer[] = [];
  const run = (n: number) =>
    new Promise<void>((resolve) => {
      let sent = 0, done = 0;
      const send = (w: Worker) => {
        if (sent >= n) return;
        const buf = free.pop() ?? new ArrayBuffer(CHUNK);
        new Uint8Array(buf).set(frame);
        sent++;
        w.postMessage({ buf, spinMs }, [buf]);
      };
      for (const w of workers) {
        w.onmessage = (e) => {
          free.push(e.data.buf);
          if (++done === n) resolve();
          else send(w);
        };
        for (let k = 0; k < 4; k++) send(w);
      }
    });
  await run(16);
  b.start();
  await run(count);
  b.end();
  for (const w of workers) w.terminate();
}

/** Runs `count` chunks through a thread-mode BufferEmit. */
async function ours(
  b: Deno.BenchContext,
  count: number,
  exportName: "trivial" | "spin",
  borrow: boolean,
  concurrency: number,
): Promise<void> {
  let done = 0, target = 0;
  let wake = () => {};
  await using emitter = new BufferEmit<number>(TASK, CHUNK, {
    mode: "thread",
    pool: POOL,
    clip: true,
    borrow,
    concurrency,
    exportName,
    onDone: () => {
      if (++done === target) wake();
    },
  });
  const run = async (n: number) => {
    target = done + n;
    const idle = new Promise<void>((resolve) => wake = resolve);
    for (let i = 0; i < n; i++) {
      if (!emitter.write(frame)) await emitter.ready;
    }
    await idle;
  };
  await run(16);
  b.start();
  await run(count);
  b.end();
}

for (
  const [group, exportName, count, spinMs] of [
    ["trivial callback", "trivial", 2000, 0],
    ["1 ms callback", "spin", 200, 1],
  ] as const
) {
  Deno.bench({
    name: `${group}: hand-written Deno Worker pool`,
    group,
    baseline: true,
    n: 10,
    warmup: 1,
    fn: async (b) => await handwritten(b, count, spinMs),
  });
  for (
    const [borrow, concurrency] of [[true, 8], [false, 8], [true, 4]] as const
  ) {
    Deno.bench({
      name: `${group}: BufferEmit thread, ${
        borrow ? "borrowed" : "owned"
      }, concurrency ${concurrency}`,
      group,
      n: 10,
      warmup: 1,
      fn: async (b) => await ours(b, count, exportName, borrow, concurrency),
    });
  }
}
