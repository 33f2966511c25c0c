// Copyright the @ocycle/core authors. MIT license.
// The thread entry: what each thread-mode Worker runs. It imports the callback
// module once (so the module's top-level code is per-thread set-up), then runs
// each chunk it is sent and replies with the result or the error; a throw or a
// rejection never ends the thread. Borrowed chunk buffers travel back with the
// reply. `self.close()` and `Deno.exit()` are wrapped so that the parent hears
// about them: Deno itself gives the parent no event when a thread ends itself.

import type { Callback, ChunkInfo } from "../chunk_info.ts";
import {
  type ClosingMessage,
  type ErrorMessage,
  type InitMessage,
  type ReplyBatchMessage,
  type ResultMessage,
  type TaskBatchMessage,
  taskId,
  taskInfo,
  toWireError,
  type WireError,
  type WorkerMessage,
  type WorkerParentMessage,
} from "../wire/_messages.ts";
import {
  layoutType,
  type TypedArray,
  type TypedArrayConstructor,
} from "../wire/_layout.ts";
import { isThenable, loadCallback } from "../run/_load_callback.ts";

interface WorkerScope {
  postMessage(message: WorkerMessage, transfer?: Transferable[]): void;
  close(): void;
  onmessage: ((event: MessageEvent<WorkerParentMessage>) => void) | null;
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
  flush();
  post({ type: "closing", how: "self.close()" } satisfies ClosingMessage);
  close();
};
const exit = Deno.exit.bind(Deno);
Deno.exit = (code?: number): never => {
  const message: ClosingMessage = { type: "closing", how: "Deno.exit()" };
  if (code !== undefined) message.code = code;
  flush();
  post(message);
  return exit(code);
};

let fn: Callback<unknown, unknown> | undefined;
let borrow = false;
let replyAtOnce = false;
/** The typed array type of bytes and samples; undefined for items and text. */
let type: TypedArrayConstructor<TypedArray> | undefined;
let channels = 1;
/** Batches that arrived before the module was loaded. */
let early: TaskBatchMessage[] | undefined = [];

scope.onmessage = (event) => {
  const message = event.data;
  if (message.type === "tasks") {
    if (early !== undefined) early.push(message);
    else runAll(message);
  } else if (message.type === "init") init(message);
};

async function init(message: InitMessage): Promise<void> {
  borrow = message.borrow;
  replyAtOnce = message.replyAtOnce ?? false;
  const layout = message.layout;
  if (layout.kind === "samples") channels = layout.channels;
  try {
    type = layoutType(layout);
    fn = await loadCallback(message.url, message.exportName);
  } catch (error) {
    post({ type: "startup-error", error: toWireError(error) });
    return;
  }
  post({ type: "ready" });
  const waiting = early ?? [];
  early = undefined;
  for (const batch of waiting) runAll(batch);
}

function runAll(batch: TaskBatchMessage): void {
  const { meta, chunks } = batch;
  for (let k = 0; k < chunks.length; k++) {
    run(taskId(meta, k), taskInfo(meta, k), chunks[k]);
  }
}

function run(id: number, info: ChunkInfo, sent: unknown): void {
  let chunk: unknown;
  let buffer: ArrayBuffer | undefined;
  if (type !== undefined) {
    buffer = sent as ArrayBuffer;
    chunk = new type(buffer, 0, info.length * channels);
  } else chunk = sent;
  let result: unknown;
  const started = performance.now();
  if (replies.length === 0) heldFrom = started;
  try {
    result = fn!(chunk, info.t0, info);
  } catch (error) {
    fail(id, error, buffer);
    settled(started);
    return;
  }
  if (isThenable(result)) {
    result.then(
      (value) => succeed(id, value, buffer),
      (error) => fail(id, error, buffer),
    );
  } else {
    succeed(id, result, buffer);
    settled(started);
  }
}

