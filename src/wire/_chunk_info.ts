// Copyright the @ocycle/core authors. MIT license.
// The one encoding of a ChunkInfo on every wire: six numbers, in this order.
// A Worker gets them in a plain array (which clones several times faster than
// an object), a child process and a queue as little-endian float64s.

import type { ChunkInfo } from "../chunk_info.ts";

/** How many numbers encode one ChunkInfo. */
export const INFO_NUMBERS = 6;

/** Bytes of a ChunkInfo as float64s. */
export const INFO_BYTES = INFO_NUMBERS * 8;

/** A chunk's reason as a number: its index here. */
const REASONS: readonly ChunkInfo["reason"][] = [
  "size",
  "maxWait",
  "flush",
  "close",
];

/** Anything numbers can be written to by index: an array or a Float64Array. */
type Numbers = { [index: number]: number };

/** Writes `info` as {@linkcode INFO_NUMBERS} numbers into `out` from `at`. */
export function writeInfo(info: ChunkInfo, out: Numbers, at: number): void {
  out[at] = info.index;
  out[at + 1] = info.offset;
  out[at + 2] = info.length;
  out[at + 3] = info.t0;
  out[at + 4] = REASONS.indexOf(info.reason);
  out[at + 5] = info.final ? 1 : 0;
}

/** The numbers of a ChunkInfo that count elements or chunks: whole, from 0. */
const COUNTS = ["index", "offset", "length"] as const;

/**
 * Reads a ChunkInfo written by {@linkcode writeInfo}, refusing numbers no
 * chunk has (an entry in a Redis stream is anyone's to write).
 *
 * @throws {RangeError} If the index, offset or length is not a whole number
 * from 0, `t0` is not finite, the reason is not one of the four or `final`
 * is neither 0 nor 1.
 */
export function readInfo(from: ArrayLike<number>, at: number): ChunkInfo {
  const reason = REASONS[from[at + 4]!];
  if (reason === undefined) {
    throw new RangeError(
      `Cannot read a chunk's info as its reason must be 0 to 3: received ${
        from[at + 4]
      }`,
    );
  }
  for (let i = 0; i < COUNTS.length; i++) {
    const value = from[at + i]!;
    if (!(Number.isSafeInteger(value) && value >= 0)) {
      throw new RangeError(
        `Cannot read a chunk's info as its ${
          COUNTS[i]
        } must be a whole number from 0: received ${value}`,
      );
    }
  }
  const t0 = from[at + 3]!, final = from[at + 5]!;
  if (!Number.isFinite(t0)) {
    throw new RangeError(
      `Cannot read a chunk's info as its t0 must be a finite number: received ${t0}`,
    );
  }
  if (final !== 0 && final !== 1) {
    throw new RangeError(
      `Cannot read a chunk's info as its final must be 0 or 1: received ${final}`,
    );
  }
  return {
    index: from[at]!,
    offset: from[at + 1]!,
    length: from[at + 2]!,
    t0,
    reason,
    final: final === 1,
  };
}

const scratch = new Float64Array(INFO_NUMBERS);
const scratchBytes = new Uint8Array(scratch.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Writes `info` as little-endian float64s into `bytes` from `at`. */
export function writeInfoBytes(
  info: ChunkInfo,
  bytes: Uint8Array,
  at: number,
): void {
  writeInfo(info, scratch, 0);
  if (!littleEndian) swap(scratchBytes);
  bytes.set(scratchBytes, at);
}

/** Reads a ChunkInfo written by {@linkcode writeInfoBytes}. */
export function readInfoBytes(bytes: Uint8Array, at: number): ChunkInfo {
  scratchBytes.set(bytes.subarray(at, at + INFO_BYTES));
  if (!littleEndian) swap(scratchBytes);
  return readInfo(scratch, 0);
}

function swap(bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; at += 8) {
    bytes.subarray(at, at + 8).reverse();
  }
}
