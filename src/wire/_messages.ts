// Copyright the @ocycle/core authors. MIT license.
// The messages between the parent and a Worker or a child process, typed once.
// Thread mode posts these objects (chunk bytes transferred, not copied);
// process mode sends the same messages as frames (wire/_framing.ts) whose
// bodies wire/_values.ts encodes.

import type { ChunkInfo } from "../chunk_info.ts";
import { INFO_NUMBERS, readInfo, writeInfo } from "./_chunk_info.ts";
import type { ChunkLayout } from "./_layout.ts";

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
  layout: ChunkLayout;
  /** Whether chunk buffers must be sent back for reuse. */
  borrow: boolean;
  /**
   * Process mode: variables the child got for Deno itself (its cache,
   * proxies), to delete before the callback module loads, so that the
   * callback sees only the environment it was given.
   */
  hideEnv?: string[];
  /**
   * Process mode, when the child inherited the parent's whole environment
   * (the parent may not read Deno's own variables to pass them one by one):
   * the only variables to keep, the `env` it was given. Every other variable
   * the child can see is deleted before the callback module loads.
   */
  keepEnv?: string[];
  /**
   * Thread mode: post each reply as soon as its callback settles instead of
   * batching the replies of one turn. Set when a timeout is in force, so that
   * a callback that hangs cannot hold back the results that came before it.
   */
  replyAtOnce?: boolean;
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
  /** The task's id, unique per pool, so that a reply can only settle its own chunk. */
  id: number;
  value: unknown;
  /** The chunk's ArrayBuffer, sent back for reuse when the chunk was borrowed. */
  buffer?: ArrayBuffer;
}

/** A chunk's callback threw or rejected. */
export interface ErrorMessage {
  type: "error";
  /** The task's id. */
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
 * Thread mode: one or more chunks in one message. Under load the cost of a
 * message, not of the bytes (they are transferred), bounds the rate, so the
 * parent sends the chunks a busy Worker gets in one go, and packs their ids
 * and infos as plain numbers.
 */
export interface TaskBatchMessage {
  type: "tasks";
  /** {@linkcode TASK_NUMBERS} numbers per chunk, written by {@linkcode packTask}. */
  meta: number[];
  /**
   * The chunks, in the same order. Bytes and samples: the chunk's transferred
   * ArrayBuffer, holding `info.length * channels` elements from offset 0.
   * Items and text: the chunk itself.
   */
  chunks: unknown[];
}

/** Numbers per chunk in a batch's `meta`: the id, then the info. */
const TASK_NUMBERS = 1 + INFO_NUMBERS;

/** Appends a chunk's id and info to a batch's `meta`. */
export function packTask(meta: number[], id: number, info: ChunkInfo): void {
  const at = meta.length;
  meta[at] = id;
  writeInfo(info, meta, at + 1);
}

/** The id of the `k`th chunk of a batch. */
export function taskId(meta: readonly number[], k: number): number {
  return meta[k * TASK_NUMBERS]!;
}

/** The info of the `k`th chunk of a batch. */
export function taskInfo(meta: readonly number[], k: number): ChunkInfo {
  return readInfo(meta, k * TASK_NUMBERS + 1);
}

/** Thread mode: the replies of chunks that settled together. */
export interface ReplyBatchMessage {
  type: "replies";
  replies: (ResultMessage | ErrorMessage)[];
}

/** From a Worker or child: what both send. */
export type ChildMessage =
  | ReadyMessage
  | StartupErrorMessage
  | ResultMessage
  | ErrorMessage;

/** From a Worker: what a child sends, the notice that it is ending itself, and batches. */
export type WorkerMessage = ChildMessage | ClosingMessage | ReplyBatchMessage;

/** From the parent to a Worker: the init message, then batches of chunks. */
export type WorkerParentMessage = InitMessage | TaskBatchMessage;

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
