// Copyright the @ocycle/core authors. MIT license.
// How a chunk and its result travel as Redis stream entries (Redis mode).
//
// A task entry's fields, in this order:
//   v       the format version, "1"
//   id      the producer's task id, as text
//   info    the chunk's ChunkInfo, 48 bytes (wire/_chunk_info.ts)
//   layout  the ChunkLayout, as JSON text (wire/_layout.ts)
//   raw     bytes and samples: the chunk's bytes as they are, never base64
//   value   items and text: the chunk's structured-clone encoding
//   retries the producer's `retries`, as text (absent: 0)
//   delay   the producer's `retryDelay` in ms, as text (absent: 100)
// A result entry's fields:
//   v       "1"
//   id      the task id it answers
//   worker  the name of the worker that ran the chunk
//   value   the result, as wire/_values.ts encodes it, or
//   error   the WireError (wire/_messages.ts), structured-cloned, with
//   kind    the ChunkErrorKind, as text (absent: "callback"), and
//   attempts the attempts made, as text (absent: 1).
// The codec is passed in (`node:v8` serialize and deserialize), as in
// wire/_values.ts, so that nothing here imports it. Pure functions: no I/O.

import type { ChunkErrorKind } from "../chunk_error.ts";
import type { ChunkInfo } from "../chunk_info.ts";
import { INFO_BYTES, readInfoBytes, writeInfoBytes } from "./_chunk_info.ts";
import { ProtocolError } from "./_framing.ts";
import { type ChunkLayout, layoutType, typedArrayType } from "./_layout.ts";
import type { WireError } from "./_messages.ts";
import {
  type CloneDecoder,
  type CloneEncoder,
  decodeValue,
  encodeValue,
} from "./_values.ts";
import { shortAscii } from "./_ascii.ts";

/** The version of the entry format, the `v` field of every entry. */
export const ENTRY_VERSION = "1";

/** An entry's fields as XADD takes them: name, value, name, value, ... */
export type EntryFields = (string | Uint8Array)[];

/** An entry's fields as read back (XREADGROUP, XAUTOCLAIM): values as bytes. */
export type ReadFields = ReadonlyMap<string, Uint8Array>;

/** A task read from an entry. */
export interface TaskEntry {
  /** The producer's task id. */
  id: string;
  /** The chunk's info. */
  info: ChunkInfo;
  /** How the chunk was rebuilt. */
  layout: ChunkLayout;
  /** The chunk: a Uint8Array, a typed array of samples, items or text. */
  chunk: unknown;
  /** The producer's `retries`: attempts after the first for a crash or a timeout. */
  retries: number;
  /** The producer's `retryDelay`, in milliseconds. */
  retryDelay: number;
}

/** What the producer asks of the fleet for a chunk that crashes or times out. */
export interface RetryPolicy {
  readonly retries: number;
  readonly retryDelay: number;
}

/** The `retryDelay` of a task entry without a `delay` field. */
export const DEFAULT_RETRY_DELAY = 100;

/** The kinds an error result may carry. */
const RESULT_KINDS: ReadonlySet<string> = new Set<ChunkErrorKind>([
  "callback",
  "timeout",
  "crash",
  "protocol",
  "startup",
  "oversize",
  "aborted",
]);

/** What a worker sends back for one chunk: a value or an error, and its name. */
export type ResultOutcome =
  & { worker: string }
  & (
    | { value: unknown }
    | {
      error: WireError;
      /** What went wrong; "callback" when absent. */
      kind?: ChunkErrorKind;
      /** The attempts made; 1 when absent. */
      attempts?: number;
    }
  );

/** A result read from an entry. */
export type ResultEntry = { id: string } & ResultOutcome;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The fields of a task entry.
 *
 * @param chunk A Uint8Array (bytes), a typed array of the layout's type
 * (samples), or a value (items, text).
 * @throws {TypeError} If a bytes or samples chunk is not a typed array view.
 */
