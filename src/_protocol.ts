// Copyright the @ocycle/core authors. MIT license.
// The messages between the parent and a Worker or a child process, typed once.
// Thread mode posts these objects (chunk bytes transferred, not copied);
// process mode frames the same messages on stdio (see the framing below, owned
// by process mode).

import type { ChunkInfo } from "./chunk_info.ts";
import type { FormatSpec } from "./_format.ts";

/** An error as it crosses a thread or process boundary. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
}

/** Sent once to a new Worker or child: what to load. */
export interface InitMessage {
  type: "init";
  /** The callback module's URL. */
  url: string;
  /** The export that is the callback. */
  exportName: string;
  /** How to rebuild chunks. */
  format: FormatSpec;
  /** Whether chunk buffers must be sent back for reuse. */
  borrow: boolean;
  /**
   * Thread mode: post each reply as soon as its callback settles instead of
   * batching the replies of one turn. Set when a timeout is in force, so that
   * a callback that hangs cannot hold back the results that came before it.
   */
  replyAtOnce?: boolean;
}

/**
 * A chunk to run, as process mode frames it (the id in the frame header, the
 * rest in the body); thread mode packs the same fields in a
 * {@linkcode TaskBatchMessage}.
 */
export interface TaskMessage {
  type: "task";
  /** Unique per dispatcher, so that a reply can only settle its own chunk. */
  id: number;
  info: ChunkInfo;
  /**
   * Bytes and samples: the chunk's bytes (in thread mode its transferred
   * ArrayBuffer), holding `info.length * channels` elements from offset 0.
   * Items and text: the chunk itself.
   */
  chunk: ArrayBuffer | unknown;
}

/** The Worker or child loaded the module and waits for tasks. */
export interface ReadyMessage {
  type: "ready";
}

/** The module could not be loaded. */
export interface StartupErrorMessage {
  type: "startup-error";
  error: WireError;
}

/** A chunk's callback settled with a value. */
export interface ResultMessage {
  type: "result";
  id: number;
  value: unknown;
  /** The chunk's ArrayBuffer, sent back for reuse when the chunk was borrowed. */
  buffer?: ArrayBuffer;
}

/** A chunk's callback threw or rejected. */
export interface ErrorMessage {
  type: "error";
  id: number;
  error: WireError;
  /** The chunk's ArrayBuffer, sent back for reuse when the chunk was borrowed. */
  buffer?: ArrayBuffer;
}

/**
 * Thread mode only: user code in the Worker called `self.close()` or
 * `Deno.exit()`. Deno gives the parent no event when a Worker ends itself, so
 * the Worker entry wraps both and says so first.
 */
export interface ClosingMessage {
  type: "closing";
  /** What the user code called. */
  how: "self.close()" | "Deno.exit()";
  /** The code passed to `Deno.exit()`, if any. */
  code?: number;
}

/**
 * Thread mode only: one or more chunks in one message. Under load the cost of
 * a message, not of the bytes (they are transferred), bounds the rate, so the
 * parent sends the chunks a busy Worker gets in one go, and packs their ids and
 * infos as plain numbers, which clone several times faster than objects.
 */
export interface TaskBatchMessage {
  type: "tasks";
  /** {@linkcode TASK_FIELDS} numbers per chunk, written by {@linkcode packTask}. */
  meta: number[];
  /** The chunks, in the same order: as in {@linkcode TaskMessage.chunk}. */
  chunks: unknown[];
}

/** How many numbers {@linkcode packTask} writes per chunk. */
const TASK_FIELDS = 7;

/** A chunk's reason as a number on the wire, in both modes: its index here. */
const REASONS: readonly ChunkInfo["reason"][] = [
  "size",
  "maxWait",
  "flush",
  "close",
];

/** Appends a chunk's id and info to a batch's `meta`. */
export function packTask(meta: number[], id: number, info: ChunkInfo): void {
  meta.push(
    id,
    info.index,
    info.offset,
    info.length,
    info.t0,
    REASONS.indexOf(info.reason),
    info.final ? 1 : 0,
  );
}

/** The id of the `k`th chunk of a batch. */
export function taskId(meta: readonly number[], k: number): number {
  return meta[k * TASK_FIELDS]!;
}

