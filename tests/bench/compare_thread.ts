// Copyright the @ocycle/core authors. MIT license.
/**
 * Thread-mode comparison, in one run: BufferEmit in thread mode (borrowed and
 * owned chunks, `concurrency` 4 and the default 8) against the hand-written Deno Worker pool and piscina from
 * shared/bench, dispatching 64 KiB chunks to a pool of 2 Workers with a
 * trivial callback and with one that burns 1 ms of CPU. Every variant runs in
 * its own fresh process, the variants interleaved, `--reps` times. Two
 * figures: the best rep of each (the least disturbed on a shared machine),
 * and the median over reps of each rep's ratio to the peers' same rep. Prints
 * one JSON line per measurement, then a table of chunks/s and the ratios
 * ours / piscina and ours / hand-written, then the latency from the `write()`
 * that completes a chunk to the start of its callback (p50, p99), under load
 * (the throughput run) and paced (one chunk at a time).
 *
 * Usage (from the repository root; needs node and npm for piscina, which is
 * installed into the same temporary directory shared/bench/peers.sh uses):
 *
 * ```sh
 * deno run -A --import-map=.ci/import_map.json tests/bench/compare_thread.ts [--reps 3]
 * ```
 *
 * @module
 */

import { BufferEmit } from "../../mod.ts";

const CHUNK = 65536;
const POOL = 2;
const TASK = new URL("./thread_task.ts", import.meta.url);
/** Ours: borrowed or owned chunks, and chunks per Worker (8 is the default). */
const VARIANTS = [["borrow", 4], ["owned", 4], ["borrow", 8], [
  "owned",
  8,
]] as const;

/** One run of ours: chunks per second and latencies in milliseconds. */
export interface OursResult {
  chunksPerSec: number;
  /** From the write() that completed a chunk to the start of its callback. */
  latencies: number[];
}

/**
 * Writes `count` 64 KiB frames into a thread-mode BufferEmit (size 65536,
 * clip: each write emits one chunk) and waits for every callback. With
 * `paced`, waits for each chunk's result before writing the next.
 */
export async function runOurs(
  exportName: "trivial" | "spin",
  count: number,
  borrow: boolean,
  options: { concurrency?: number; maxPending?: number; paced?: boolean } = {},
): Promise<OursResult> {
  const { concurrency = 8, maxPending = 16, paced = false } = options;
  const writeTimes = new Float64Array(count + 200);
  const latencies: number[] = [];
  let done = 0;
  let target = 0;
  let wake: () => void = () => {};
  let offset = 0;
  const emitter = new BufferEmit<number>(TASK, CHUNK, {
    mode: "thread",
    pool: POOL,
    clip: true,
    borrow,
    concurrency,
    maxPending,
    exportName,
    onDone: (start, info) => {
      if (info.index >= offset) latencies.push(start - writeTimes[info.index]!);
      if (++done === target) wake();
    },
  });
  const frame = new Uint8Array(CHUNK).fill(1);
  let index = 0;
  const round = async (n: number) => {
    target = done + n;
    const idle = new Promise<void>((resolve) => wake = resolve);
    for (let i = 0; i < n; i++) {
      if (paced) {
        const next = new Promise<void>((resolve) => wake = resolve);
        target = done + 1;
        writeTimes[index++] = performance.timeOrigin + performance.now();
        emitter.write(frame);
        await next;
      } else {
        writeTimes[index++] = performance.timeOrigin + performance.now();
        if (!emitter.write(frame)) await emitter.ready;
      }
    }
    if (!paced) await idle;
  };
  // Warm up as the peers do: start the Workers, compile the hot paths.
  await round(200);
  offset = index;
  const t = performance.now();
  await round(count);
  const dt = performance.now() - t;
  await emitter.close();
  return { chunksPerSec: Math.round(count / dt * 1e3), latencies };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function sh(
  cmd: string[],
  env?: Record<string, string>,
): Promise<string> {
  const out = await new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "inherit",
    ...(env ? { env } : {}),
  }).output();
  if (!out.success) throw new Error(`${cmd.join(" ")} failed: ${out.code}`);
  return new TextDecoder().decode(out.stdout);
}

function lastJson(text: string): Record<string, unknown> {
  const line = text.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (line === undefined) throw new Error(`no JSON in: ${text}`);
  return JSON.parse(line);
}

