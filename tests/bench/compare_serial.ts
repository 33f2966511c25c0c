// Copyright the @ocycle/core authors. MIT license.
/**
 * Serial-mode comparison on the shared workloads, in one process: the memcpy
 * limit, the naive concat-per-write a user would hand-write, and BufferEmit
 * with borrowed and with owned chunks. Each variant first runs once to check
 * that it emits the same chunks as the limit (count, bytes and a hash of
 * every chunk). Then three rounds, each a warm-up rep and a measured rep of
 * every variant in turn; the best of the three measured reps counts. Prints one JSON line per figure and a
 * table of ratios to the memcpy limit of the same run.
 *
 * Usage (from the repository root):
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc tests/bench/compare_serial.ts \
 *   [--python /tmp/ocycle-py] [--reps 3] [--fresh] [audio odd bulk]
 * ```
 *
 * By default each BufferEmit variant writes every rep to one long-lived
 * emitter (the steady state of a stream feeding one emitter); `--fresh`
 * makes a new emitter per rep and closes it, timing construction and close
 * too. Beware that with `--fresh` and a full GC between reps, V8 may throw
 * away the write path's optimized code when the previous emitter dies.
 *
 * `--python DIR` also runs the Python original (shared/bench/py_ocycle_serial.py
 * with the beasteers/ocycle checkout DIR) on each workload. `--expose-gc` is
 * optional: with it, a full GC runs before each timed rep.
 *
 * The workloads and frames come from shared/bench (workloads.json and
 * frames.ts) when that directory is found (`OCYCLE_SHARED_BENCH`, or
 * `../../../shared/bench/` from this file); otherwise from the copy below,
 * which generates the same frames with the same xorshift.
 *
 * This module also exports the pieces `serial_bench.ts` runs.
 *
 * @module
 */

import { BufferEmit } from "../../mod.ts";

/** One shared workload, as in shared/bench/workloads.json. */
export interface Workload {
  frame?: number;
  frameMin?: number;
  frameMax?: number;
  size: number;
  clip: boolean;
  totalBytes: number;
  seed?: number;
}

/** The shared workloads, used when shared/bench is not found. */
const LOCAL_WORKLOADS: Record<string, Workload> = {
  audio: { frame: 320, size: 32000, clip: true, totalBytes: 64000000 },
  bulk: { frame: 65536, size: 1048576, clip: true, totalBytes: 536870912 },
  odd: {
    frameMin: 1,
    frameMax: 4096,
    size: 10000,
    clip: true,
    totalBytes: 64000000,
    seed: 7,
  },
};

/** The frames of a workload, as shared/bench/frames.ts makes them. */
function localFrames(wl: Workload): Uint8Array[] {
  const pool = new Uint8Array(70000).map((_, i) => i & 255);
  const out: Uint8Array[] = [];
  let x = wl.seed ?? 1, total = 0;
  while (total < wl.totalBytes) {
    let n: number;
    if (wl.frame) n = wl.frame;
    else {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      n = wl.frameMin! + x % (wl.frameMax! - wl.frameMin! + 1);
    }
    out.push(pool.subarray(0, n));
    total += n;
  }
  return out;
}

/** Where the workloads and frames came from. */
export interface Source {
  /** "shared" (shared/bench/frames.ts) or "local" (the copy in this file). */
  readonly from: "shared" | "local";
  /** The directory of shared/bench, when found. */
  readonly dir: URL | undefined;
  readonly workloads: Record<string, Workload>;
  readonly frames: (wl: Workload) => Uint8Array[];
}

function sharedDir(): URL {
  let env: string | undefined;
  try {
    env = Deno.env.get("OCYCLE_SHARED_BENCH");
  } catch {
    env = undefined;
  }
  if (env) return new URL(env.endsWith("/") ? env : env + "/", "file:///");
  return new URL("../../../shared/bench/", import.meta.url);
}

