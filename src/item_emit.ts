// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode ItemEmit}: arrays of arbitrary items in, arrays of `size` items out.
 *
 * @module
 */

import {
  type CallbackSource,
  Emitter,
  type EmitterOptions,
} from "./emitter.ts";

/** Options of {@linkcode ItemEmit}. */
export type ItemEmitOptions<R = unknown> = EmitterOptions<R>;

/**
 * Collects arbitrary items and emits arrays of them. Each `write()` takes an
 * array of items (a frame); `size` and `hop` count items; every chunk is a
 * new array that belongs to the callback. The analogue of ocycle's ListEmit.
 * In thread and process modes items cross by structured clone.
 *
 * @typeParam T The item type.
 * @typeParam R The callback's result, passed to `onDone`.
 *
 * @example Batching log records by three
 * ```ts
 * import { ItemEmit } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const batches: string[][] = [];
 * const emitter = new ItemEmit<string>((batch) => {
 *   batches.push(batch);
 * }, 3, { clip: true });
 * emitter.write(["a", "b"]);
 * emitter.write(["c", "d", "e", "f", "g"]);
 * await emitter.close();
 * assertEquals(batches, [["a", "b", "c"], ["d", "e", "f"], ["g"]]);
 * ```
 */
export class ItemEmit<T, R = unknown> extends Emitter<readonly T[], T[], R> {
  /**
   * Creates an emitter of arrays of `size` items.
   *
   * @param callback Called with each array of items, or the URL of its module.
   * @param size The chunk size in items.
   * @param options The emitter's options.
   * @throws {RangeError} If `size` or another number is out of range.
   * @throws {TypeError} If an option has the wrong type.
   */
  constructor(
    callback: CallbackSource<T[], R>,
    size: number,
    options: ItemEmitOptions<R> = {},
  ) {
    super("items", "ItemEmit", callback, size, options);
  }
}
