// Copyright the @ocycle/core authors. MIT license.
// The fault-schedule harness of Redis mode (issue 15), in the spirit of
// Jepsen: a real redis-server, several `ocycle worker` processes (serial mode,
// one at a time, so that the worker process runs the handler:
// fixtures/redis/schedule_handler.ts) kept at their number by a supervisor as
// an autoscaler would, and one producer process, either the library (a
// BufferEmit in mode "redis", fixtures/redis/schedule_producer.ts) or the
// command line with `-k` (its stdin written here at the schedule's rate).
// A seeded PRNG makes the schedule: the traffic, and faults interleaved with
// it: SIGKILL of a worker, SIGSTOP/SIGCONT of a worker or of the server,
// server restarts that keep their data (AOF, appendfsync always) or lose it,
// slow onDone windows, and sometimes one poison chunk that kills every worker
// that runs it. The checker then asserts what the README promises under the
// default options:
// - every chunk's result reached onDone exactly once, and right (the handler
//   returns the FNV-1a hash of its chunk; the checker recomputes it from the
//   seed), in input order with the command line's `-k`;
// - no chunk failed, but the poison chunk, which fails exactly once (onError,
//   or the command line's error line) and is the only entry of the
//   dead-letter stream (none there if the broker lost its data since);
// - a restart that loses the broker's data is the broker's fault, not the
//   chunks': the producer adds what was lost again, and the checker expects
//   every chunk's result all the same;
// - at the end nothing is pending (XPENDING 0) nor left in the stream, the
//   producer has finished within its deadline, and each worker stops on
//   SIGTERM.
// Its report names the seed and prints the schedule, so that a failure is
// run again with `--seed` (tests/bench/fleet_schedule.ts).

import { deserialize } from "node:v8";
import { RedisClient } from "../src/fleet/_client.ts";
import { deadStream } from "../src/fleet/_scripts.ts";
import { xpending } from "../src/fleet/_streams.ts";
import { decodeTaskEntry } from "../src/wire/_entries.ts";
import { RedisServer } from "./_redis_server.ts";
import {
  chunkBytes,
  fnv1a,
  type ScheduleResult,
} from "./fixtures/redis/schedule_handler.ts";

const IMPORT_MAP = new URL("../.ci/import_map.json", import.meta.url).pathname;
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/redis/", import.meta.url);
const PRODUCER = new URL("schedule_producer.ts", FIXTURES).pathname;
const HANDLER = new URL("schedule_handler.ts", FIXTURES).pathname;
const STREAM = "schedule";
const GROUP = "ocycle";
/** Milliseconds between a worker's exit and its replacement's start. */
const RESPAWN_AFTER = 300;
/** Milliseconds a worker may take to stop after SIGTERM. */
const STOP_WITHIN = 20_000;
const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One fault of a schedule, `at` milliseconds after the traffic began. */
export type Fault =
  | { at: number; kind: "kill-worker"; slot: number }
  | { at: number; kind: "stop-worker"; slot: number; ms: number }
  | { at: number; kind: "stop-server"; ms: number }
  | { at: number; kind: "restart-server"; keep: boolean; down: number }
  | { at: number; kind: "slow-done"; ms: number; busy: number };

/** The kinds of fault a schedule may hold. */
export const FAULT_KINDS = [
  "kill-worker",
  "stop-worker",
  "stop-server",
  "restart-server",
  "slow-done",
] as const;

/** Everything one run does, made from its seed alone. */
export interface Schedule {
  readonly seed: number;
  /** The library (BufferEmit in mode "redis") or the command line with -k. */
  readonly producer: "library" | "cli";
  readonly workers: number;
  /** Whether the server runs with appendonly yes (appendfsync always). */
  readonly aof: boolean;
  readonly chunks: number;
  readonly size: number;
  /** Chunks written per second. */
  readonly rate: number;
  /** The producer's inFlight, when not its default. */
  readonly inFlight: number | undefined;
  /** The index of the poison chunk, if any. */
  readonly poison: number | undefined;
  /** Made with `harsh`: longer outages (server pauses past the 5 s command deadline), more faults and traffic. */
  readonly harsh: boolean;
  readonly faults: readonly Fault[];
}

