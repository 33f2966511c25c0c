// Copyright the @ocycle/core authors. MIT license.
/**
 * Redis mode end to end (issue 11): chunks/s and MB/s of the whole path, a
 * `BufferEmit` in mode "redis" written chunk-sized frames as fast as its
 * backpressure allows, through a redis-server to N worker processes (`deno
 * run` of _fleet_worker.ts: runWorker with a trivial callback, the chunk's
 * length, in a local pool of mode `--mode`: serial by default, the
 * fastest of the three here with thread mode), and the results back to
 * `onDone`; from the first write to the last `onDone`. Beside
 * each figure, the limit of redis_limit.ts (its `limitLoop`, the pipelined
 * raw XADD, XREADGROUP, XACK loop of our client) for the same chunk size,
 * measured in the same run, in rounds interleaved with the fleet's, and the
 * ratio of the two. Issue 11's mark: at least 0.5 with 2 workers.
 *
 * Each case is sized to last about `--seconds` (from a warm-up run that also
 * warms the JIT of every process), best of `--rounds`. The script starts its
 * own redis-server on a free loopback port and stops it; each worker set
 * gets a stream of its own. Prints one JSON line per round, then a table.
 *
 * ```sh
 * deno run -A --import-map=.ci/import_map.json tests/bench/redis_fleet.ts \
 *   [--rounds 3] [--seconds 3] [--workers 1,2,4] [--mode serial|thread|process] \
 *   [--in-flight 64] [--pool N] [--chunks 65536,320000]
 * ```
 *
 * @module
 */

import { parseArgs } from "@std/cli";
import { BufferEmit } from "../../mod.ts";
import { RedisClient } from "../../src/fleet/_client.ts";
import { RedisServer } from "../_redis_server.ts";
import { type Figures, figures, limitLoop } from "./redis_limit.ts";

interface Args {
  rounds: string;
  seconds: string;
  workers: string;
  mode: string;
  pool: string;
  "in-flight": string;
  chunks: string;
}
// the offline copy of @std/cli has no types
const parse = parseArgs as (
  args: string[],
  options: object,
) => Partial<Args>;
const args = parse(Deno.args, {
  string: [
    "rounds",
    "seconds",
    "workers",
    "mode",
    "pool",
    "in-flight",
    "chunks",
  ],
});
const rounds = Number(args.rounds ?? 3);
const seconds = Number(args.seconds ?? 3);
const workerCounts = (args.workers ?? "1,2,4").split(",").map(Number);
// serial: with its read-ahead, level with thread mode at 1 and 2 workers
// and ahead at 4 on two cores (fewer threads); process mode adds a pipe
// and a child per worker
const mode = args.mode ?? "serial";
const inFlight = args["in-flight"] === undefined
  ? undefined
  : Number(args["in-flight"]);
for (
  const [name, value] of [
    ["rounds", rounds],
    ["in-flight", inFlight],
    ...workerCounts.map((n) => ["workers", n] as const),
  ] as const
) {
  if (value !== undefined && (!(value >= 1) || !Number.isInteger(value))) {
    throw new RangeError(`--${name} must be a positive integer: ${value}`);
  }
}
if (!(seconds > 0)) throw new RangeError(`--seconds must be > 0: ${seconds}`);
if (!["serial", "thread", "process"].includes(mode)) {
  throw new TypeError(`--mode must be serial, thread or process: ${mode}`);
}

const HANDLER = new URL("./_fleet_handler.ts", import.meta.url);
const WORKER = new URL("./_fleet_worker.ts", import.meta.url);
const IMPORT_MAP = new URL("../../.ci/import_map.json", import.meta.url);