/** Loads shared/bench/frames.ts if it resolves, else the local copy. */
export async function loadSource(): Promise<Source> {
  const dir = sharedDir();
  try {
    // A computed specifier, so that type checking does not need the file.
    const spec = new URL("frames.ts", dir).href;
    const mod = await import(spec) as {
      workloads: Record<string, Workload>;
      frames: (wl: Workload) => Uint8Array[];
    };
    return {
      from: "shared",
      dir,
      workloads: mod.workloads,
      frames: mod.frames,
    };
  } catch {
    return {
      from: "local",
      dir: undefined,
      workloads: LOCAL_WORKLOADS,
      frames: localFrames,
    };
  }
}

/** What a run emitted: chunk count, bytes, and a cheap order-sensitive checksum. */
export interface Tally {
  chunks: number;
  bytes: number;
  sink: number;
}

/** The cheap per-chunk read every variant does: first and last byte, and length. */
function mix(sink: number, c: Uint8Array): number {
  return (Math.imul(sink, 31) + (c[0]! ^ c[c.length - 1]! ^ c.length)) | 0;
}

/**
 * When set, every variant appends the full hash of each chunk it emits
 * (validation runs only). A module-level array rather than a callback
 * parameter: optimized code may embed a closure it calls weakly, and once
 * that closure is gone a full GC throws the code away, so the timed runs
 * that follow would start cold.
 */
let hashes: number[] | undefined;

/**
 * The memcpy limit of shared/bench/js_serial_baselines.ts: copy every frame
 * into one chunk-sized slot, emitting exact chunks.
 */
export function limitMemcpy(fs: readonly Uint8Array[], size: number): Tally {
  const slot = new Uint8Array(size);
  let fill = 0, chunks = 0, bytes = 0, sink = 0;
  for (const f of fs) {
    if (f.length <= size - fill) { // fast path: the whole frame fits
      slot.set(f, fill);
      fill += f.length;
      if (fill === size) {
        chunks++;
        bytes += fill;
        sink = mix(sink, slot);
        if (hashes !== undefined) hashes.push(hashChunk(slot));
        fill = 0;
      }
      continue;
    }
    let off = 0;
    while (off < f.length) {
      const n = Math.min(size - fill, f.length - off);
      slot.set(f.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === size) {
        chunks++;
        bytes += fill;
        sink = mix(sink, slot);
        if (hashes !== undefined) hashes.push(hashChunk(slot));
        fill = 0;
      }
    }
  }
  return { chunks, bytes, sink };
}

/** The naive concat-per-write of shared/bench/js_serial_baselines.ts. */
export function naiveConcat(fs: readonly Uint8Array[], size: number): Tally {
  let buf = new Uint8Array(0);
  let chunks = 0, bytes = 0, sink = 0;
  for (const f of fs) {
    const m = new Uint8Array(buf.length + f.length);
    m.set(buf);
    m.set(f, buf.length);
    buf = m;
    while (buf.length >= size) {
      const c = buf.slice(0, size);
      chunks++;
      bytes += c.length;
      sink = mix(sink, c);
      if (hashes !== undefined) hashes.push(hashChunk(c));
      buf = buf.slice(size);
    }
  }
  return { chunks, bytes, sink };
}

/**
 * What the BufferEmit callback adds to. The callback is one module-level
 * function rather than a closure per run: optimized code may embed a
 * monomorphic call target weakly, and once the closure dies with its
 * emitter a full GC throws that code away, so every run would start cold.
 */
const emitted: Tally = { chunks: 0, bytes: 0, sink: 0 };

/** The callback every BufferEmit here gets: it reads each chunk. */
export function readChunk(c: Uint8Array): void {
  emitted.chunks++;
  emitted.bytes += c.length;
  emitted.sink = mix(emitted.sink, c);
  if (hashes !== undefined) hashes.push(hashChunk(c));
}