/** mulberry32: a small PRNG, the same numbers from the same seed everywhere. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The schedule of `seed`: traffic of about `seconds` (5 to 8 by default).
 * `harsh` draws from wider ranges (the same seed makes another schedule):
 * server pauses of up to 9 s, past every command's 5 s deadline but well
 * within the 30 s after which the producer gives up on an unreachable
 * server, worker pauses of up to 12 s, restarts down for up to 4 s, up to 10
 * faults, up to 120 chunks/s, 5 workers and an inFlight of 1000.
 */
export function makeSchedule(
  seed: number,
  { seconds, harsh = false }: { seconds?: number; harsh?: boolean } = {},
): Schedule {
  const rand = prng(seed);
  const between = (a: number, b: number) =>
    a + Math.floor(rand() * (b - a + 1));
  const traffic = (seconds ?? between(5, 8)) * 1000;
  const rate = harsh ? between(40, 120) : between(25, 60);
  const chunks = Math.max(1, Math.round((traffic / 1000) * rate));
  const workers = between(2, harsh ? 5 : 4);
  const producer = rand() < 0.35 ? "cli" : "library";
  const aof = rand() < 0.5;
  const inFlight = rand() < 0.5
    ? undefined
    : harsh
    ? [16, 200, 1000][between(0, 2)]
    : rand() < 0.5
    ? 16
    : 200;
  const poison = rand() < 0.3 ? between(0, chunks - 1) : undefined;
  const weights: [Fault["kind"], number][] = [
    ["kill-worker", 3],
    ["stop-worker", 2],
    ["stop-server", 1],
    ["restart-server", 1.5],
    ["slow-done", producer === "library" ? 1.5 : 0],
  ];
  const total = weights.reduce((a, [, w]) => a + w, 0);
  const faults: Fault[] = [];
  const count = harsh ? between(5, 10) : between(3, 7);
  for (let i = 0; i < count; i++) {
    const at = between(300, traffic + 1000);
    let r = rand() * total;
    const kind = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? "kill-worker";
    const slot = between(0, workers - 1);
    switch (kind) {
      case "kill-worker":
        faults.push({ at, kind, slot });
        break;
      case "stop-worker":
        faults.push({ at, kind, slot, ms: between(300, harsh ? 12000 : 7000) });
        break;
      case "stop-server":
        faults.push({
          at,
          kind,
          ms: harsh ? between(1000, 9000) : between(300, 3000),
        });
        break;
      case "restart-server":
        faults.push({
          at,
          kind,
          keep: aof && rand() < 0.6,
          down: between(100, harsh ? 4000 : 1500),
        });
        break;
      case "slow-done":
        faults.push({
          at,
          kind,
          ms: between(1000, harsh ? 4000 : 3000),
          busy: harsh ? between(10, 40) : between(5, 30),
        });
        break;
    }
  }
  faults.sort((a, b) => a.at - b.at);
  // One server fault at a time, half a second apart.
  let free = 0;
  for (const [i, fault] of faults.entries()) {
    if (fault.kind !== "stop-server" && fault.kind !== "restart-server") {
      continue;
    }
    const at = Math.max(fault.at, free);
    faults[i] = { ...fault, at };
    free = at + (fault.kind === "stop-server" ? fault.ms : fault.down) + 500;
  }
  faults.sort((a, b) => a.at - b.at);
  return {
    seed,
    producer,
    workers,
    aof,
    chunks,
    size: 256,
    rate,
    inFlight,
    poison,
    harsh,
    faults,
  };
}

/** One line per fault. */
export function describeFault(fault: Fault): string {
  const at = `t=${(fault.at / 1000).toFixed(2)}s`;
  switch (fault.kind) {
    case "kill-worker":
      return `${at} SIGKILL worker slot ${fault.slot}`;
    case "stop-worker":
      return `${at} SIGSTOP worker slot ${fault.slot} for ${fault.ms} ms`;
    case "stop-server":
      return `${at} SIGSTOP redis-server for ${fault.ms} ms`;
    case "restart-server":
      return `${at} SIGKILL redis-server, restart after ${fault.down} ms ${
        fault.keep ? "with its data (AOF)" : "EMPTY (data lost)"
      }`;
    case "slow-done":
      return `${at} onDone busy ${fault.busy} ms per result for ${fault.ms} ms`;
  }
}

