// Copyright the @ocycle/core authors. MIT license.
// The entry of a thread-mode Worker. It imports the callback module once (so
// the module's top-level code is per-Worker set-up), then runs each chunk it
// is sent and replies with the result or the error; a throw or a rejection
// never ends the Worker. Borrowed chunk buffers travel back with the reply.
// `self.close()` and `Deno.exit()` are wrapped so that the parent hears about
// them: Deno itself gives the parent no event when a Worker ends itself.

import { loadCallback } from "./_dispatcher.ts";
import type { CallbackFunction } from "./_dispatcher.ts";
import {
  type ClosingMessage,
  type ErrorMessage,
  type InitMessage,
  type ParentMessage,
  type ResultMessage,
  type TaskMessage,
  toWireError,
  type WireError,
  type WorkerMessage,
} from "./_protocol.ts";
import {
  type TypedArray,
  type TypedArrayConstructor,
  typedArrayType,
} from "./_format.ts";

interface WorkerScope {
  postMessage(message: WorkerMessage, transfer?: Transferable[]): void;
  close(): void;
  onmessage: ((event: MessageEvent<ParentMessage>) => void) | null;
}

const scope = globalThis as unknown as WorkerScope;

function post(message: WorkerMessage, transfer?: Transferable[]): void {
  if (transfer === undefined) scope.postMessage(message);
  else scope.postMessage(message, transfer);
}

// Wrapped before the user's module is imported, so that it only ever sees
// the wrapped functions.
const close = scope.close.bind(scope);
scope.close = () => {
  post({ type: "closing", how: "self.close()" } satisfies ClosingMessage);
  close();
};
const exit = Deno.exit.bind(Deno);
Deno.exit = (code?: number): never => {
  const message: ClosingMessage = { type: "closing", how: "Deno.exit()" };
  if (code !== undefined) message.code = code;
  post(message);
  return exit(code);
};

let fn: CallbackFunction<unknown, unknown> | undefined;
let borrow = false;
/** The typed array type of bytes and samples; undefined for items and text. */
let type: TypedArrayConstructor<TypedArray> | undefined;
let channels = 1;
/** Tasks that arrived before the module was loaded. */
let early: TaskMessage[] | undefined = [];

scope.onmessage = (event) => {
  const message = event.data;
  if (message.type === "task") {
    if (early !== undefined) early.push(message);
    else run(message);
  } else if (message.type === "init") init(message);
};

async function init(message: InitMessage): Promise<void> {
  borrow = message.borrow;
  const format = message.format;
  if (format.kind === "bytes") type = Uint8Array;
  else if (format.kind === "samples") {
    type = typedArrayType(format.type);
    channels = format.channels;
    if (type === undefined) {
      post({
        type: "startup-error",
        error: toWireError(
          new TypeError(
            `Cannot rebuild samples in a Worker as '${format.type}' is not a typed array type`,
          ),
        ),
      });
      return;
    }
  }
  try {
    fn = await loadCallback(new URL(message.url), message.exportName);
  } catch (error) {
    post({ type: "startup-error", error: toWireError(error) });
    return;
  }
  post({ type: "ready" });
  const waiting = early ?? [];
  early = undefined;
  for (const task of waiting) run(task);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

function run(message: TaskMessage): void {
  const { id, info } = message;
  let chunk: unknown;
  let buffer: ArrayBuffer | undefined;
  if (type !== undefined) {
    buffer = message.chunk as ArrayBuffer;
    chunk = new type(buffer, 0, info.length * channels);
  } else chunk = message.chunk;
  let result: unknown;
  try {
    result = fn!(chunk, info.t0, info);
  } catch (error) {
    fail(id, error, buffer);
    return;
  }
  if (isThenable(result)) {
    result.then(
      (value) => succeed(id, value, buffer),
      (error) => fail(id, error, buffer),
    );
  } else succeed(id, result, buffer);
}

/** The buffer to send back, if the chunk was borrowed and is still whole. */
function returnable(buffer: ArrayBuffer | undefined): ArrayBuffer | undefined {
  // A callback that transferred the buffer elsewhere leaves it detached: the
  // parent then counts it as lost.
  return borrow && buffer !== undefined && !buffer.detached
    ? buffer
    : undefined;
}

function succeed(id: number, value: unknown, buffer?: ArrayBuffer): void {
  const back = returnable(buffer);
  const message: ResultMessage = { type: "result", id, value };
  const size = back?.byteLength ?? 0;
  try {
    if (back === undefined) post(message);
    else {
      message.buffer = back;
      post(message, [back]);
    }
  } catch (error) {
    // Deno detaches a transferred buffer even when the value then fails to
    // clone: send back a fresh buffer of the same size, so that the parent's
    // pool stays whole (its contents never matter: it is refilled).
    fail(
      id,
      new TypeError(
        `the callback's result cannot be sent back from the Worker: ${
          error instanceof Error ? error.message : String(error)
        }`,
      ),
      back !== undefined && back.detached ? new ArrayBuffer(size) : buffer,
    );
  }
}

function fail(id: number, error: unknown, buffer?: ArrayBuffer): void {
  const back = returnable(buffer);
  let wire: WireError;
  try {
    wire = toWireError(error);
  } catch {
    // A thrown value that cannot even be turned into text.
    wire = {
      name: "Error",
      message: "the callback threw an indescribable value",
    };
  }
  const message: ErrorMessage = { type: "error", id, error: wire };
  if (back === undefined) post(message);
  else {
    message.buffer = back;
    post(message, [back]);
  }
}
