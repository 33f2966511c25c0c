// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode BufferEmit}: bytes in with one frame size, chunks out with another.
 *
 * @module
 */

import type { BytesInput } from "./emitter_options.ts";
import {
  type CallbackSource,
  Emitter,
  type EmitterOptions,
} from "./emitter.ts";

export type { BytesInput } from "./emitter_options.ts";

/** Options of {@linkcode BufferEmit}. */
export type BufferEmitOptions<R = unknown> = EmitterOptions<R>;

/**
 * Collects written bytes in recycled buffers and, once `size` bytes are
 * buffered, hands the chunk and the timestamp of its first frame to a
 * callback: inline (`mode: "serial"`), in a pool of Web Workers (`"thread"`)
 * or in a pool of Deno subprocesses (`"process"`).
 *
 * `write()` takes a `Uint8Array`, any `ArrayBufferView` (its bytes), an
 * `ArrayBuffer` or a string (encoded as UTF-8).
 *
 * @typeParam R The callback's result, passed to `onDone`.
 *
 * @example Re-chunking text frames into 29-byte chunks
 * ```ts
 * import { BufferEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const seen: string[] = [];
 * const buff = new BufferEmit((chunk, t0, info) => {
 *   seen.push(new TextDecoder().decode(chunk));
 * }, 29);
 * for (let i = 0; i < 3; i++) buff.write("asdfghjkl;");
 * await buff.close();
 * assertEquals(seen, ["asdfghjkl;asdfghjkl;asdfghjkl;"]);
 * ```
 *
 * @example Exact chunks with the remainder carried
 * ```ts
 * import { BufferEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const lengths: number[] = [];
 * const buff = new BufferEmit((chunk, _t0, info) => {
 *   lengths.push(chunk.length);
 * }, 4, { clip: true });
 * buff.write(new Uint8Array(10));
 * await buff.close();
 * assertEquals(lengths, [4, 4, 2]); // the 2-byte tail is flushed on close
 * ```
 */
export class BufferEmit<R = unknown>
  extends Emitter<BytesInput, Uint8Array, R> {
  /**
   * Constructs a new instance.
   *
   * @param callback Called with each chunk; or, in any mode, the URL of a
   * module whose default export (or `exportName`) is the callback.
   * @param size The chunk size in bytes.
   * @param options The emitter's options.
   * @throws {RangeError} If `size` or another number is out of range.
   * @throws {TypeError} If an option has the wrong type, or a function is
   * given in thread or process mode.
   */
  constructor(
    callback: CallbackSource<Uint8Array, R>,
    size: number,
    options: BufferEmitOptions<R> = {},
  ) {
    super("bytes", "BufferEmit", callback, size, options);
  }
}