/** The schedule, as printed on failure. */
export function describeSchedule(s: Schedule): string {
  return [
    `seed ${s.seed}${s.harsh ? " (harsh)" : ""}: ${s.producer} producer${
      s.producer === "cli" ? " (-k)" : ""
    }, ${s.workers} workers, ${s.chunks} chunks of ${s.size} B at ${s.rate}/s, inFlight ${
      s.inFlight ?? "default"
    }, server ${s.aof ? "appendonly yes" : "without AOF"}${
      s.poison === undefined ? "" : `, poison chunk ${s.poison}`
    }`,
    ...s.faults.map((f) => `  ${describeFault(f)}`),
  ].join("\n");
}

/** What a run saw: the producer's outcomes and the broker's end state. */
export interface Observed {
  /** Whether the producer finished (close() returned, or the CLI exited) in time. */
  finished: boolean;
  /** The producer's exit code, or null if it had to be killed. */
  exitCode: number | null;
  /** Each onDone (or CLI output line), in the order they came. */
  done: { index: number; result: ScheduleResult }[];
  /** Each onError (or CLI error line), in the order they came. */
  errors: { index: number; message: string }[];
  /** XLEN of the chunk stream at the end. */
  xlen: number;
  /** XPENDING of the group at the end. */
  pending: number;
  /** The chunk indices of the dead-letter stream's entries at the end. */
  dead: number[];
  /** Whether a restart lost the broker's data during the run. */
  lostData: boolean;
  /** Workers that did not stop within STOP_WITHIN of SIGTERM. */
  stuckWorkers: string[];
}

/** A long error message, cut to its first 200 characters. */
function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

function some(indices: number[]): string {
  const shown = indices.slice(0, 12).join(", ");
  return indices.length > 12 ? `${shown}, ... (${indices.length})` : shown;
}

