// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper
/**
 * The callback module of `thread_mode.ts`: the level of a window of 16-bit
 * samples, in dBFS. Thread mode imports this module once per Worker, so its
 * top-level code is per-Worker set-up: here, a name for the Worker.
 *
 * @module
 */

import type { ChunkInfo } from "@ocycle/core";

/** Set up once per Worker. */
const worker = crypto.randomUUID().slice(0, 8);

/** The level of one window. */
export interface Level {
  /** The window's index. */
  index: number;
  /** Root mean square, in dB relative to full scale. */
  rmsDbfs: number;
  /** Peak, in dB relative to full scale. */
  peakDbfs: number;
  /** Which Worker measured it. */
  worker: string;
}

/** Measures a window of Int16 samples. */
export default function level(
  samples: Int16Array,
  _t0: number,
  info: ChunkInfo,
): Level {
  let sum = 0, peak = 0;
  for (const s of samples) {
    sum += s * s;
    peak = Math.max(peak, Math.abs(s));
  }
  const db = (x: number) => x > 0 ? 20 * Math.log10(x / 32768) : -Infinity;
  return {
    index: info.index,
    rmsDbfs: db(Math.sqrt(sum / samples.length)),
    peakDbfs: db(peak),
    worker,
  };
}
