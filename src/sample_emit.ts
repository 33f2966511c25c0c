// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode SampleEmit}: typed, interleaved samples in, chunks of whole frames out.
 *
 * @module
 */

import {
  type CallbackSource,
  Emitter,
  type EmitterOptions,
  type SampleFormatOptions,
  type SampleInput,
  type TypedArray,
} from "./emitter.ts";

/** Options of {@linkcode SampleEmit}. */
export interface SampleEmitOptions<T extends TypedArray, R = unknown>
  extends EmitterOptions<R>, SampleFormatOptions<T> {}

/**
 * Collects typed samples (any TypedArray, `channels` interleaved) and emits
 * chunks of that typed array. `size` and `hop` count frames (one sample per
 * channel), `clip` never splits a frame, and every write must be of the
 * emitter's type and hold whole frames. The analogue of ocycle's NumpyEmit.
 *
 * @typeParam T The typed array type.
 * @typeParam R The callback's result, passed to `onDone`.
 *
 * @example Stereo 16-bit audio in 4-frame windows that overlap by half
 * ```ts
 * import { SampleEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const windows: number[][] = [];
 * const emitter = new SampleEmit((chunk) => {
 *   windows.push([...chunk]);
 * }, 4, { type: Int16Array, channels: 2, clip: true, hop: 2 });
 * emitter.write(Int16Array.from([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]));
 * await emitter.close({ flush: false });
 * assertEquals(windows, [
 *   [0, 0, 1, 1, 2, 2, 3, 3],
 *   [2, 2, 3, 3, 4, 4, 5, 5],
 * ]);
 * ```
 */
export class SampleEmit<T extends TypedArray = Float32Array, R = unknown>
  extends Emitter<SampleInput<T>, T, R> {
  /**
   * Creates an emitter of chunks of `size` frames of `options.type` samples
   * (`Float32Array` by default), `options.channels` interleaved.
   *
   * @param callback Called with each chunk, or the URL of its module.
   * @param size The chunk size in frames.
   * @param options The emitter's options, with the sample `type` and `channels`.
   * @throws {RangeError} If `size`, `channels` or another number is out of range.
   * @throws {TypeError} If `type` is not a typed array constructor, or another option has the wrong type.
   */
  constructor(
    callback: CallbackSource<T, R>,
    size: number,
    options: SampleEmitOptions<T, R> = {},
  ) {
    super(
      "samples",
      "SampleEmit",
      callback,
      size,
      options as SampleEmitOptions<TypedArray, R>,
    );
  }
}