/** What the schedule's run broke of the fleet's promises; empty if nothing. */
export function check(s: Schedule, seen: Observed): string[] {
  const problems: string[] = [];
  if (!seen.finished) {
    problems.push("the producer did not finish (close() never returned)");
  }
  const expectExit = s.producer === "cli" && s.poison !== undefined ? 1 : 0;
  if (seen.finished && seen.exitCode !== expectExit) {
    problems.push(
      `the producer exited ${seen.exitCode}, not ${expectExit}`,
    );
  }
  const doneOf = new Map<number, ScheduleResult[]>();
  for (const { index, result } of seen.done) {
    doneOf.set(index, [...(doneOf.get(index) ?? []), result]);
  }
  const errorsOf = new Map<number, string[]>();
  for (const { index, message } of seen.errors) {
    errorsOf.set(index, [...(errorsOf.get(index) ?? []), message]);
  }
  const missing: number[] = [], doubled: number[] = [], wrong: string[] = [];
  const failed: string[] = [];
  for (let i = 0; i < s.chunks; i++) {
    const results = doneOf.get(i) ?? [];
    const errors = errorsOf.get(i) ?? [];
    if (i === s.poison) {
      if (results.length > 0) {
        problems.push(`poison chunk ${i} reached onDone ${results.length}×`);
      }
      if (errors.length !== 1) {
        problems.push(
          `poison chunk ${i} reached onError ${errors.length}×, not once`,
        );
      }
      continue;
    }
    if (errors.length > 0) failed.push(`chunk ${i}: ${clip(errors[0]!)}`);
    if (results.length === 0 && errors.length === 0) missing.push(i);
    if (results.length + errors.length > 1) doubled.push(i);
    const want = fnv1a(chunkBytes(s.seed, i, s.size, false));
    for (const r of results) {
      if (r.index !== i || r.hash !== want) {
        wrong.push(`chunk ${i}: ${JSON.stringify(r)}, expected hash ${want}`);
      }
    }
  }
  const beyond = [...doneOf.keys(), ...errorsOf.keys()].filter((i) =>
    i < 0 || i >= s.chunks
  );
  if (beyond.length > 0) {
    problems.push(`outcomes of chunks never written: ${some(beyond)}`);
  }
  if (missing.length > 0) {
    problems.push(
      `${missing.length} chunk(s) never reached onDone nor onError: ${
        some(missing)
      }`,
    );
  }
  if (doubled.length > 0) {
    problems.push(
      `${doubled.length} chunk(s) settled more than once: ${some(doubled)}`,
    );
  }
  if (wrong.length > 0) {
    problems.push(
      `${wrong.length} wrong result(s): ${wrong.slice(0, 5).join("; ")}`,
    );
  }
  if (failed.length > 0) {
    problems.push(
      `${failed.length} chunk(s) that are not poison failed: ${
        failed.slice(0, 3).join("; ")
      }${failed.length > 3 ? "; ..." : ""}`,
    );
  }
  if (s.producer === "cli") {
    const order = seen.done.map((d) => d.index);
    const at = order.findIndex((index, i) => i > 0 && index <= order[i - 1]!);
    if (at !== -1) {
      problems.push(
        `-k wrote chunk ${order[at]} after chunk ${
          order[at - 1]
        } (output line ${at + 1})`,
      );
    }
  }
  if (seen.xlen !== 0) {
    problems.push(`${seen.xlen} entries left in the stream`);
  }
  if (seen.pending !== 0) {
    problems.push(`${seen.pending} entries left pending in the group`);
  }
  const strayDead = seen.dead.filter((i) => i !== s.poison);
  if (strayDead.length > 0) {
    problems.push(
      `chunks that are not poison were dead-lettered: ${some(strayDead)}`,
    );
  }
  if (s.poison !== undefined) {
    const n = seen.dead.filter((i) => i === s.poison).length;
    // A restart without data may have taken the dead letter with it.
    if (n > 1 || (n === 0 && !seen.lostData)) {
      problems.push(
        `poison chunk ${s.poison} is ${n}× in the dead-letter stream, not once`,
      );
    }
  }
  for (const name of seen.stuckWorkers) {
    problems.push(
      `worker ${name} did not stop within ${STOP_WITHIN} ms of SIGTERM`,
    );
  }
  return problems;
}

/** A worker process of a slot. */
interface Worker {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly exited: Promise<Deno.CommandStatus>;
  readonly stderr: Promise<string>;
  gone: boolean;
}

/** The outcome of one schedule's run. */
export interface RunReport {
  readonly schedule: Schedule;
  readonly problems: string[];
  readonly observed: Observed;
  /** What happened when, in the run's own words. */
  readonly events: string[];
  /** The last lines each process wrote on stderr. */
  readonly tails: string[];
  readonly ms: number;
}

/** The report as printed on failure: seed, schedule, problems, events, tails. */
export function describeReport(r: RunReport): string {
  return [
    `fault schedule FAILED (run it again with --seed ${r.schedule.seed}${
      r.schedule.harsh ? " --harsh" : ""
    }):`,
    describeSchedule(r.schedule),
    "what the checker saw:",
    ...r.problems.map((p) => `  - ${p}`),
    "events:",
    ...r.events.map((e) => `  ${e}`),
    "stderr tails:",
    ...r.tails,
  ].join("\n");
}

function tail(text: string, lines = 8): string {
  return text.trimEnd().split("\n").slice(-lines).map((l) => `    ${l}`)
    .join("\n");
}

function denoArgs(script: string, args: string[]): string[] {
  return [
    "run",
    "-A",
    "--no-lock",
    `--import-map=${IMPORT_MAP}`,
    script,
    ...args,
  ];
}

/** Options of {@linkcode runSchedule}. */
export interface RunOptions {
  /** Milliseconds the producer may take past its traffic to finish. @default {60000} */
  drain?: number;
  /** Each event as it happens. */
  log?: (line: string) => void;
}

/**
 * Runs schedule `s` with real processes and checks it. Everything it starts
 * (server, workers, producer, timers) is stopped and awaited before it returns.
 */