async function main(): Promise<void> {
  const args = Deno.args;
  if (args[0] === "--one") {
    // A single variant in this fresh process:
    // --one trivial|spin borrow|owned COUNT CONCURRENCY [paced]
    const [, name, ownership, count, concurrency, paced] = args;
    const result = await runOurs(
      name as "trivial" | "spin",
      Number(count),
      ownership === "borrow",
      { paced: paced === "paced", concurrency: Number(concurrency) },
    );
    const sorted = result.latencies.sort((a, b) => a - b);
    console.log(JSON.stringify({
      impl: `ocycle-thread-${ownership}-c${concurrency}${
        paced === "paced" ? "-paced" : ""
      }`,
      chunk: CHUNK,
      threads: POOL,
      spinMs: name === "spin" ? 1 : 0,
      chunksPerSec: result.chunksPerSec,
      latencyP50Ms: +percentile(sorted, 0.5).toFixed(3),
      latencyP99Ms: +percentile(sorted, 0.99).toFixed(3),
    }));
    return;
  }
  const repsAt = args.indexOf("--reps");
  const reps = repsAt === -1 ? 3 : Number(args[repsAt + 1]);
  const shared = Deno.env.get("OCYCLE_SHARED_BENCH") ??
    new URL("../../../shared/bench/", import.meta.url).pathname;
  const peers = `${await Deno.makeTempFile().then((f) => {
    Deno.removeSync(f);
    return f.slice(0, f.lastIndexOf("/"));
  })}/ocycle-peers`;
  let piscina = true;
  try {
    Deno.statSync(`${peers}/node_modules/piscina`);
  } catch {
    try {
      Deno.mkdirSync(peers, { recursive: true });
      await sh([
        "sh",
        "-c",
        `cd '${peers}' && npm init -y >/dev/null && npm install piscina@5 >/dev/null`,
      ]);
    } catch (error) {
      console.error(`piscina could not be installed: ${error}`);
      piscina = false;
    }
  }
  const self = new URL(import.meta.url).pathname;
  const importMap = new URL("../../.ci/import_map.json", import.meta.url)
    .pathname;
  const ours = (args: string[]) =>
    sh([
      Deno.execPath(),
      "run",
      "-A",
      `--import-map=${importMap}`,
      self,
      "--one",
      ...args,
    ]);
  const best = new Map<string, Record<string, unknown>>();
  /** Every rep's chunks/s, to pair each rep of ours with the peers' same rep. */
  const all = new Map<string, number[]>();
  const keep = (key: string, result: Record<string, unknown>) => {
    console.log(JSON.stringify(result));
    all.set(key, [...all.get(key) ?? [], result.chunksPerSec as number]);
    const old = best.get(key);
    if (
      old === undefined ||
      (result.chunksPerSec as number) > (old.chunksPerSec as number)
    ) best.set(key, result);
  };
  for (let rep = 0; rep < reps; rep++) {
    for (const [name, count] of [["trivial", 20000], ["spin", 4000]] as const) {
      const spin = name === "spin" ? "1" : "0";
      for (const [ownership, concurrency] of VARIANTS) {
        keep(
          `${name} ${ownership} c${concurrency}`,
          lastJson(
            await ours([name, ownership, String(count), String(concurrency)]),
          ),
        );
      }
      keep(
        `${name} handwritten`,
        lastJson(
          await sh([
            Deno.execPath(),
            "run",
            "-A",
            `${shared}/deno_worker_bench.ts`,
            String(CHUNK),
            String(count),
            String(POOL),
            spin,
          ]),
        ),
      );
      if (piscina) {
        keep(
          `${name} piscina`,
          lastJson(
            await sh(
              [
                "node",
                `${shared}/piscina_bench.mjs`,
                String(CHUNK),
                String(count),
                String(POOL),
                spin,
              ],
              { ...Deno.env.toObject(), NODE_PATH: `${peers}/node_modules` },
            ),
          ),
        );
      }
    }
  }
  // Latency without queueing: one chunk at a time.
  const paced = new Map<string, Record<string, unknown>>();
  for (const name of ["trivial", "spin"]) {
    for (const [ownership, concurrency] of VARIANTS) {
      const result = lastJson(
        await ours([name, ownership, "2000", String(concurrency), "paced"]),
      );
      console.log(JSON.stringify(result));
      paced.set(`${name} ${ownership} c${concurrency}`, result);
    }
  }

  const rate = (key: string) => best.get(key)?.chunksPerSec as number;
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[sorted.length >> 1]!;
  };
  /**
   * The median over reps of ours / peer, each rep against the same rep of
   * the peer, and the lowest and highest of those ratios.
   */
  const paired = (ours: string, peer: string) => {
    const a = all.get(ours), b = all.get(peer);
    if (a === undefined || b === undefined) return "-";
    const ratios = a.map((v, i) => v / b[i]!);
    return `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${
      Math.max(...ratios).toFixed(2)
    })`;
  };
  console.log(
    `\nBest of ${reps}, chunks/s, 64 KiB chunks, pool of ${POOL} (ratios above 1: ours is faster):`,
  );
  console.log(
    "callback  variant              ours  hand-written  piscina  ours/hand  ours/piscina  paired ours/hand (range)  paired ours/piscina (range)",
  );
  for (const name of ["trivial", "spin"]) {
    const hand = rate(`${name} handwritten`);
    const pis = rate(`${name} piscina`);
    for (const [ownership, concurrency] of VARIANTS) {
      const value = rate(`${name} ${ownership} c${concurrency}`);
      console.log(
        [
          (name === "spin" ? "1 ms" : name).padEnd(8),
          `${ownership}, concurrency ${concurrency}`.padEnd(19),
          String(value).padStart(6),
          String(hand).padStart(12),
          String(pis ?? "-").padStart(7),
          (value / hand).toFixed(2).padStart(9),
          (pis ? (value / pis).toFixed(2) : "-").padStart(12),
          paired(`${name} ${ownership} c${concurrency}`, `${name} handwritten`)
            .padStart(24),
          paired(`${name} ${ownership} c${concurrency}`, `${name} piscina`)
            .padStart(27),
        ].join("  "),
      );
    }
  }
  console.log(
    "\nLatency from the write() that completes a chunk to the start of its callback, ms:",
  );
  for (const name of ["trivial", "spin"]) {
    for (const [ownership, concurrency] of VARIANTS) {
      const key = `${name} ${ownership} c${concurrency}`;
      const loaded = best.get(key)!;
      const quiet = paced.get(key)!;
      console.log(
        `${(name === "spin" ? "1 ms" : name).padEnd(8)} ${
          `${ownership}, concurrency ${concurrency}`.padEnd(21)
        } at full rate p50 ${loaded.latencyP50Ms} p99 ${loaded.latencyP99Ms}; one chunk at a time p50 ${quiet.latencyP50Ms} p99 ${quiet.latencyP99Ms}`,
      );
    }
  }
}

if (import.meta.main) await main();