/** Rebuilds the info of the `k`th chunk of a batch. */
export function taskInfo(meta: readonly number[], k: number): ChunkInfo {
  const at = k * TASK_FIELDS;
  return {
    index: meta[at + 1]!,
    offset: meta[at + 2]!,
    length: meta[at + 3]!,
    t0: meta[at + 4]!,
    reason: REASONS[meta[at + 5]!]!,
    final: meta[at + 6] === 1,
  };
}

/** Thread mode only: the replies of chunks that settled together. */
export interface ReplyBatchMessage {
  type: "replies";
  replies: (ResultMessage | ErrorMessage)[];
}

/** From a Worker: what a child sends, the notice that it is ending itself, and batches. */
export type WorkerMessage = ChildMessage | ClosingMessage | ReplyBatchMessage;

/** From the parent to a Worker: the init message, then batches of chunks. */
export type WorkerParentMessage = InitMessage | TaskBatchMessage;

/** From a Worker or child. */
export type ChildMessage =
  | ReadyMessage
  | StartupErrorMessage
  | ResultMessage
  | ErrorMessage;

/** Turns anything thrown into a WireError. */
export function toWireError(error: unknown): WireError {
  if (error instanceof Error) {
    const wire: WireError = { name: error.name, message: error.message };
    if (error.stack !== undefined) wire.stack = error.stack;
    return wire;
  }
  return { name: "Error", message: String(error) };
}

/** Rebuilds an Error from a WireError, keeping the remote stack. */
export function fromWireError(wire: WireError): Error {
  const error = new Error(wire.message);
  error.name = wire.name;
  if (wire.stack !== undefined) error.stack = wire.stack;
  return error;
}

// ---- Process mode: the framing on stdio ----
//
// Every message between the parent and a child process is one frame:
//
//   byte 0      FRAME_MAGIC: 0xC0 | protocol version (1)
//   byte 1      the message type (FrameType)
//   bytes 2-5   the task id, u32 big-endian (0 when there is no task)
//   bytes 6-9   the body's length in bytes, u32 big-endian
//   bytes 10-   the body
//
// A task's body is [u32 metaLength][meta][padding to 8 bytes][raw chunk bytes]:
// the meta is the structured-clone encoding of `{ info, chunk? }` (the chunk
// only for items and text) and the raw bytes are a bytes or samples chunk,
// aligned so that the child can view them as any typed array. Every other
// body is the structured-clone encoding of the message's payload. A decoder
// checks the magic byte, the type and the length before it allocates the body,
// and never tries to resynchronise: after a bad frame the stream is dead.

/** The first byte of every frame: the magic bits and the protocol version. */
export const FRAME_MAGIC = 0xc1;

/** Bytes in a frame header. */
export const FRAME_HEADER_BYTES = 10;

/** The largest body a frame may announce (1 GiB): anything larger is refused unread. */
export const MAX_FRAME_BYTES = 1 << 30;

/** The message type of a frame. */
export const FrameType = {
  /** Parent to child: an {@linkcode InitMessage} (id 0). */
  init: 1,
  /** Parent to child: a {@linkcode TaskMessage}. */
  task: 2,
  /** Child to parent: {@linkcode ReadyMessage} (id 0, empty body). */
  ready: 3,
  /** Child to parent: {@linkcode StartupErrorMessage} (id 0, a WireError). */
  startupError: 4,
  /** Child to parent: {@linkcode ResultMessage} (the value). */
  result: 5,
  /** Child to parent: {@linkcode ErrorMessage} (a WireError). */
  error: 6,
} as const;

/** One of the values of {@linkcode FrameType}. */
export type FrameTypeValue = typeof FrameType[keyof typeof FrameType];

/** The frame types a parent may send. */
export const PARENT_FRAME_TYPES: ReadonlySet<number> = new Set([
  FrameType.init,
  FrameType.task,
]);

/** The frame types a child may send. */
export const CHILD_FRAME_TYPES: ReadonlySet<number> = new Set([
  FrameType.ready,
  FrameType.startupError,
  FrameType.result,
  FrameType.error,
]);

/** A decoded frame. */
export interface Frame {
  readonly type: FrameTypeValue;
  readonly id: number;
  /** The body, in a buffer of its own that starts at offset 0. */
  readonly body: Uint8Array;
}

/** A stream of frames broke the protocol; the stream cannot be trusted again. */
export class ProtocolError extends Error {
  /** The error's name. */
  override readonly name = "ProtocolError";
}

