// Copyright the @ocycle/core authors. MIT license.
/**
 * Stream buffering and event triggering for unbalanced frame sizes: data goes
 * in with one frame size and comes out with another.
 *
 * A {@linkcode BufferEmit} collects written frames in recycled buffers and,
 * once `size` is reached, hands the chunk and the timestamp of its first
 * frame to a callback, run inline (`mode: "serial"`), in a pool of Web
 * Workers (`"thread"`), in a pool of Deno subprocesses (`"process"`), or by
 * `ocycle worker`s on other machines through Redis (`"redis"`). Results come
 * back to `onDone` on the main thread; every option is documented on
 * {@linkcode EmitterOptions}. {@linkcode SampleEmit},
 * {@linkcode ItemEmit} and {@linkcode TextEmit} do the same for typed samples,
 * items and text; {@linkcode fanout} feeds one stream to several emitters,
 * {@linkcode rechunk} is the plain `TransformStream` form, and
 * {@linkcode closeOnSignals} flushes and closes emitters on Ctrl-C and SIGTERM.
 *
 * @example Emitting 29-byte chunks
 * ```ts
 * import { BufferEmit } from "@ocycle/core";
 * import { assert } from "@std/assert";
 *
 * const buff = new BufferEmit((chunk, t0) => {
 *   assert(chunk.length >= 29);
 *   console.log("Emitting:", t0, new TextDecoder().decode(chunk));
 * }, 29);
 * for (let i = 0; i < 6; i++) buff.write("asdfghjkl;");
 * await buff.close();
 * ```
 *
 * @module
 */

export { BufferEmit } from "./src/buffer_emit.ts";
export type { BufferEmitOptions, BytesInput } from "./src/buffer_emit.ts";
export { SampleEmit } from "./src/sample_emit.ts";
export type { SampleEmitOptions, SampleEmitStats } from "./src/sample_emit.ts";
export { ItemEmit } from "./src/item_emit.ts";
export type { ItemEmitOptions } from "./src/item_emit.ts";
export { TextEmit } from "./src/text_emit.ts";
export type { TextEmitOptions } from "./src/text_emit.ts";
export { Emitter } from "./src/emitter.ts";
export type {
  BufferCounts,
  CallbackSource,
  ChildPermissions,
  CloseOptions,
  EmitterOptions,
  EmitterStats,
  Overflow,
  RedisOptions,
  SampleFormatOptions,
  SampleInput,
  TypedArray,
  TypedArrayConstructor,
} from "./src/emitter.ts";
export type { Callback, ChunkInfo, Mode } from "./src/chunk_info.ts";
export { ChunkError } from "./src/chunk_error.ts";
export type { ChunkErrorKind } from "./src/chunk_error.ts";
export { fanout } from "./src/fanout.ts";
export type { Fanout, FrameWriter } from "./src/fanout.ts";
export { rechunk } from "./src/rechunk.ts";
export { closeOnSignals } from "./src/close_on_signals.ts";
export type {
  Closable,
  CloseOnSignalsOptions,
  SignalAction,
  SignalCloser,
} from "./src/close_on_signals.ts";
export type { RechunkedChunk, RechunkOptions } from "./src/rechunk.ts";