/** Resets the callback's tally, and returns what it held. */
export function takeTally(): Tally {
  const t = { ...emitted };
  emitted.chunks = emitted.bytes = emitted.sink = 0;
  return t;
}

/**
 * Writes every frame to a new BufferEmit whose callback reads each chunk,
 * then closes it without flushing the tail (the limit never emits a partial
 * chunk either; the tail is counted as dropped).
 */
export async function bufferEmit(
  fs: readonly Uint8Array[],
  wl: Workload,
  borrow: boolean,
): Promise<Tally> {
  takeTally();
  const buff = new BufferEmit(readChunk, wl.size, { clip: wl.clip, borrow });
  for (let i = 0; i < fs.length; i++) buff.write(fs[i]!);
  await buff.close({ flush: false });
  return takeTally();
}

/**
 * Writes every frame to a long-lived BufferEmit (steady state: no
 * construction, no close). Chunks may straddle two runs when the workload
 * is not a multiple of `size`.
 */
export function writeAll(
  buff: BufferEmit<void>,
  fs: readonly Uint8Array[],
): Tally {
  takeTally();
  for (let i = 0; i < fs.length; i++) buff.write(fs[i]!);
  return takeTally();
}

/** The variants, in the order they run. */
export const VARIANTS = [
  "limit-memcpy",
  "naive-concat",
  "bufferemit-borrow",
  "bufferemit-owned",
] as const;
/** A variant's name. */
export type Variant = typeof VARIANTS[number];

/** Runs one variant once. */
export function runVariant(
  variant: Variant,
  fs: readonly Uint8Array[],
  wl: Workload,
): Tally | Promise<Tally> {
  switch (variant) {
    case "limit-memcpy":
      return limitMemcpy(fs, wl.size);
    case "naive-concat":
      return naiveConcat(fs, wl.size);
    case "bufferemit-borrow":
      return bufferEmit(fs, wl, true);
    case "bufferemit-owned":
      return bufferEmit(fs, wl, false);
  }
}

/** FNV-1a over every byte: the validation hash of one chunk. */
function hashChunk(c: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < c.length; i++) h = Math.imul(h ^ c[i]!, 16777619);
  return h;
}

/** Runs a variant once with a full hash of every chunk. */
async function chunkHashes(
  variant: Variant,
  fs: readonly Uint8Array[],
  wl: Workload,
): Promise<number[]> {
  hashes = [];
  try {
    await runVariant(variant, fs, wl);
    return hashes;
  } finally {
    hashes = undefined;
  }
}