/** Writes a frame header into `target` at `at`. */
export function writeFrameHeader(
  target: Uint8Array,
  at: number,
  type: FrameTypeValue,
  id: number,
  length: number,
): void {
  if (!(Number.isInteger(length) && length >= 0 && length <= MAX_FRAME_BYTES)) {
    throw new RangeError(
      `Cannot write a frame as its body must be 0 to ${MAX_FRAME_BYTES} bytes: received ${length}`,
    );
  }
  if (!(Number.isInteger(id) && id >= 0 && id <= 0xffffffff)) {
    throw new RangeError(
      `Cannot write a frame as its task id must be a u32: received ${id}`,
    );
  }
  target[at] = FRAME_MAGIC;
  target[at + 1] = type;
  const view = new DataView(target.buffer, target.byteOffset + at + 2, 8);
  view.setUint32(0, id);
  view.setUint32(4, length);
}

/** A whole frame: its header followed by `body`. */
export function encodeFrame(
  type: FrameTypeValue,
  id: number,
  body: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  writeFrameHeader(frame, 0, type, id, body.length);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/** Where the raw bytes start in a task body whose meta is `metaLength` bytes. */
export function taskRawOffset(metaLength: number): number {
  return (4 + metaLength + 7) & ~7;
}

/**
 * The head of a task frame: header, meta length, meta and padding. The raw
 * chunk bytes (`rawLength` of them) follow it on the wire.
 */
export function encodeTaskHead(
  id: number,
  meta: Uint8Array,
  rawLength: number,
): Uint8Array {
  const raw = taskRawOffset(meta.length);
  const head = new Uint8Array(FRAME_HEADER_BYTES + raw);
  writeFrameHeader(head, 0, FrameType.task, id, raw + rawLength);
  new DataView(head.buffer).setUint32(FRAME_HEADER_BYTES, meta.length);
  head.set(meta, FRAME_HEADER_BYTES + 4);
  return head;
}

/** Splits a task body into its meta and its raw chunk bytes. */
export function decodeTaskBody(
  body: Uint8Array,
): { meta: Uint8Array; raw: Uint8Array } {
  if (body.length < 4) {
    throw new ProtocolError(
      `A task frame's body must hold at least 4 bytes: received ${body.length}`,
    );
  }
  const metaLength = new DataView(body.buffer, body.byteOffset, 4).getUint32(
    0,
  );
  const raw = taskRawOffset(metaLength);
  if (raw > body.length) {
    throw new ProtocolError(
      `A task frame announced ${metaLength} bytes of meta but its body holds ${body.length} bytes`,
    );
  }
  return {
    meta: body.subarray(4, 4 + metaLength),
    raw: body.subarray(raw),
  };
}

const EMPTY = new Uint8Array(0);

/**
 * Turns a byte stream into frames, whatever the split of the bytes: one byte
 * at a time, or a header cut across reads. The header is checked before the
 * body is allocated. After a ProtocolError the decoder refuses everything.
 */
export class FrameDecoder {
  readonly #types: ReadonlySet<number>;
  readonly #maxBytes: number;
  readonly #header = new Uint8Array(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #type: FrameTypeValue = FrameType.init;
  #id = 0;
  #body: Uint8Array | undefined;
  #bodyFill = 0;
  #broken: ProtocolError | undefined;

  /**
   * @param types The frame types this side may receive.
   * @param maxBytes The largest body accepted.
   */
  constructor(types: ReadonlySet<number>, maxBytes: number = MAX_FRAME_BYTES) {
    this.#types = types;
    this.#maxBytes = maxBytes;
  }

  /**
   * Feeds bytes; returns the frames they complete, in order.
   *
   * @throws {ProtocolError} On a bad magic byte, an unknown type or a length over the limit.
   */
  push(bytes: Uint8Array): Frame[] {
    if (this.#broken !== undefined) throw this.#broken;
    const frames: Frame[] = [];
    let pos = 0;
    const n = bytes.length;
    while (pos < n) {
      const body = this.#body;
      if (body === undefined) {
        const take = Math.min(FRAME_HEADER_BYTES - this.#headerFill, n - pos);
        this.#header.set(bytes.subarray(pos, pos + take), this.#headerFill);
        this.#headerFill += take;
        pos += take;
        if (this.#headerFill < FRAME_HEADER_BYTES) break;
        this.#startBody(frames);
      } else {
        const take = Math.min(body.length - this.#bodyFill, n - pos);
        body.set(bytes.subarray(pos, pos + take), this.#bodyFill);
        this.#bodyFill += take;
        pos += take;
        if (this.#bodyFill === body.length) this.#finish(frames, body);
      }
    }
    return frames;
  }

  /**
   * While a body is being received: the part of it still missing, so that a
   * reader can read straight into it (saving a copy); report what was read
   * with {@linkcode FrameDecoder.filled}.
   */
  missingBody(): Uint8Array | undefined {
    if (this.#broken !== undefined || this.#body === undefined) {
      return undefined;
    }
    return this.#body.subarray(this.#bodyFill);
  }

  /** Says that `n` bytes were read into {@linkcode FrameDecoder.missingBody}; returns the frame if it is complete. */
  filled(n: number): Frame[] {
    const body = this.#body;
    if (body === undefined || n < 0 || this.#bodyFill + n > body.length) {
      throw new RangeError(
        `Cannot fill a frame body with ${n} bytes: ${
          body === undefined ? "no body is being received" : "too many"
        }`,
      );
    }
    this.#bodyFill += n;
    const frames: Frame[] = [];
    if (this.#bodyFill === body.length) this.#finish(frames, body);
    return frames;
  }

  #startBody(frames: Frame[]): void {
    const header = this.#header;
    if (header[0] !== FRAME_MAGIC) {
      this.#fail(
        `bad magic byte 0x${hex(header[0]!)} (expected 0x${
          hex(FRAME_MAGIC)
        }): the stream holds something other than frames, such as user output`,
      );
    }
    const type = header[1]!;
    if (!this.#types.has(type)) {
      this.#fail(`unknown message type ${type}`);
    }
    const view = new DataView(header.buffer);
    const id = view.getUint32(2);
    const length = view.getUint32(6);
    if (length > this.#maxBytes) {
      this.#fail(
        `a frame announced a body of ${length} bytes, over the limit of ${this.#maxBytes} bytes`,
      );
    }
    this.#type = type as FrameTypeValue;
    this.#id = id;
    this.#headerFill = 0;
    if (length === 0) {
      frames.push({ type: this.#type, id, body: EMPTY });
    } else {
      this.#body = new Uint8Array(length);
      this.#bodyFill = 0;
    }
  }

  #finish(frames: Frame[], body: Uint8Array): void {
    frames.push({ type: this.#type, id: this.#id, body });
    this.#body = undefined;
    this.#bodyFill = 0;
  }

  #fail(detail: string): never {
    this.#broken = new ProtocolError(detail);
    throw this.#broken;
  }

  /**
   * The frame cut short, if the bytes so far end inside one: how many bytes
   * it needs in all (header included, or only the header while the header is
   * incomplete) and how many came.
   */
  get partial(): { expected: number; received: number } | undefined {
    if (this.#body !== undefined) {
      return {
        expected: FRAME_HEADER_BYTES + this.#body.length,
        received: FRAME_HEADER_BYTES + this.#bodyFill,
      };
    }
    if (this.#headerFill > 0) {
      return { expected: FRAME_HEADER_BYTES, received: this.#headerFill };
    }
    return undefined;
  }

  /**
   * Says the stream ended.
   *
   * @throws {ProtocolError} If it ended inside a frame.
   */
  end(): void {
    const partial = this.partial;
    if (partial !== undefined) {
      this.#fail(
        `the stream ended in the middle of a frame: expected ${partial.expected} bytes, received ${partial.received}`,
      );
    }
  }
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

// ---- Process mode: values in frame bodies ----
//
// A task's meta starts with a kind byte: TASK_META_INFO, then the chunk's
// info in 34 bytes (index, offset, length, t0 as f64; reason and final as
// u8), for bytes and samples, whose chunk travels raw; or TASK_META_CLONE,
// then the structured-clone encoding of `{ info, chunk }`, for items and
// text. A result body starts with a tag byte: the common primitives travel
// as themselves, everything else as its structured-clone encoding. Both
// sides pass the codec in (`node:v8` serialize and deserialize), so that
// this file imports nothing a Worker would not need.

/** Meta kind: the info in binary, the chunk raw after the meta. */
export const TASK_META_INFO = 0;
/** Meta kind: the structured-clone encoding of `{ info, chunk }`. */
export const TASK_META_CLONE = 1;

const INFO_BYTES = 34;

/** A structured-clone encoder, such as `node:v8` serialize. */
export type CloneEncoder = (value: unknown) => Uint8Array;
/** A structured-clone decoder, such as `node:v8` deserialize. */
export type CloneDecoder = (bytes: Uint8Array) => unknown;

/** The meta of a task: its info, and its chunk unless the chunk travels raw. */
export function encodeTaskMeta(
  info: ChunkInfo,
  chunk: unknown,
  raw: boolean,
  clone: CloneEncoder,
): Uint8Array {
  if (!raw) {
    const body = clone({ info, chunk });
    const meta = new Uint8Array(1 + body.length);
    meta[0] = TASK_META_CLONE;
    meta.set(body, 1);
    return meta;
  }
  const meta = new Uint8Array(1 + INFO_BYTES);
  const view = new DataView(meta.buffer);
  meta[0] = TASK_META_INFO;
  view.setFloat64(1, info.index);
  view.setFloat64(9, info.offset);
  view.setFloat64(17, info.length);
  view.setFloat64(25, info.t0);
  meta[33] = REASONS.indexOf(info.reason);
  meta[34] = info.final ? 1 : 0;
  return meta;
}

/**
 * Reads a task's meta.
 *
 * @throws {ProtocolError} If the meta is not one the parent writes.
 */
export function decodeTaskMeta(
  meta: Uint8Array,
  parse: CloneDecoder,
): { info: ChunkInfo; chunk?: unknown } {
  if (meta[0] === TASK_META_CLONE) {
    return parse(meta.subarray(1)) as { info: ChunkInfo; chunk: unknown };
  }
  if (meta[0] !== TASK_META_INFO || meta.length !== 1 + INFO_BYTES) {
    throw new ProtocolError(
      `A task's meta must start with kind 0 or 1 and hold ${
        1 + INFO_BYTES
      } bytes for kind 0: received kind ${meta[0]} in ${meta.length} bytes`,
    );
  }
  const view = new DataView(meta.buffer, meta.byteOffset, meta.length);
  const reason = REASONS[meta[33]!];
  if (reason === undefined) {
    throw new ProtocolError(`A task's meta has an unknown reason ${meta[33]}`);
  }
  return {
    info: {
      index: view.getFloat64(1),
      offset: view.getFloat64(9),
      length: view.getFloat64(17),
      t0: view.getFloat64(25),
      reason,
      final: meta[34] === 1,
    },
  };
}

const VALUE_CLONE = 0,
  VALUE_UNDEFINED = 1,
  VALUE_NULL = 2,
  VALUE_NUMBER = 3,
  VALUE_STRING = 4,
  VALUE_TRUE = 5,
  VALUE_FALSE = 6;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** A result body: a tag byte, then the value. */
export function encodeValue(value: unknown, clone: CloneEncoder): Uint8Array {
  switch (typeof value) {
    case "undefined":
      return new Uint8Array([VALUE_UNDEFINED]);
    case "boolean":
      return new Uint8Array([value ? VALUE_TRUE : VALUE_FALSE]);
    case "number": {
      const body = new Uint8Array(9);
      body[0] = VALUE_NUMBER;
      new DataView(body.buffer).setFloat64(1, value);
      return body;
    }
    case "string": {
      const text = utf8.encode(value);
      const body = new Uint8Array(1 + text.length);
      body[0] = VALUE_STRING;
      body.set(text, 1);
      return body;
    }
  }
  if (value === null) return new Uint8Array([VALUE_NULL]);
  const cloned = clone(value);
  const body = new Uint8Array(1 + cloned.length);
  body[0] = VALUE_CLONE;
  body.set(cloned, 1);
  return body;
}

/**
 * Reads a result body.
 *
 * @throws {ProtocolError} If its tag is unknown or its size is wrong.
 */
export function decodeValue(body: Uint8Array, parse: CloneDecoder): unknown {
  switch (body[0]) {
    case VALUE_CLONE:
      return parse(body.subarray(1));
    case VALUE_UNDEFINED:
      return undefined;
    case VALUE_NULL:
      return null;
    case VALUE_TRUE:
      return true;
    case VALUE_FALSE:
      return false;
    case VALUE_NUMBER:
      if (body.length === 9) {
        return new DataView(body.buffer, body.byteOffset, 9).getFloat64(1);
      }
      break;
    case VALUE_STRING:
      return fromUtf8.decode(body.subarray(1));
  }
  throw new ProtocolError(
    `A result body must start with a known tag: received tag ${
      body[0]
    } in ${body.length} bytes`,
  );
}
