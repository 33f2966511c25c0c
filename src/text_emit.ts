// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode TextEmit}: strings in, strings of `size` characters out.
 *
 * @module
 */

import {
  type CallbackSource,
  Emitter,
  type EmitterOptions,
} from "./emitter.ts";

/** Options of {@linkcode TextEmit}. */
export type TextEmitOptions<R = unknown> = EmitterOptions<R>;

/**
 * Collects strings and emits strings. `size` and `hop` count Unicode code
 * points, so a chunk boundary never falls inside a surrogate pair and an
 * emoji is never cut in half. The analogue of ocycle's StringIO buffer.
 *
 * @typeParam R The callback's result, passed to `onDone`.
 *
 * @example Exact 3-character chunks that never split an emoji
 * ```ts
 * import { TextEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const chunks: string[] = [];
 * const emitter = new TextEmit((text) => {
 *   chunks.push(text);
 * }, 3, { clip: true });
 * emitter.write("ab😀cd");
 * emitter.write("e🎉");
 * await emitter.close();
 * assertEquals(chunks, ["ab😀", "cde", "🎉"]);
 * ```
 */
export class TextEmit<R = unknown> extends Emitter<string, string, R> {
  /**
   * Creates an emitter of strings of `size` code points.
   *
   * @param callback Called with each string, or the URL of its module.
   * @param size The chunk size in code points.
   * @param options The emitter's options.
   * @throws {RangeError} If `size` or another number is out of range.
   * @throws {TypeError} If an option has the wrong type.
   */
  constructor(
    callback: CallbackSource<string, R>,
    size: number,
    options: TextEmitOptions<R> = {},
  ) {
    super("text", "TextEmit", callback, size, options);
  }
}
