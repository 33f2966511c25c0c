// Copyright the @ocycle/core authors. MIT license.
// What the bodies of process mode's frames hold (the frames themselves are
// wire/_framing.ts's): a task, and a result value.
//
// A task's body is [u32 metaLength][meta][padding to 8 bytes][raw chunk]:
// the meta is the chunk's info (wire/_chunk_info.ts) and, for items and text,
// the structured-clone encoding of the chunk; the raw bytes are a bytes or
// samples chunk, aligned so that the child can view them as any typed array.
// A result body starts with a tag byte: the common primitives travel as
// themselves, everything else as its structured-clone encoding. Both sides
// pass the codec in (`node:v8` serialize and deserialize), so that this file
// imports nothing a Worker would not need.

import type { ChunkInfo } from "../chunk_info.ts";
import { INFO_BYTES, readInfoBytes, writeInfoBytes } from "./_chunk_info.ts";
import {
  FRAME_HEADER_BYTES,
  FrameType,
  ProtocolError,
  writeFrameHeader,
} from "./_framing.ts";

/** A structured-clone encoder, such as `node:v8` serialize. */
export type CloneEncoder = (value: unknown) => Uint8Array;
/** A structured-clone decoder, such as `node:v8` deserialize. */
export type CloneDecoder = (bytes: Uint8Array) => unknown;

/** Where the raw bytes start in a task body whose meta is `metaLength` bytes. */
export function taskRawOffset(metaLength: number): number {
  return (4 + metaLength + 7) & ~7;
}

/** A task's meta: its info and, unless the chunk travels raw, the chunk's clone. */
export function encodeTaskMeta(
  info: ChunkInfo,
  clone: Uint8Array | undefined,
): Uint8Array {
  const meta = new Uint8Array(INFO_BYTES + (clone?.length ?? 0));
  writeInfoBytes(info, meta, 0);
  if (clone !== undefined) meta.set(clone, INFO_BYTES);
  return meta;
}

/**
 * Reads a task's meta: the info, and the chunk when it was cloned.
 *
 * @throws {ProtocolError} If the meta is too short or its info is bad.
 */
export function decodeTaskMeta(
  meta: Uint8Array,
  parse: CloneDecoder,
): { info: ChunkInfo; chunk?: unknown } {
  if (meta.length < INFO_BYTES) {
    throw new ProtocolError(
      `A task's meta must hold at least ${INFO_BYTES} bytes: received ${meta.length}`,
    );
  }
  let info: ChunkInfo;
  try {
    info = readInfoBytes(meta, 0);
  } catch (error) {
    throw new ProtocolError(
      `A task's meta has a bad info: ${(error as Error).message}`,
    );
  }
  return meta.length === INFO_BYTES
    ? { info }
    : { info, chunk: parse(meta.subarray(INFO_BYTES)) };
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

/**
 * Splits a task body into its meta and its raw chunk bytes.
 *
 * @throws {ProtocolError} If the body is shorter than its meta says.
 */
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
