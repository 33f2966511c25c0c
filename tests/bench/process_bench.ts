// Copyright the @ocycle/core authors. MIT license.
// Process-mode benchmarks, pool of 2: MB/s with 1 MiB chunks, chunks/s with
// 64 KiB chunks and a trivial or a 1 ms-of-CPU callback, and the start-up of
// a pool. Each bench starts its own pool and closes it, so start-up is part
// of every figure but the pool's; the one-process comparison with the raw
// pipe limit, the Python original and ratios is compare_process.ts.

import { BufferEmit } from "../../mod.ts";

const task = new URL("./process_task.ts", import.meta.url);

async function run(chunk: number, count: number, exportName: string) {
  let done = 0;
  const emitter = new BufferEmit(task, chunk, {
    mode: "process",
    pool: 2,
    clip: true,
    exportName,
    onDone: () => done++,
  });
  const frame = new Uint8Array(chunk).fill(1);
  for (let i = 0; i < count; i++) {
    if (!emitter.write(frame)) await emitter.ready;
  }
  await emitter.close();
  if (done !== count) throw new Error(`only ${done} of ${count} chunks done`);
}

Deno.bench({
  name: "1 MiB chunks, trivial callback (64 MiB per iteration)",
  group: "process 1 MiB",
  baseline: true,
  n: 5,
  warmup: 1,
  // An async function: Deno.bench awaits only what an AsyncFunction returns.
  fn: async () => await run(1 << 20, 64, "trivial"),
});

Deno.bench({
  name: "64 KiB chunks, trivial callback (2000 per iteration)",
  group: "process 64 KiB",
  baseline: true,
  n: 5,
  warmup: 1,
  // An async function: Deno.bench awaits only what an AsyncFunction returns.
  fn: async () => await run(1 << 16, 2000, "trivial"),
});

Deno.bench({
  name: "64 KiB chunks, 1 ms of CPU each (500 per iteration)",
  group: "process 64 KiB",
  n: 5,
  warmup: 1,
  // An async function: Deno.bench awaits only what an AsyncFunction returns.
  fn: async () => await run(1 << 16, 500, "spin"),
});

Deno.bench({
  name: "start-up and close of a pool of 2, one chunk each",
  group: "process start-up",
  baseline: true,
  n: 10,
  warmup: 2,
  // An async function: Deno.bench awaits only what an AsyncFunction returns.
  fn: async () => await run(1, 2, "trivial"),
});
