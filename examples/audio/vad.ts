// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (the demo's model callback, loaded by the emitter)
//
// The model of the audio demo, a callback module: Silero VAD v5, a trained
// voice-activity network, run by ONNX Runtime's WebAssembly build on each
// 2 s chunk of 16 kHz mono Int16 samples. The demo runs it in thread mode (a
// pool of Web Workers) with a 50% duty cycle.
//
// The network takes 512 samples at a time (32 ms) with the 64 before them as
// context, and carries a [2, 1, 128] state from one window to the next: a
// 2 s chunk is 62 runs. Each chunk starts from a fresh state, since with the
// duty cycle the chunks a Worker gets are not contiguous.
//
// Loading this module creates the session and warms it up with dummy runs:
// V8 compiles the WebAssembly quickly first and well later, once it is hot,
// and without the warm-up the first chunks take several times longer.

import { ort, ortWasm, restoreLocation, sileroVad } from "./vad_files.ts";

/** Samples per window the network takes. */
export const WINDOW = 512;
/** Samples of context before each window. */
const CONTEXT = 64;
/** The rate the network expects. */
const RATE = 16000;
/** A window is speech when its probability is above this. */
export const SPEECH_PROBABILITY = 0.5;
/** A chunk holds speech when at least this share of its windows is speech. */
export const SPEECH_SHARE = 0.2;
/** Speech runs closer than this many windows are one run. */
const BRIDGE_WINDOWS = 4;
/** The fewest 2 s batches of the warm-up at load (62 runs each). */
const WARMUP_BATCHES = 8;
/** The longest the warm-up at load may take, in milliseconds. */
const WARMUP_MS = 15_000;

/** What the model returns for each chunk. */
export interface VadResult {
  /** Windows of 512 samples (32 ms) in the chunk. */
  windows: number;
  /** The mean speech probability of the windows, 0 to 1. */
  mean: number;
  /** The share of windows with a speech probability above 0.5. */
  speechShare: number;
  /** Whether the chunk holds speech: at least a fifth of its windows. */
  speech: boolean;
  /**
   * Where speech was heard, in samples from the chunk's start, `[start, end)`;
   * runs of speech windows less than 128 ms apart are joined.
   */
  runs: [number, number][];
  /** Milliseconds the network took on this chunk. */
  ms: number;
  /**
   * How this Worker loaded the network: milliseconds to create the session
   * and to warm it up, the dummy runs, and the first and last warm-up
   * batches' milliseconds (2 s of audio each).
   */
  load: {
    sessionMs: number;
    warmupMs: number;
    warmupRuns: number;
    firstMs: number;
    lastMs: number;
  };
}

// One thread per Worker (the pool gives the parallelism), and the .wasm from
// the imported bytes, so that ONNX Runtime neither fetches nor reads a file.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmBinary = ortWasm;

let started = performance.now();
const session = await ort.InferenceSession.create(sileroVad);
const sessionMs = performance.now() - started;
const sampleRate = new ort.Tensor("int64", BigInt64Array.of(BigInt(RATE)), []);

/** Speech probabilities of each full window of `samples`, in order. */
async function probabilities(samples: Float32Array): Promise<Float32Array> {
  const count = Math.floor(samples.length / WINDOW);
  const out = new Float32Array(count);
  let state = new ort.Tensor("float32", new Float32Array(2 * 128), [2, 1, 128]);
  const input = new Float32Array(CONTEXT + WINDOW);
  for (let w = 0; w < count; w++) {
    // The last CONTEXT samples of the previous window, then this window.
    input.copyWithin(0, WINDOW);
    input.set(samples.subarray(w * WINDOW, (w + 1) * WINDOW), CONTEXT);
    const result = await session.run({
      input: new ort.Tensor("float32", input.slice(), [1, CONTEXT + WINDOW]),
      state,
      sr: sampleRate,
    });
    state = result.stateN as typeof state;
    out[w] = (result.output!.data as Float32Array)[0]!;
  }
  return out;
}

started = performance.now();
const warmup = await warmUp();
restoreLocation();
const load = {
  sessionMs,
  warmupMs: performance.now() - started,
  warmupRuns: warmup.runs,
  firstMs: warmup.batchesMs[0] ?? NaN,
  lastMs: warmup.batchesMs.at(-1) ?? NaN,
};

/**
 * Runs 2 s of quiet noise through the network until V8 has tiered the
 * WebAssembly up: cold, a 2 s batch takes 5 to 10 times longer than warm,
 * and the optimizing compiler runs in the background, so on a busy machine
 * it takes longer in wall time. At least WARMUP_BATCHES batches, then until
 * the best is under a quarter of the first and the last three bring no new
 * best (none under 90% of the best before them), or for at most WARMUP_MS.
 */
async function warmUp(): Promise<{ runs: number; batchesMs: number[] }> {
  const noise = Float32Array.from(
    { length: WINDOW * 62 },
    (_, i) => 0.01 * Math.sin(i * 1.7) * Math.sin(i * 0.013),
  );
  const batchesMs: number[] = [];
  const begun = performance.now();
  const settled = () => {
    if (batchesMs.length < WARMUP_BATCHES) return false;
    const before = Math.min(...batchesMs.slice(0, -3));
    const best = Math.min(before, ...batchesMs.slice(-3));
    return Math.min(...batchesMs.slice(-3)) >= 0.9 * before &&
      best <= batchesMs[0]! / 4;
  };
  while (!settled() && performance.now() - begun < WARMUP_MS) {
    const t = performance.now();
    await probabilities(noise);
    batchesMs.push(performance.now() - t);
  }
  return { runs: batchesMs.length * 62, batchesMs };
}

/** Runs of speech windows, joined across short gaps, in samples. */
function speechRuns(speech: boolean[]): [number, number][] {
  const runs: [number, number][] = [];
  for (let w = 0; w < speech.length; w++) {
    if (!speech[w]) continue;
    const last = runs.at(-1);
    if (last !== undefined && w * WINDOW - last[1] < BRIDGE_WINDOWS * WINDOW) {
      last[1] = (w + 1) * WINDOW;
    } else runs.push([w * WINDOW, (w + 1) * WINDOW]);
  }
  return runs;
}

/** The chunk before this one: one runs at a time (see vad()). */
let previous: Promise<unknown> = Promise.resolve();

/**
 * Runs the network over one chunk. A Worker may hold several chunks at once
 * (the emitter's `concurrency`); they take turns, so that `ms` is this
 * chunk's own time, not that of chunks interleaved with it on one thread.
 */
export default function vad(chunk: Int16Array): Promise<VadResult> {
  const turn = previous.then(() => run(chunk));
  previous = turn.catch(() => {});
  return turn;
}

async function run(chunk: Int16Array): Promise<VadResult> {
  const started = performance.now();
  const samples = Float32Array.from(chunk, (s) => s / 32768);
  const p = await probabilities(samples);
  const ms = performance.now() - started;
  const speech = Array.from(p, (v) => v > SPEECH_PROBABILITY);
  const windows = p.length;
  const speechShare = windows === 0
    ? 0
    : speech.filter(Boolean).length / windows;
  return {
    windows,
    mean: windows === 0 ? 0 : p.reduce((a, b) => a + b, 0) / windows,
    speechShare,
    speech: speechShare >= SPEECH_SHARE,
    runs: speechRuns(speech),
    ms,
    load,
  };
}
