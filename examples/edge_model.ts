// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (the edge ingest's model, run by fleet workers)
/**
 * The "model" of `edge_ingest.ts`, the module its fleet workers are started
 * with (`ocycle worker --module examples/edge_model.ts`): 2 s of 16 kHz mono
 * 16-bit audio in, energy and zero-crossing statistics out, and a guess at
 * whether it holds voice. It stands for a real model too heavy for the edge
 * box; it imports nothing, so a worker's sandboxed child can load it with
 * only the permission to read this file.
 *
 * It may run more than once for a chunk (a worker that dies mid-chunk has its
 * chunks run again elsewhere), so it has no side effects; one that had would
 * key them by `info.offset`, the chunk's place in the stream it came by.
 *
 * The ingest sends every upload through one stream (one producer per
 * process), so `info` here is that stream's: `index` and `at` say where the
 * chunk is in it, and the ingest replaces them with the upload's own.
 *
 * @module
 */

/** The part of a chunk's `ChunkInfo` the model uses. */
interface Where {
  /** The chunk's index in the stream it came by. */
  index: number;
  /** Its first sample's position in that stream. */
  offset: number;
}

/** What the model says about 2 s of audio. */
export interface ModelResult {
  /** The chunk's index in its upload (the ingest sets it). */
  index: number;
  /** Where the chunk starts in the upload, in seconds (the ingest sets it). */
  at: number;
  /** Its length, in seconds. */
  seconds: number;
  /** Root mean square level, in dB relative to full scale. */
  rmsDbfs: number;
  /** Zero crossings per second. */
  zeroCrossings: number;
  /** Share of its 20 ms frames louder than -40 dBFS. */
  active: number;
  /** Loud enough, often enough, with a crossing rate in the range of voice. */
  voice: boolean;
}

const RATE = 16000;
const FRAME = 320; // 20 ms

const dbfs = (x: number) =>
  x > 0 ? Math.round(200 * Math.log10(x / 32768)) / 10 : -Infinity;

/** Energy and zero-crossing statistics of one chunk of samples. */
export default function model(
  samples: Int16Array,
  _t0: number,
  info: Where,
): ModelResult {
  let sum = 0, crossings = 0, loudFrames = 0, frames = 0;
  for (let start = 0; start < samples.length; start += FRAME) {
    const end = Math.min(start + FRAME, samples.length);
    let frameSum = 0;
    for (let i = start; i < end; i++) {
      const s = samples[i]!;
      frameSum += s * s;
      if (i > 0 && (s >= 0) !== (samples[i - 1]! >= 0)) crossings++;
    }
    sum += frameSum;
    frames++;
    if (dbfs(Math.sqrt(frameSum / (end - start))) > -40) loudFrames++;
  }
  const seconds = samples.length / RATE;
  const zeroCrossings = seconds > 0 ? Math.round(crossings / seconds) : 0;
  const active = frames > 0 ? Math.round((100 * loudFrames) / frames) / 100 : 0;
  return {
    index: info.index,
    at: info.offset / RATE,
    seconds,
    rmsDbfs: dbfs(Math.sqrt(sum / Math.max(1, samples.length))),
    zeroCrossings,
    active,
    voice: active > 0.3 && zeroCrossings > 100 && zeroCrossings < 5000,
  };
}
