// Copyright the @ocycle/core authors. MIT license.
// What the other side of a Worker, a child process or a queue needs to rebuild
// a chunk: its layout. Kept apart from the write path's kinds (core/_kinds.ts)
// so that the Worker and child entries load only this.

import type { TypedArray, TypedArrayConstructor } from "../chunk_info.ts";

export type { TypedArray, TypedArrayConstructor } from "../chunk_info.ts";

/**
 * How a chunk is rebuilt on the other side: raw bytes, interleaved samples of
 * a typed array type, or a value (items, text) that crosses by structured
 * clone.
 */
export type ChunkLayout =
  | { kind: "bytes" }
  | { kind: "samples"; type: string; channels: number }
  | { kind: "items" }
  | { kind: "text" };

/** Every typed array constructor, by name, so a Worker or child can rebuild a chunk's type. */
const TYPED_ARRAYS = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
} as unknown as Record<string, TypedArrayConstructor<TypedArray>>;

/** The typed array constructor of that name, or `undefined` if there is none. */
export function typedArrayType(
  name: string,
): TypedArrayConstructor<TypedArray> | undefined {
  return Object.hasOwn(TYPED_ARRAYS, name) ? TYPED_ARRAYS[name] : undefined;
}

/**
 * The typed array type a layout's chunks travel as, `undefined` for items and
 * text (which travel as values).
 *
 * @throws {TypeError} If a samples layout names no typed array type.
 */
export function layoutType(
  layout: ChunkLayout,
): TypedArrayConstructor<TypedArray> | undefined {
  if (layout.kind === "bytes") return Uint8Array;
  if (layout.kind !== "samples") return undefined;
  const type = typedArrayType(layout.type);
  if (type === undefined) {
    throw new TypeError(
      `Cannot rebuild samples as '${layout.type}' is not a typed array type`,
    );
  }
  return type;
}