export async function runSchedule(
  s: Schedule,
  { drain = 60_000, log }: RunOptions = {},
): Promise<RunReport> {
  const begin = performance.now();
  let t0 = begin;
  const events: string[] = [];
  const note = (line: string) => {
    const text = `t=${((performance.now() - t0) / 1000).toFixed(2)}s ${line}`;
    events.push(text);
    log?.(text);
  };
  const server = await RedisServer.start(
    s.aof ? ["--appendonly", "yes", "--appendfsync", "always"] : [],
  );
  const slots: (Worker | undefined)[] = Array(s.workers).fill(undefined);
  const all: Worker[] = [];
  const respawns = new Set<ReturnType<typeof setTimeout>>();
  let stopping = false;
  let lostData = false;
  let generation = 0;

  const spawn = (slot: number): void => {
    const name = `w${slot}.${generation++}`;
    const child = new Deno.Command(Deno.execPath(), {
      args: denoArgs(CLI, [
        "worker",
        "--redis",
        server.url,
        "--stream",
        STREAM,
        "--module",
        HANDLER,
        "--mode",
        "serial",
        "-j",
        "1",
        "--name",
        name,
      ]),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const worker: Worker = {
      name,
      child,
      gone: false,
      exited: child.status,
      stderr: new Response(child.stderr).text(),
    };
    all.push(worker);
    slots[slot] = worker;
    void worker.exited.then((status) => {
      worker.gone = true;
      if (slots[slot] === worker) slots[slot] = undefined;
      if (stopping) return;
      note(
        `worker ${name} exited (${
          status.signal ?? `code ${status.code}`
        }); a replacement starts`,
      );
      const timer = setTimeout(() => {
        respawns.delete(timer);
        if (!stopping) spawn(slot);
      }, RESPAWN_AFTER);
      respawns.add(timer);
    });
  };

  const signal = (worker: Worker, sig: Deno.Signal) => {
    try {
      worker.child.kill(sig);
    } catch {
      // gone already
    }
  };

  for (let i = 0; i < s.workers; i++) spawn(i);

  // The producer.
  const slow = s.faults.filter((f) => f.kind === "slow-done").map((f) => [
    f.at,
    f.at + f.ms,
    f.busy,
  ]);
  const inFlight = s.inFlight === undefined ? [] : [
    "--in-flight",
    String(s.inFlight),
  ];
  const producerArgs = s.producer === "library"
    ? denoArgs(PRODUCER, [
      "--url",
      server.url,
      "--stream",
      STREAM,
      "--seed",
      String(s.seed),
      "--chunks",
      String(s.chunks),
      "--size",
      String(s.size),
      "--rate",
      String(s.rate),
      `--poison=${s.poison ?? -1}`,
      "--slow",
      JSON.stringify(slow),
      ...inFlight,
    ])
    : denoArgs(CLI, [
      "-s",
      String(s.size),
      "--clip",
      "-k",
      "-q",
      "--redis",
      server.url,
      "--stream",
      STREAM,
      "--module",
      HANDLER,
      ...inFlight,
    ]);
  t0 = performance.now();
  note("traffic begins");
  const producer = new Deno.Command(Deno.execPath(), {
    args: producerArgs,
    stdin: s.producer === "cli" ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const producerOut = new Response(producer.stdout).text();
  const producerErr = new Response(producer.stderr).text();
  let producerGone = false;
  const producerStatus = producer.status.then((status) => {
    producerGone = true;
    return status;
  });
  const feeding = s.producer === "cli"
    ? (async () => {
      const writer = producer.stdin.getWriter();
      try {
        for (let i = 0; i < s.chunks; i++) {
          const wait = t0 + (i * 1000) / s.rate - performance.now();
          if (wait > 0) await sleep(wait);
          await writer.write(chunkBytes(s.seed, i, s.size, i === s.poison));
        }
        await writer.close();
      } catch (error) {
        note(`writing the producer's stdin failed: ${error}`);
        await writer.abort().catch(() => {});
      }
    })()
    : Promise.resolve();

  // The faults, each at its time; a stop's SIGCONT, and the server's faults,
  // are awaited before the end.
  const thaws: Promise<void>[] = [];
  let serverFaults = Promise.resolve();
  let serverError: unknown;
  const serverFault = async (
    fault: Extract<Fault, { kind: "stop-server" | "restart-server" }>,
  ): Promise<void> => {
    switch (fault.kind) {
      case "stop-server":
        note(`SIGSTOP redis-server for ${fault.ms} ms`);
        server.signal("SIGSTOP");
        await sleep(fault.ms);
        note("SIGCONT redis-server");
        server.signal("SIGCONT");
        break;
      case "restart-server":
        note(
          `SIGKILL redis-server (${fault.keep ? "AOF kept" : "data lost"})`,
        );
        await server.stop("SIGKILL");
        if (!fault.keep) {
          lostData = true;
          for (const file of ["appendonlydir", "dump.rdb"]) {
            await Deno.remove(`${server.dir}/${file}`, { recursive: true })
              .catch(() => {});
          }
        }
        await sleep(fault.down);
        await server.restart();
        note("redis-server answers again");
        break;
    }
  };
  const timeline = (async () => {
    for (const fault of s.faults) {
      const wait = t0 + fault.at - performance.now();
      if (wait > 0) await sleep(wait);
      if (producerGone) {
        note(`skipped (the producer has finished): ${describeFault(fault)}`);
        continue;
      }
      switch (fault.kind) {
        case "kill-worker":
        case "stop-worker": {
          const worker = slots[fault.slot];
          if (worker === undefined || worker.gone) {
            note(`skipped (slot ${fault.slot} is restarting): ${fault.kind}`);
            break;
          }
          if (fault.kind === "kill-worker") {
            note(`SIGKILL worker ${worker.name}`);
            signal(worker, "SIGKILL");
            break;
          }
          note(`SIGSTOP worker ${worker.name} for ${fault.ms} ms`);
          signal(worker, "SIGSTOP");
          thaws.push(
            sleep(fault.ms).then(() => {
              if (worker.gone) return;
              note(`SIGCONT worker ${worker.name}`);
              signal(worker, "SIGCONT");
            }),
          );
          break;
        }
        case "stop-server":
        case "restart-server":
          // In the background, one after the other: the workers' faults
          // meanwhile come at their times.
          serverFaults = serverFaults.then(() => serverFault(fault)).catch(
            (error) => void (serverError ??= error),
          );
          break;
        case "slow-done":
          note(`onDone slow (${fault.busy} ms each) for ${fault.ms} ms`);
          break;
      }
    }
    await Promise.all(thaws);
    await serverFaults;
    if (serverError !== undefined) throw serverError;
  })();

  // The producer's deadline: its traffic, then `drain`.
  const traffic = (s.chunks * 1000) / s.rate;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  const finished = await Promise.race([
    producerStatus.then(() => true),
    new Promise<false>((resolve) => {
      deadline = setTimeout(() => resolve(false), traffic + drain);
    }),
  ]);
  clearTimeout(deadline);
  if (!finished) {
    note(
      `the producer has not finished ${drain} ms after its traffic: SIGKILL`,
    );
    try {
      producer.kill("SIGKILL");
    } catch {
      // gone
    }
  }
  const status = await producerStatus;
  await feeding;
  await timeline;
  note(`the producer exited (${status.signal ?? `code ${status.code}`})`);
  const out = await producerOut, err = await producerErr;

  // The producer's outcomes.
  const done: Observed["done"] = [];
  const errors: Observed["errors"] = [];
  if (s.producer === "library") {
    for (const line of out.split("\n")) {
      if (line === "") continue;
      const entry = JSON.parse(line);
      if ("done" in entry) {
        done.push({ index: entry.done, result: entry.result });
      } else if ("error" in entry) {
        errors.push({ index: entry.error, message: entry.message });
      }
    }
  } else {
    for (const line of out.split("\n")) {
      if (line === "") continue;
      const result = JSON.parse(line) as ScheduleResult;
      done.push({ index: result.index, result });
    }
    for (const line of err.split("\n")) {
      const match = /^ocycle: Chunk (\d+) \(offset/.exec(line);
      if (match) errors.push({ index: Number(match[1]), message: line });
    }
  }

  // The workers stop on SIGTERM, then the broker's end state.
  stopping = true;
  for (const timer of respawns) clearTimeout(timer);
  const stuckWorkers: string[] = [];
  await Promise.all(slots.map(async (worker) => {
    if (worker === undefined || worker.gone) return;
    signal(worker, "SIGCONT");
    signal(worker, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([
      worker.exited.then(() => true),
      new Promise<false>((r) =>
        timer = setTimeout(() => r(false), STOP_WITHIN)
      ),
    ]);
    clearTimeout(timer);
    if (!stopped) {
      stuckWorkers.push(worker.name);
      signal(worker, "SIGKILL");
    }
  }));
  await Promise.all(all.map((w) => w.exited));
  note("every worker has stopped");
  const end = await endState(server.url);
  const tails = [
    `  producer (${s.producer}):\n${tail(err)}`,
    ...(await Promise.all(all.map(async (w) => {
      const text = await w.stderr;
      return text.trim() === "" ? "" : `  worker ${w.name}:\n${tail(text, 4)}`;
    }))).filter((t) => t !== ""),
  ];
  await server[Symbol.asyncDispose]();

  const observed: Observed = {
    finished,
    exitCode: finished ? status.code : null,
    done,
    errors,
    ...end,
    lostData,
    stuckWorkers,
  };
  return {
    schedule: s,
    problems: check(s, observed),
    observed,
    events,
    tails,
    ms: Math.round(performance.now() - begin),
  };
}

/** XLEN, XPENDING and the dead letters' chunk indices, from a connection of its own. */
async function endState(
  url: string,
): Promise<{ xlen: number; pending: number; dead: number[] }> {
  const admin = await RedisClient.connect(url, {
    connectTimeout: 2000,
    maxDelay: 100,
  });
  try {
    const xlen = await admin.command("XLEN", STREAM) as number;
    let pending = 0;
    try {
      pending = (await xpending(admin, STREAM, GROUP)).count;
    } catch (error) {
      // No group (the broker lost its data and nobody read since): nothing pending.
      if (!String(error).includes("NOGROUP")) throw error;
    }
    const rows = await admin.command(
      "XRANGE",
      deadStream(STREAM),
      "-",
      "+",
    ) as [Uint8Array, Uint8Array[]][];
    const dead = rows.map(([, raw]) => {
      const fields = new Map<string, Uint8Array>();
      for (let i = 0; i + 1 < raw.length; i += 2) {
        fields.set(decoder.decode(raw[i]), raw[i + 1]!);
      }
      try {
        return decodeTaskEntry(fields, deserialize).info.index;
      } catch {
        return -1;
      }
    });
    return { xlen, pending, dead };
  } finally {
    await admin.close();
  }
}

/**
 * Short tags for what went wrong in a run, for the long run's summary: the
 * kind of each failed chunk's error (its message with the numbers taken
 * out), and each other broken promise.
 */
export function classify(r: RunReport): string[] {
  const tags = new Set<string>();
  const o = r.observed;
  for (const { index, message } of o.errors) {
    if (index === r.schedule.poison) continue;
    const why = message.replace(/^ocycle: /, "").replace(
      /^Chunk \d+ \([^)]*\) failed in redis mode: /,
      "",
    );
    let tag = why
      .replace(/redis:\/\/[^\s:]+:\d+/g, "URL")
      .replace(/\(worker [^)]*\)/g, "")
      .replace(/\d+-\d+/g, "ID")
      .replace(/\d+/g, "N")
      .slice(0, 90)
      .trim();
    if (tag.includes("left the stream")) {
      tag += o.lostData
        ? " [data-losing restart in schedule]"
        : " [NO data lost]";
    }
    tags.add(`failed: ${tag}`);
  }
  for (const p of r.problems) {
    if (p.includes("that are not poison failed")) continue;
    tags.add(p.replace(/: [\d, .()]+$/, "").replace(/\d+/g, "N"));
  }
  return [...tags];
}
