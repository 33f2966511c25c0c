// Copyright the @ocycle/core authors. MIT license.
// Raw little-endian bytes to whole frames of samples, for SampleEmit: a pipe
// read (stdin, a socket) may end inside a sample or a frame, so the bytes of
// a split frame are carried to the next write rather than left to the caller.

import type { TypedArray, TypedArrayConstructor } from "../wire/_layout.ts";

/** Whether this machine stores numbers little-endian, as the bytes come. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The bytes of a frame split between writes, and what becomes of them. */
export class SampleBytes<T extends TypedArray> {
  readonly #type: TypedArrayConstructor<T>;
  readonly #scalar: number;
  /** Bytes per frame: one sample per channel. */
  readonly frameBytes: number;
  /** The bytes of a split frame, waiting for the rest of it. */
  #carry: Uint8Array = new Uint8Array(0);

  constructor(type: TypedArrayConstructor<T>, channels: number) {
    this.#type = type;
    this.#scalar = type.BYTES_PER_ELEMENT;
    this.frameBytes = this.#scalar * channels;
  }

  /** Bytes of a split frame held for the next write. */
  get held(): number {
    return this.#carry.length;
  }

  /**
   * The whole frames in the held bytes followed by `bytes`, as samples, and
   * what would be held after them; nothing changes until `keep` is called
   * with it, so that a write that throws leaves the carry as it was.
   */
  read(bytes: Uint8Array): { frames: T; rest: Uint8Array } {
    const carry = this.#carry;
    const total = carry.length + bytes.length;
    const whole = total - total % this.frameBytes;
    const type = this.#type;
    let frames: T;
    if (
      carry.length === 0 && LITTLE_ENDIAN &&
      bytes.byteOffset % this.#scalar === 0
    ) {
      // Aligned: a view, which the write path copies from.
      frames = new type(
        bytes.buffer as ArrayBuffer,
        bytes.byteOffset,
        whole / this.#scalar,
      );
    } else {
      frames = new type(whole / this.#scalar);
      const into = new Uint8Array(frames.buffer);
      const head = Math.min(carry.length, whole);
      into.set(carry.subarray(0, head));
      into.set(bytes.subarray(0, whole - head), head);
      if (!LITTLE_ENDIAN) swap(into, this.#scalar);
    }
    const rest = whole >= carry.length
      ? bytes.slice(whole - carry.length)
      : concat(carry.subarray(whole), bytes);
    return { frames, rest };
  }

  /** Holds `rest` (from `read`) for the next write. */
  keep(rest: Uint8Array): void {
    this.#carry = rest;
  }

  /** Drops the held bytes; returns how many there were. */
  drop(): number {
    const n = this.#carry.length;
    this.#carry = new Uint8Array(0);
    return n;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Reverses the bytes of each `size`-byte number: little-endian to this machine's order. */
function swap(bytes: Uint8Array, size: number): void {
  for (let at = 0; at < bytes.length; at += size) {
    bytes.subarray(at, at + size).reverse();
  }
}