/** Worker processes on one stream, stopped (SIGTERM) and awaited by dispose. */
async function startWorkers(
  url: string,
  stream: string,
  n: number,
): Promise<AsyncDisposable> {
  const children = Array.from({ length: n }, () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--import-map=${IMPORT_MAP.href}`,
        WORKER.href,
        "--url",
        url,
        "--stream",
        stream,
        "--mode",
        mode,
        ...(args.pool === undefined ? [] : ["--pool", args.pool]),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = new Response(child.stderr).text();
    return { child, log };
  });
  const stop = async () => {
    for (const { child } of children) {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone already
      }
    }
    for (const { child, log } of children) {
      const status = await child.status;
      if (!status.success) console.error(await log);
    }
  };
  // Ready once each blocks in XREADGROUP (Redis 7.0 makes a blocked reader
  // a consumer of the group only once it is served, so XINFO cannot tell).
  const admin = await RedisClient.connect(url);
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const list = new TextDecoder().decode(
        await admin.command("CLIENT", "LIST") as Uint8Array,
      );
      const reading = list.split("\n").filter((line) =>
        line.includes("cmd=xreadgroup")
      ).length;
      if (reading >= n) break;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`${reading} of ${n} workers started`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await admin.close();
  }
  return { [Symbol.asyncDispose]: stop };
}

/** One run of the whole path: `n` chunks of `payload.length` bytes. */
async function fleetRun(
  url: string,
  stream: string,
  payload: Uint8Array,
  n: number,
): Promise<Figures> {
  let done = 0;
  let end = 0;
  let error: unknown;
  const emitter = new BufferEmit(HANDLER, payload.length, {
    mode: "redis",
    clip: true,
    redis: { url, stream, ...(inFlight === undefined ? {} : { inFlight }) },
    onDone: (length) => {
      if (length !== payload.length) error ??= new Error(`got ${length}`);
      if (++done === n) end = performance.now();
    },
    onError: (e) => void (error ??= e),
  });
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    if (!emitter.write(payload)) await emitter.ready;
  }
  await emitter.close();
  if (error !== undefined) throw error;
  if (done !== n) throw new Error(`${done} of ${n} chunks done`);
  return figures(n, payload.length, end - start);
}

/** How many entries last about `seconds` at the rate of a warm-up run. */
function sized(warm: Figures): number {
  return Math.max(200, Math.round(warm.entriesPerSec * seconds));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const payloads = [
  { name: "64 KiB", size: 65536 },
  { name: "320 KB", size: 320_000 },
].filter(({ size }) =>
  args.chunks === undefined || args.chunks.split(",").map(Number).includes(size)
);

interface Row {
  workers: number;
  payload: string;
  fleet: Figures;
  limit: Figures;
  ratios: number[];
}

const server = await RedisServer.start();
const rows: Row[] = [];
let streams = 0;
try {
  for (const workers of workerCounts) {
    const stream = `chunks${streams++}`;
    await using _ = await startWorkers(server.url, stream, workers);
    for (const { name, size } of payloads) {
      const payload = new Uint8Array(size);
      for (let at = 0; at < size; at += 65536) {
        crypto.getRandomValues(payload.subarray(at, at + 65536));
      }
      // warm-ups: JIT of every process, sockets, the server's allocator
      const fleetN = sized(await fleetRun(server.url, stream, payload, 400));
      const limitN = sized(
        await limitLoop(server.url, `limit${streams++}`, payload, 400),
      );
      let fleet: Figures | undefined;
      let limit: Figures | undefined;
      const ratios: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const l = await limitLoop(
          server.url,
          `limit${streams++}`,
          payload,
          limitN,
        );
        const f = await fleetRun(server.url, stream, payload, fleetN);
        const ratio = f.entriesPerSec / l.entriesPerSec;
        ratios.push(ratio);
        console.log(JSON.stringify({
          workers,
          payload: size,
          mode,
          round,
          fleet: { count: fleetN, ...f },
          limit: { count: limitN, ...l },
          ratio: Math.round(ratio * 100) / 100,
        }));
        if (fleet === undefined || f.entriesPerSec > fleet.entriesPerSec) {
          fleet = f;
        }
        if (limit === undefined || l.entriesPerSec > limit.entriesPerSec) {
          limit = l;
        }
      }
      rows.push({
        workers,
        payload: name,
        fleet: fleet!,
        limit: limit!,
        ratios,
      });
    }
  }
} finally {
  await server[Symbol.asyncDispose]();
}

const r2 = (x: number) => (Math.round(x * 100) / 100).toFixed(2);
console.log(
  `\nbest of ${rounds}, about ${seconds} s each; workers: \`deno run\` processes, runWorker in ${mode} mode${
    args.pool === undefined ? "" : `, pool ${args.pool}`
  }; inFlight ${inFlight ?? "64 (default)"}:`,
);
console.log(
  "| workers | chunk | chunks/s | MB/s | limit chunks/s | limit MB/s | ratio (best/best) | ratio per round, median (range) |",
);
console.log(
  "| ------: | ----- | -------: | ---: | -------------: | ---------: | ----: | ----- |",
);
for (const { workers, payload, fleet, limit, ratios } of rows) {
  console.log(
    `| ${workers} | ${payload} | ${fleet.entriesPerSec} | ${fleet.MBps} | ${limit.entriesPerSec} | ${limit.MBps} | ${
      r2(fleet.entriesPerSec / limit.entriesPerSec)
    } | ${r2(median(ratios))} (${r2(Math.min(...ratios))}–${
      r2(Math.max(...ratios))
    }) |`,
  );
}
console.log(
  "\nIssue 11's mark: at least 0.50 of the limit with 2 workers.",
);