export function encodeTaskEntry(
  id: string,
  info: ChunkInfo,
  layout: ChunkLayout,
  chunk: unknown,
  clone: CloneEncoder,
  policy?: RetryPolicy,
): EntryFields {
  const infoBytes = new Uint8Array(INFO_BYTES);
  writeInfoBytes(info, infoBytes, 0);
  const fields: EntryFields = [
    "v",
    ENTRY_VERSION,
    "id",
    id,
    "info",
    infoBytes,
    "layout",
    JSON.stringify(layout),
  ];
  if (layoutType(layout) === undefined) {
    fields.push("value", clone(chunk));
  } else {
    if (!ArrayBuffer.isView(chunk)) {
      throw new TypeError(
        `Cannot encode a ${layout.kind} chunk that is not a typed array: received ${typeof chunk}`,
      );
    }
    fields.push(
      "raw",
      new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
  }
  if (policy !== undefined && policy.retries > 0) {
    fields.push(
      "retries",
      String(policy.retries),
      "delay",
      String(policy.retryDelay),
    );
  }
  return fields;
}

/**
 * Reads a task entry written by {@linkcode encodeTaskEntry}. A samples chunk
 * whose bytes do not sit on its element size is copied; otherwise the chunk
 * views the field's bytes.
 *
 * @throws {ProtocolError} Naming the field, if the entry is malformed.
 */
export function decodeTaskEntry(
  fields: ReadFields,
  parse: CloneDecoder,
): TaskEntry {
  checkVersion(fields, "task");
  const id = textField(fields, "task", "id");
  const infoBytes = field(fields, "task", "info");
  if (infoBytes.length !== INFO_BYTES) {
    throw bad(
      "task",
      "info",
      `must hold ${INFO_BYTES} bytes: received ${infoBytes.length}`,
    );
  }
  let info: ChunkInfo;
  try {
    info = readInfoBytes(infoBytes, 0);
  } catch (error) {
    throw bad("task", "info", (error as Error).message);
  }
  const layout = readLayout(textField(fields, "task", "layout"));
  const retries = countField(fields, "task", "retries", 0);
  const retryDelay = countField(fields, "task", "delay", DEFAULT_RETRY_DELAY);
  const type = layoutType(layout);
  if (type === undefined) {
    if (fields.has("raw")) {
      throw bad("task", "raw", `must be absent for a ${layout.kind} chunk`);
    }
    const value = field(fields, "task", "value");
    let chunk: unknown;
    try {
      chunk = parse(value);
    } catch (error) {
      throw bad("task", "value", `cannot be decoded: ${describe(error)}`);
    }
    return { id, info, layout, chunk, retries, retryDelay };
  }
  if (fields.has("value")) {
    throw bad("task", "value", `must be absent for a ${layout.kind} chunk`);
  }
  const raw = field(fields, "task", "raw");
  const channels = layout.kind === "samples" ? layout.channels : 1;
  const expected = info.length * channels * type.BYTES_PER_ELEMENT;
  if (raw.length !== expected) {
    throw bad(
      "task",
      "raw",
      `must hold ${expected} bytes for ${info.length} ${
        layout.kind === "samples"
          ? `frames of ${channels} ${type.name} samples`
          : "bytes"
      }: received ${raw.length}`,
    );
  }
  // The chunk gets a buffer of its own, whole: a short one was read into a
  // buffer shared with other strings, which a thread-mode worker would
  // transfer, and a typed array needs its alignment.
  const bytes = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength
    ? raw
    : raw.slice();
  const chunk = type === Uint8Array ? bytes : new type(
    bytes.buffer,
    bytes.byteOffset,
    bytes.byteLength / type.BYTES_PER_ELEMENT,
  );
  return { id, info, layout, chunk, retries, retryDelay };
}

/** The fields of a result entry: a value or an error, and the worker's name. */
export function encodeResultEntry(
  id: string,
  outcome: ResultOutcome,
  clone: CloneEncoder,
): EntryFields {
  const fields: EntryFields = [
    "v",
    ENTRY_VERSION,
    "id",
    id,
    "worker",
    outcome.worker,
  ];
  if ("error" in outcome) {
    fields.push("error", clone(outcome.error));
    if (outcome.kind !== undefined && outcome.kind !== "callback") {
      fields.push("kind", outcome.kind);
    }
    if (outcome.attempts !== undefined && outcome.attempts !== 1) {
      fields.push("attempts", String(outcome.attempts));
    }
  } else fields.push("value", encodeValue(outcome.value, clone));
  return fields;
}

/**
 * Reads a result entry written by {@linkcode encodeResultEntry}.
 *
 * @throws {ProtocolError} Naming the field, if the entry is malformed.
 */
export function decodeResultEntry(
  fields: ReadFields,
  parse: CloneDecoder,
): ResultEntry {
  checkVersion(fields, "result");
  const id = textField(fields, "result", "id");
  const worker = textField(fields, "result", "worker");
  const value = fields.get("value");
  const error = fields.get("error");
  if ((value === undefined) === (error === undefined)) {
    throw new ProtocolError(
      `A result entry must have exactly one of the fields 'value' and 'error': received ${
        value === undefined ? "neither" : "both"
      }`,
    );
  }
  if (value !== undefined) {
    try {
      return { id, worker, value: decodeValue(value, parse) };
    } catch (cause) {
      throw bad("result", "value", `cannot be decoded: ${describe(cause)}`);
    }
  }
  let wire: unknown;
  try {
    wire = parse(error!);
  } catch (cause) {
    throw bad("result", "error", `cannot be decoded: ${describe(cause)}`);
  }
  if (!isWireError(wire)) {
    throw bad(
      "result",
      "error",
      "must be an object with a string name and message",
    );
  }
  const out: WireError = { name: wire.name, message: wire.message };
  if (typeof wire.stack === "string") out.stack = wire.stack;
  const kind = fields.has("kind")
    ? textField(fields, "result", "kind")
    : "callback";
  if (!RESULT_KINDS.has(kind)) {
    throw bad(
      "result",
      "kind",
      `must be one of ${[...RESULT_KINDS].join(", ")}: received ${
        JSON.stringify(kind.slice(0, 20))
      }`,
    );
  }
  const attempts = countField(fields, "result", "attempts", 1);
  return {
    id,
    worker,
    error: out,
    kind: kind as ChunkErrorKind,
    attempts,
  };
}

/** An entry's flat fields (as XADD takes them) as read back, for tests and in-memory use. */
export function readFields(fields: EntryFields): Map<string, Uint8Array> {
  const map = new Map<string, Uint8Array>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1]!;
    map.set(
      fields[i] as string,
      typeof value === "string" ? utf8.encode(value) : value,
    );
  }
  return map;
}