interface Figure {
  impl: string;
  workload: string;
  MBps: number;
  writesPerSec: number;
  chunks: number;
  chunkBytes: number;
  ms: number;
  ratio?: number;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function main(): Promise<void> {
  const args = [...Deno.args];
  let python: string | undefined;
  let reps = 3;
  let fresh = false;
  const names: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--python") python = args[++i];
    else if (a.startsWith("--python=")) python = a.slice(9);
    else if (a === "--fresh") fresh = true;
    else if (a === "--reps") reps = Number(args[++i]);
    else if (a.startsWith("--reps=")) reps = Number(a.slice(7));
    else names.push(a);
  }
  if (!(Number.isInteger(reps) && reps > 0)) {
    throw new RangeError(`--reps must be a positive integer: received ${reps}`);
  }
  const source = await loadSource();
  const workloads = names.length > 0 ? names : ["audio", "odd", "bulk"];
  console.log(
    `# frames from ${source.from}${
      source.dir ? ` (${source.dir.pathname})` : ""
    }; deno ${Deno.version.deno}, v8 ${Deno.version.v8}; best of ${reps}; ${
      fresh ? "a new emitter per rep" : "one long-lived emitter per variant"
    }; gc between reps: ${
      typeof (globalThis as { gc?: unknown }).gc === "function"
    }`,
  );
  const all: Figure[] = [];
  const pythonFigures: Record<string, number> = {};
  // The limit as shared/bench/js_serial_baselines.ts itself measures it (its
  // second rep, in its own process), run beside ours: the figure the issue's
  // marks were set from. Ours above is the same algorithm, fully warmed.
  const sharedLimit: Record<string, number> = {};
  for (const name of workloads) {
    const wl = source.workloads[name];
    if (wl === undefined) throw new Error(`no workload named ${name}`);
    const fs = source.frames(wl);
    if (source.from === "shared") {
      // Check that the local copy would make the same frames.
      const mine = localFrames(wl);
      if (
        mine.length !== fs.length ||
        mine.some((f, i) => f.length !== fs[i]!.length)
      ) {
        throw new Error(`local frames differ from shared frames on ${name}`);
      }
    }
    const total = fs.reduce((a, f) => a + f.length, 0);

    // Validation: every variant emits the limit's chunks, byte for byte.
    const expected = await chunkHashes("limit-memcpy", fs, wl);
    for (const v of VARIANTS.slice(1)) {
      const got = await chunkHashes(v, fs, wl);
      const bad = got.findIndex((h, i) => h !== expected[i]);
      if (got.length !== expected.length || bad !== -1) {
        throw new Error(
          `${v} on ${name}: ${got.length} chunks (limit ${expected.length}), first differing chunk ${bad}`,
        );
      }
    }

    // Steady state (default): one long-lived emitter per variant, as a
    // stream feeding one emitter would have. --fresh: a new emitter per rep.
    const live = fresh ? undefined : {
      "bufferemit-borrow": new BufferEmit(readChunk, wl.size, {
        clip: wl.clip,
        borrow: true,
      }),
      "bufferemit-owned": new BufferEmit(readChunk, wl.size, {
        clip: wl.clip,
      }),
    };
    const whole = total % wl.size === 0;
    const sums = new Map<Variant, Tally>();

    // Each round runs every variant twice, a warm-up rep then a measured
    // rep; rounds interleave the variants so that drift hits them alike.
    const best = new Map<Variant, number>();
    let reference: Tally | undefined;
    for (let rep = 0; rep < 2 * reps; rep++) {
      for (const v of VARIANTS) {
        gc();
        const emitter = live !== undefined && v.startsWith("bufferemit")
          ? live[v as keyof typeof live]
          : undefined;
        const t = performance.now();
        const tally = emitter !== undefined
          ? writeAll(emitter, fs)
          : await runVariant(v, fs, wl);
        const dt = performance.now() - t;
        reference ??= tally;
        const sum = sums.get(v) ?? { chunks: 0, bytes: 0, sink: 0 };
        sum.chunks += tally.chunks;
        sum.bytes += tally.bytes;
        sums.set(v, sum);
        if (
          (emitter === undefined || whole) && (
            tally.chunks !== reference.chunks ||
            tally.bytes !== reference.bytes || tally.sink !== reference.sink
          )
        ) {
          throw new Error(
            `${v} on ${name} emitted ${JSON.stringify(tally)}, the limit ${
              JSON.stringify(reference)
            }`,
          );
        }
        if (rep % 2 === 1) best.set(v, Math.min(best.get(v) ?? Infinity, dt));
      }
    }
    if (live !== undefined) {
      // A chunk may straddle two reps: check the totals over every rep.
      const runs = 2 * reps;
      const chunks = Math.floor(runs * total / wl.size);
      for (const [v, e] of Object.entries(live)) {
        await e.close({ flush: false });
        const sum = sums.get(v as Variant)!;
        if (sum.chunks !== chunks || sum.bytes !== chunks * wl.size) {
          throw new Error(
            `${v} on ${name} emitted ${sum.chunks} chunks over ${runs} runs: expected ${chunks}`,
          );
        }
      }
    }
    const limitMs = best.get("limit-memcpy")!;
    for (const v of VARIANTS) {
      const ms = best.get(v)!;
      const figure: Figure = {
        impl: v,
        workload: name,
        MBps: +(total / ms / 1e3).toFixed(1),
        writesPerSec: Math.round(fs.length / ms * 1e3),
        chunks: reference!.chunks,
        chunkBytes: reference!.bytes,
        ms: +ms.toFixed(2),
        ratio: +(limitMs / ms).toFixed(3),
      };
      all.push(figure);
      console.log(JSON.stringify(figure));
    }

    if (source.dir !== undefined) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("js_serial_baselines.ts", source.dir).pathname,
          name,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      const line = new TextDecoder().decode(out.stdout).split("\n")[0]!;
      if (out.success) {
        const limit = JSON.parse(line) as Figure;
        sharedLimit[name] = limit.MBps;
        console.log(JSON.stringify({ ...limit, impl: "shared-script-limit" }));
      }
    }

