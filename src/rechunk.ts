// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode rechunk}: a `TransformStream` that re-chunks bytes.
 *
 * @module
 */

import type { ChunkInfo } from "./chunk_info.ts";
import { BufferEmit, type BytesInput } from "./buffer_emit.ts";

/** Options of {@linkcode rechunk}. */
export interface RechunkOptions {
  /**
   * Emit exact chunks of `size`, carrying the remainder.
   *
   * @default {false}
   */
  clip?: boolean;
  /** Start a chunk every `hop` bytes (requires `clip`). */
  hop?: number;
  /**
   * Emit the partial tail when the input ends.
   *
   * @default {true}
   */
  flush?: boolean;
  /**
   * Yield `{ chunk, info }` records instead of bare chunks.
   *
   * @default {false}
   */
  info?: boolean;
}

/** A chunk and its info, yielded by {@linkcode rechunk} with `info: true`. */
export interface RechunkedChunk {
  /** The chunk's bytes. */
  chunk: Uint8Array;
  /** Where the chunk sits in the stream and when its first byte arrived. */
  info: ChunkInfo;
}

/**
 * Re-chunks a byte stream: frames of any size in, chunks of `size` out,
 * with the same `clip` and `hop` rules as {@linkcode BufferEmit}. Each chunk
 * is a fresh array.
 *
 * @param size The chunk size in bytes.
 * @param options The chunking options.
 * @returns A `TransformStream` for `pipeThrough`.
 * @throws {RangeError} If `size` or `hop` is not a positive integer.
 *
 * @example 1 KiB reads into exact 4 KiB chunks
 * ```ts
 * import { rechunk } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const reads = Array.from({ length: 10 }, () => new Uint8Array(1024));
 * const sizes = await Array.fromAsync(
 *   ReadableStream.from(reads).pipeThrough(rechunk(4096, { clip: true })),
 *   (chunk) => chunk.length,
 * );
 * assertEquals(sizes, [4096, 4096, 2048]);
 * ```
 */
export function rechunk(
  size: number,
  options: RechunkOptions & { info: true },
): TransformStream<BytesInput, RechunkedChunk>;
/**
 * Re-chunks a byte stream into bare chunks of `size` bytes.
 *
 * @param size The chunk size in bytes.
 * @param options The chunking options.
 * @returns A `TransformStream` for `pipeThrough`.
 */
export function rechunk(
  size: number,
  options?: RechunkOptions & { info?: false },
): TransformStream<BytesInput, Uint8Array>;
export function rechunk(
  size: number,
  options: RechunkOptions = {},
): TransformStream<BytesInput, Uint8Array | RechunkedChunk> {
  const { clip = false, hop, flush = true, info = false } = options;
  let out: TransformStreamDefaultController<Uint8Array | RechunkedChunk>;
  const emitter = new BufferEmit(
    (chunk, _t0, chunkInfo) => {
      out.enqueue(info ? { chunk, info: chunkInfo } : chunk);
    },
    size,
    hop === undefined ? { clip } : { clip, hop },
  );
  return new TransformStream({
    start(controller) {
      out = controller;
    },
    transform(frame) {
      emitter.write(frame);
    },
    flush() {
      return emitter.close({ flush });
    },
    cancel(reason) {
      return emitter.abort(reason);
    },
  });
}
