// Copyright the @ocycle/core authors. MIT license.
/**
 * Process mode beside its peers, in one run: the raw pipe limit (`cat | cat`,
 * as /work/shared/bench/peers.sh measures it), the Python original in process
 * mode (when its source is at $OCYCLE_PY_SRC or /tmp/ocycle-py), and
 * BufferEmit with `mode: "process"` and a pool of 2. Prints one JSON line per
 * figure, then the ratios against the marks of issue 4, and the start-up time
 * of a pool of 2.
 *
 * Run: deno run -A --import-map=.ci/import_map.json tests/bench/compare_process.ts [rounds]
 *
 * @module
 */

import { BufferEmit } from "@ocycle/core";

const task = new URL("./process_task.ts", import.meta.url);
const peers = new URL("../../../shared/bench/", import.meta.url);

async function ours(
  chunk: number,
  count: number,
  exportName: string,
): Promise<{ chunksPerSec: number; MBps: number }> {
  let done = 0;
  const emitter = new BufferEmit(task, chunk, {
    mode: "process",
    pool: 2,
    clip: true,
    exportName,
    onDone: () => done++,
  });
  const frame = new Uint8Array(chunk).fill(1);
  // Warm the pool up first, so that start-up is not counted as throughput.
  emitter.write(frame);
  emitter.write(frame);
  while (done < 2) await new Promise((r) => setTimeout(r, 1));
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    if (!emitter.write(frame)) await emitter.ready;
  }
  await emitter.close();
  const seconds = (performance.now() - start) / 1000;
  if (done !== count + 2) throw new Error(`only ${done} of ${count + 2} done`);
  return {
    chunksPerSec: Math.round(count / seconds),
    MBps: Math.round(count * chunk / seconds / 1e6 * 10) / 10,
  };
}

async function startup(): Promise<number> {
  let done = 0;
  const start = performance.now();
  const emitter = new BufferEmit(task, 1, {
    mode: "process",
    pool: 2,
    concurrency: 1,
    exportName: "trivial",
    onDone: () => done++,
  });
  // Two chunks: one for each child, as the pool sends to the least busy.
  emitter.write(new Uint8Array(1));
  emitter.write(new Uint8Array(1));
  while (done < 2) await new Promise((r) => setTimeout(r, 1));
  const ms = performance.now() - start;
  await emitter.close();
  return ms;
}

async function pipeLimit(): Promise<number> {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeFile(file, new Uint8Array(268_435_456));
    // Timed inside the shell, exactly as peers.sh times it.
    const { code, stdout } = await new Deno.Command("bash", {
      args: [
        "-c",
        `t0=$(date +%s.%N); cat "$0" | cat > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l`,
        file,
      ],
    }).output();
    if (code !== 0) throw new Error("cat | cat failed");
    return 268.435456 / Number(new TextDecoder().decode(stdout).trim());
  } finally {
    await Deno.remove(file);
  }
}

async function python(
  chunk: number,
  count: number,
  spinMs: number,
): Promise<{ chunksPerSec: number; MBps: number } | undefined> {
  const source = Deno.env.get("OCYCLE_PY_SRC") ??
    ((await exists("/tmp/ocycle-py/ocycle")) ? "/tmp/ocycle-py" : undefined);
  if (source === undefined) return undefined;
  const { code, stdout, stderr } = await new Deno.Command("python3", {
    args: [
      new URL("py_ocycle_pool.py", peers).pathname,
      source,
      "process",
      String(chunk),
      String(count),
      "2",
      String(spinMs),
    ],
  }).output();
  if (code !== 0) throw new Error(new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function print(impl: string, figures: object): void {
  console.log(JSON.stringify({ impl, ...figures }));
}

// The machine is shared and has 2 cores: every figure is the best of
// `rounds` runs, ours and the peers' interleaved, so that a burst of load
// elsewhere does not decide a ratio.
const rounds = Number(Deno.args[0] ?? 3);
let pipe = 0;
for (let i = 0; i < rounds; i++) pipe = Math.max(pipe, await pipeLimit());
print("limit-pipe", { MBps: Math.round(pipe), rounds });
const runs = [
  { name: "1 MiB chunks", chunk: 1 << 20, count: 500, spin: 0, fn: "trivial" },
  {
    name: "64 KiB trivial",
    chunk: 1 << 16,
    count: 5000,
    spin: 0,
    fn: "trivial",
  },
  { name: "64 KiB 1 ms", chunk: 1 << 16, count: 2000, spin: 1, fn: "spin" },
];
type Figures = { chunksPerSec: number; MBps: number };
const best = (a: Figures | undefined, b: Figures | undefined) =>
  a === undefined || (b !== undefined && b.chunksPerSec > a.chunksPerSec)
    ? b
    : a;
const results = [];
for (const run of runs) {
  let py: Figures | undefined, mine: Figures | undefined;
  for (let i = 0; i < rounds; i++) {
    py = best(py, await python(run.chunk, run.count, run.spin));
    mine = best(mine, await ours(run.chunk, run.count, run.fn));
  }
  if (py !== undefined) {
    print(`python-ocycle-process ${run.name}`, {
      chunksPerSec: py.chunksPerSec,
      MBps: py.MBps,
    });
  }
  print(`ocycle-core-process ${run.name}`, mine!);
  results.push({ run, py, mine: mine! });
}
let startMs = Infinity;
for (let i = 0; i < rounds; i++) startMs = Math.min(startMs, await startup());
print("ocycle-core-process start-up of a pool of 2", {
  ms: Math.round(startMs),
});

console.log(`\nratios, best of ${rounds} (mark in brackets):`);
const [bulk, trivial, spin] = results;
console.log(
  `  1 MiB chunks / raw pipe: ${(bulk!.mine.MBps / pipe).toFixed(2)} [>= 0.5]`,
);
for (const [r, mark] of [[bulk, 0], [trivial, 3], [spin, 2]] as const) {
  if (r!.py === undefined) {
    console.log(`  ${r!.run.name} / Python: no Python source, not measured`);
  } else {
    const ratio = r!.mine.chunksPerSec / r!.py.chunksPerSec;
    console.log(
      `  ${r!.run.name} / Python: ${ratio.toFixed(2)}${
        mark ? ` [>= ${mark}]` : ""
      }`,
    );
  }
}
console.log(
  `  start-up of a pool of 2 (both children ready, one chunk each): ${
    Math.round(startMs)
  } ms`,
);