    if (python !== undefined && source.dir !== undefined) {
      const script = new URL("py_ocycle_serial.py", source.dir).pathname;
      const out = await new Deno.Command("python3", {
        args: [script, python, name],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      const line = new TextDecoder().decode(out.stdout).trim();
      if (!out.success) throw new Error(`python failed on ${name}: ${line}`);
      console.log(line);
      const py = JSON.parse(line) as Figure;
      if (py.chunks !== reference!.chunks) {
        throw new Error(`python emitted ${py.chunks} chunks on ${name}`);
      }
      pythonFigures[name] = py.MBps;
    } else if (python !== undefined) {
      console.log(`# --python needs shared/bench/py_ocycle_serial.py`);
    }
  }

  // The table.
  const pad = (s: string, n: number) => s.padStart(n);
  console.log();
  console.log(
    [
      "workload".padEnd(9),
      pad("variant", 18),
      pad("MB/s", 9),
      pad("writes/s", 11),
      pad("vs limit", 9),
      pad("mark", 6),
      pad("ok", 4),
      pad("vs shared", 10),
      pad("ok", 4),
      pad("vs python", 10),
    ].join(" "),
  );
  const marks: Partial<Record<Variant, number>> = {
    "bufferemit-borrow": 0.5,
    "bufferemit-owned": 0.25,
  };
  for (const f of all) {
    const mark = marks[f.impl as Variant];
    const py = pythonFigures[f.workload];
    const shared = sharedLimit[f.workload];
    const vsShared = shared === undefined ? undefined : f.MBps / shared;
    console.log(
      [
        f.workload.padEnd(9),
        pad(f.impl, 18),
        pad(f.MBps.toFixed(1), 9),
        pad(String(f.writesPerSec), 11),
        pad(f.ratio!.toFixed(3), 9),
        pad(mark === undefined ? "" : mark.toFixed(2), 6),
        pad(mark === undefined ? "" : f.ratio! >= mark ? "yes" : "NO", 4),
        pad(vsShared === undefined ? "" : vsShared.toFixed(3), 10),
        pad(
          mark === undefined || vsShared === undefined
            ? ""
            : vsShared >= mark
            ? "yes"
            : "NO",
          4,
        ),
        pad(py === undefined ? "" : (f.MBps / py).toFixed(1) + "x", 10),
      ].join(" "),
    );
  }
  for (const [name, mbps] of Object.entries(pythonFigures)) {
    console.log(
      `${name.padEnd(9)} ${pad("python-ocycle", 18)} ${
        pad(mbps.toFixed(1), 9)
      }${
        name === "audio"
          ? `   (mark: BufferEmit audio >= 10x python: borrow ${
            all.find((f) =>
                    f.workload === name && f.impl === "bufferemit-borrow"
                  )!.MBps / mbps >= 10
              ? "yes"
              : "NO"
          }, owned ${
            all.find((f) =>
                    f.workload === name && f.impl === "bufferemit-owned"
                  )!.MBps / mbps >= 10
              ? "yes"
              : "NO"
          })`
          : ""
      }`,
    );
  }
}

if (import.meta.main) await main();
