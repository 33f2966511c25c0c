/**
 * What an emitter knows about one chunk: where it sits in the stream, when its
 * first element arrived, and why it was emitted.
 *
 * @module
 */

/** The execution mode of an emitter's callback. */
export type Mode = "serial" | "thread" | "process" | "redis";

/**
 * Describes one emitted chunk. Handed to the callback, to `onDone` and to
 * `onError`, so that a result or an error can always be tied to its chunk.
 */
export interface ChunkInfo {
  /** The chunk's position in emit order: 0, 1, 2, ... */
  readonly index: number;
  /**
   * The position of the chunk's first element in everything ever written to
   * the emitter, dropped elements included. Counted in the emitter's unit:
   * bytes, sample frames, items or characters.
   */
  readonly offset: number;
  /** The chunk's length, in the same unit as {@linkcode ChunkInfo.offset}. */
  readonly length: number;
  /**
   * The timestamp of the write that supplied the chunk's first element, in
   * milliseconds since the epoch (as `Date.now()`), or the `t0` the caller
   * passed to that write.
   */
  readonly t0: number;
  /** Why the chunk was emitted: it reached `size`, `maxWait` elapsed, `flush()` was called, or the emitter closed. */
  readonly reason: "size" | "maxWait" | "flush" | "close";
  /** `true` only for the tail flushed by `close()`. */
  readonly final: boolean;
}

/**
 * A callback that receives a chunk, the timestamp of its first frame in
 * milliseconds since the epoch, and its {@linkcode ChunkInfo}. It may return a
 * value or a promise; the result goes to `onDone`.
 *
 * @typeParam C The chunk.
 * @typeParam R The result.
 */
export type Callback<C, R> = (
  chunk: C,
  t0: number,
  info: ChunkInfo,
) => R | Promise<R>;

/** Any typed array. */
export type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** The constructor of a typed array type `T`. */
export interface TypedArrayConstructor<T extends TypedArray> {
  /** Makes a zeroed array of `length` elements. */
  new (length: number): T;
  /** Makes a view of a buffer. */
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): T;
  /** Bytes per element. */
  readonly BYTES_PER_ELEMENT: number;
  /** The type's name, such as `"Int16Array"`. */
  readonly name: string;
}