/**
 * Milliseconds a reply may wait for the rest of its batch. The replies to the
 * chunks of one message leave together, which saves the parent a wake-up per
 * chunk; with slow callbacks the parent has already sent the next batch, so
 * the thread never waits for it. A long batch must not hold results back for
 * longer than this.
 */
const HOLD_MS = 5;
/** When the callback of the oldest reply still held started. */
let heldFrom = 0;

/**
 * After a synchronous callback that started at `started`: sends the replies
 * held unless the next callback, if it takes as long as this one, still ends
 * within HOLD_MS of the oldest.
 */
function settled(started: number): void {
  const now = performance.now();
  if (replyAtOnce || 2 * now - started - heldFrom > HOLD_MS) flush();
}

/** The buffer to send back, if the chunk was borrowed and is still whole. */
function returnable(buffer: ArrayBuffer | undefined): ArrayBuffer | undefined {
  // A callback that transferred the buffer elsewhere leaves it detached: the
  // parent then counts it as lost.
  return borrow && buffer !== undefined && !buffer.detached
    ? buffer
    : undefined;
}

type Reply = ResultMessage | ErrorMessage;

// Replies that settle in the same turn (the chunks of one message) leave in
// one message, which is what keeps the cost per chunk low under load, up to
// HOLD_MS. Without a timeout a callback that hangs leaves the thread stuck for
// good, so holding back the replies before it loses nothing; with one,
// `replyAtOnce` posts each reply as it comes.
let replies: Reply[] = [];
let transfers: ArrayBuffer[] = [];
/** The byte length of each reply's buffer, 0 when there is none. */
let sizes: number[] = [];

function reply(message: Reply, back: ArrayBuffer | undefined): void {
  if (back !== undefined) {
    message.buffer = back;
    transfers.push(back);
  }
  replies.push(message);
  sizes.push(back?.byteLength ?? 0);
  if (replyAtOnce) flush();
  else if (replies.length === 1) queueMicrotask(flush);
}

function flush(): void {
  if (replies.length === 0) return;
  const batch = replies, transfer = transfers, lengths = sizes;
  replies = [];
  transfers = [];
  sizes = [];
  try {
    if (batch.length === 1) post(batch[0]!, transfer);
    else {
      post(
        { type: "replies", replies: batch } satisfies ReplyBatchMessage,
        transfer,
      );
    }
  } catch {
    // A result that cannot be cloned. Deno has detached every buffer of the
    // batch all the same: send each reply alone, with fresh buffers of the
    // same sizes (their contents never matter, the parent refills them).
    for (let i = 0; i < batch.length; i++) {
      const message = batch[i]!;
      const size = lengths[i]!;
      const fresh = () =>
        message.buffer === undefined
          ? undefined
          : message.buffer.detached
          ? new ArrayBuffer(size)
          : message.buffer;
      let back = fresh();
      if (back !== undefined) message.buffer = back;
      try {
        post(message, back === undefined ? [] : [back]);
      } catch (error) {
        back = fresh();
        const failed: ErrorMessage = {
          type: "error",
          id: message.id,
          error: toWireError(
            new TypeError(
              `the callback's result cannot be sent back from the Worker: ${
                error instanceof Error ? error.message : String(error)
              }`,
            ),
          ),
        };
        if (back !== undefined) failed.buffer = back;
        post(failed, back === undefined ? [] : [back]);
      }
    }
  }
}

function succeed(id: number, value: unknown, buffer?: ArrayBuffer): void {
  reply({ type: "result", id, value }, returnable(buffer));
}

function fail(id: number, error: unknown, buffer?: ArrayBuffer): void {
  let wire: WireError;
  try {
    wire = toWireError(error);
  } catch {
    // A thrown value that cannot even be turned into text.
    wire = {
      name: "Error",
      message: "the callback threw a value that cannot be described",
    };
  }
  reply({ type: "error", id, error: wire }, returnable(buffer));
}
