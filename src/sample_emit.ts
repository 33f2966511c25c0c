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
  type EmitterStats,
  type SampleFormatOptions,
  type SampleInput,
  type TypedArray,
  type TypedArrayConstructor,
} from "./emitter.ts";
import type { CloseOptions } from "./emitter_options.ts";
import { describeValue } from "./core/_kinds.ts";
import { SampleBytes } from "./core/_sample_bytes.ts";
import { WALL_T0 } from "./fanout.ts";

/** Options of {@linkcode SampleEmit}. */
export interface SampleEmitOptions<T extends TypedArray, R = unknown>
  extends EmitterOptions<R>, SampleFormatOptions<T> {}

/** {@linkcode SampleEmit}'s counts: the emitter's, and the bytes of split frames. */
export interface SampleEmitStats extends EmitterStats {
  /** Bytes of a frame split between byte writes, held for the next write. */
  readonly heldBytes: number;
  /**
   * Bytes of a split frame dropped because the emitter was closed or aborted
   * before the rest of the frame came (a stream that ended inside a frame).
   */
  readonly droppedBytes: number;
}

/**
 * Collects typed samples (any TypedArray, `channels` interleaved) and emits
 * chunks of that typed array. `size` and `hop` count frames (one sample per
 * channel), and `clip` never splits a frame. A write is either of the
 * emitter's type, holding whole frames, or a `Uint8Array` of the samples' raw
 * little-endian bytes, as read from stdin, a file or a socket: a sample or a
 * frame split between two such writes is carried to the next one
 * (`stats.heldBytes`), and one still split at `close()` or `abort()` is
 * dropped and counted in `stats.droppedBytes`. The analogue of ocycle's
 * NumpyEmit.
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
 *
 * @example Raw 16-bit little-endian bytes, split inside a sample
 * ```ts
 * import { SampleEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const chunks: number[][] = [];
 * const emitter = new SampleEmit((chunk) => {
 *   chunks.push([...chunk]);
 * }, 2, { type: Int16Array, clip: true });
 * const bytes = new Uint8Array(Int16Array.from([1, -2, 300]).buffer);
 * emitter.write(bytes.subarray(0, 3)); // one sample and a half
 * emitter.write(bytes.subarray(3));
 * await emitter.close();
 * assertEquals(chunks, [[1, -2], [300]]);
 * assertEquals(emitter.stats.droppedBytes, 0);
 * ```
 */
export class SampleEmit<T extends TypedArray = Float32Array, R = unknown>
  extends Emitter<SampleInput<T> | Uint8Array, T, R> {
  /** Bytes to samples; undefined for Uint8Array samples, which are their bytes. */
  readonly #bytes: SampleBytes<T> | undefined;
  #droppedBytes = 0;

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
    // Checked by the engine above.
    const type = (options.type ?? Float32Array) as TypedArrayConstructor<T>;
    this.#bytes = (type as unknown) === Uint8Array
      ? undefined
      : new SampleBytes(type, options.channels ?? 1);
  }

  /**
   * Writes samples, or their raw little-endian bytes, as
   * {@linkcode Emitter.write} does.
   *
   * @param data Samples of the emitter's type, whole frames; or a
   * `Uint8Array` of their bytes, of any length.
   * @param t0 The frame's timestamp in milliseconds since the epoch.
   * @returns Whether the caller may keep writing without waiting.
   * @throws {TypeError} If `data` is neither, or is samples while the bytes
   * of a split frame wait for the rest of it, or the emitter is closed.
   * @throws {RangeError} As {@linkcode Emitter.write} does.
   */
  override write(data: SampleInput<T> | Uint8Array, t0?: number): boolean {
    const bytes = this.#raw(data);
    if (bytes === undefined) return super.write(data, t0);
    const { frames, rest } = bytes.read(data as Uint8Array);
    const more = super.write(frames as SampleInput<T>, t0);
    bytes.keep(rest);
    return more;
  }

  /** @ignore */
  override [WALL_T0](data: SampleInput<T> | Uint8Array, t0: number): boolean {
    const bytes = this.#raw(data);
    if (bytes === undefined) return super[WALL_T0](data, t0);
    const { frames, rest } = bytes.read(data as Uint8Array);
    const more = super[WALL_T0](frames as SampleInput<T>, t0);
    bytes.keep(rest);
    return more;
  }

  /**
   * Closes the emitter, as {@linkcode Emitter.close} does; the bytes of a
   * frame still split are dropped and counted in `stats.droppedBytes`.
   *
   * @param options Whether to flush the tail.
   * @returns A promise that settles once everything is done.
   */
  override close(options?: CloseOptions): Promise<void> {
    this.#droppedBytes += this.#bytes?.drop() ?? 0;
    return super.close(options);
  }

  /**
   * Stops now, as {@linkcode Emitter.abort} does; the bytes of a frame still
   * split are dropped and counted in `stats.droppedBytes`.
   *
   * @param reason Why; later calls reject with it.
   * @returns A promise that resolves once every Worker and child is gone.
   */
  override abort(reason?: unknown): Promise<void> {
    this.#droppedBytes += this.#bytes?.drop() ?? 0;
    return super.abort(reason);
  }

  /** Live counts, as {@linkcode Emitter.stats}, and the bytes of split frames. */
  override get stats(): SampleEmitStats {
    return {
      ...super.stats,
      heldBytes: this.#bytes?.held ?? 0,
      droppedBytes: this.#droppedBytes,
    };
  }

  /** The byte reader for a write of raw bytes; undefined for a write of samples. */
  #raw(data: unknown): SampleBytes<T> | undefined {
    const bytes = this.#bytes;
    if (bytes === undefined) return undefined;
    if (data instanceof Uint8Array) {
      if ((data.buffer as ArrayBuffer).detached === true) {
        throw new TypeError(
          `Cannot write to SampleEmit as 'data' must not be a view of a detached ArrayBuffer (one that was transferred): received ${
            describeValue(data)
          } over a detached buffer`,
        );
      }
      return bytes;
    }
    if (bytes.held > 0 && ArrayBuffer.isView(data)) {
      throw new TypeError(
        `Cannot write to SampleEmit as 'data' is ${
          describeValue(data)
        } while ${bytes.held} bytes of a frame split by an earlier write of bytes wait for the rest of it (${bytes.frameBytes} bytes a frame): write the rest as bytes first`,
      );
    }
    return undefined;
  }
}
