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
 *
 * @example Thread mode: the callback module in a pool of Web Workers
 * ```ts
 * import { BufferEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * // A callback module: its default export is the callback, and its top-level
 * // code runs once per Worker. The program needs read access to it.
 * const module = await Deno.makeTempFile({ suffix: ".ts" });
 * await Deno.writeTextFile(
 *   module,
 *   "export default (chunk: Uint8Array) => chunk.reduce((a, b) => a + b, 0);",
 * );
 *
 * const sums: number[] = [];
 * const emitter = new BufferEmit<number>(module, 4, {
 *   mode: "thread",
 *   pool: 2,
 *   clip: true,
 *   onDone: (sum, info) => sums[info.index] = sum,
 * });
 * emitter.write(Uint8Array.of(1, 1, 1, 1, 2, 2, 2, 2, 3, 3));
 * await emitter.close(); // flushes the tail and ends the Workers
 * await Deno.remove(module);
 * assertEquals(sums, [4, 8, 6]);
 * ```
 *
 * @example Process mode: the same module in a pool of Deno subprocesses
 * ```ts
 * import { BufferEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * // Each child may read only its module (plus `permissions`) and sees only
 * // `env`; the program needs `--allow-run` of `Deno.execPath()`.
 * const module = await Deno.makeTempFile({ suffix: ".ts" });
 * await Deno.writeTextFile(
 *   module,
 *   "export default (chunk: Uint8Array) => chunk.reduce((a, b) => a + b, 0);",
 * );
 *
 * const sums: number[] = [];
 * const emitter = new BufferEmit<number>(module, 4, {
 *   mode: "process",
 *   pool: 2,
 *   clip: true,
 *   v8Flags: ["--max-old-space-size=64"], // each child's heap limit
 *   onDone: (sum, info) => sums[info.index] = sum,
 * });
 * emitter.write(Uint8Array.of(1, 1, 1, 1, 2, 2, 2, 2, 3, 3));
 * await emitter.close(); // flushes the tail and ends the children
 * await Deno.remove(module);
 * assertEquals(sums, [4, 8, 6]);
 * ```
 */
export class BufferEmit<R = unknown>
  extends Emitter<BytesInput, Uint8Array, R> {
  /**
   * Creates an emitter of byte chunks of `size` bytes, whose callback runs
   * where `options.mode` says; nothing starts until the first chunk.
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