function bad(entry: string, name: string, why: string): ProtocolError {
  return new ProtocolError(`A ${entry} entry's field '${name}' ${why}`);
}

function field(fields: ReadFields, entry: string, name: string): Uint8Array {
  const value = fields.get(name);
  if (value === undefined) {
    throw new ProtocolError(
      `A ${entry} entry must have the field '${name}': received the fields ${
        [...fields.keys()].map((key) => `'${key}'`).join(", ") || "(none)"
      }`,
    );
  }
  return value;
}

function textField(fields: ReadFields, entry: string, name: string): string {
  const bytes = field(fields, entry, name);
  const ascii = shortAscii(bytes);
  if (ascii !== undefined) return ascii;
  try {
    return fromUtf8.decode(bytes);
  } catch {
    throw bad(entry, name, "must be UTF-8 text");
  }
}

/** An optional field holding a whole number >= 0 as text. */
function countField(
  fields: ReadFields,
  entry: string,
  name: string,
  absent: number,
): number {
  if (!fields.has(name)) return absent;
  const text = textField(fields, entry, name);
  const n = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw bad(
      entry,
      name,
      `must be a whole number >= 0 as text: received ${
        JSON.stringify(text.slice(0, 20))
      }`,
    );
  }
  return n;
}

function checkVersion(fields: ReadFields, entry: string): void {
  const v = textField(fields, entry, "v");
  if (v !== ENTRY_VERSION) {
    throw bad(
      entry,
      "v",
      `must be the format version ${ENTRY_VERSION}: received ${
        JSON.stringify(v.slice(0, 20))
      }`,
    );
  }
}

function readLayout(text: string): ChunkLayout {
  let layout: unknown;
  try {
    layout = JSON.parse(text);
  } catch {
    layout = undefined;
  }
  const l = layout as Record<string, unknown> | null | undefined;
  const kind = typeof l === "object" && l !== null ? l.kind : undefined;
  if (kind === "bytes" || kind === "items" || kind === "text") return { kind };
  if (
    kind === "samples" && typeof l!.type === "string" &&
    typedArrayType(l!.type) !== undefined &&
    Number.isInteger(l!.channels) && (l!.channels as number) >= 1
  ) {
    return { kind, type: l!.type, channels: l!.channels as number };
  }
  throw bad(
    "task",
    "layout",
    `must be a chunk layout (bytes, samples of a typed array type with channels >= 1, items or text): received ${
      JSON.stringify(text.slice(0, 80))
    }`,
  );
}

function isWireError(
  value: unknown,
): value is { name: string; message: string; stack?: unknown } {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.name === "string" && typeof v.message === "string";
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
