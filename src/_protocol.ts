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
}

/** A chunk to run. */
export interface TaskMessage {
  type: "task";
  /** Unique per dispatcher, so that a reply can only settle its own chunk. */
  id: number;
  info: ChunkInfo;
  /**
   * Bytes and samples: the chunk's ArrayBuffer (transferred in thread mode),
   * holding `info.length * channels` elements from offset 0. Items and text:
   * the chunk itself.
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

/** From the parent. */
export type ParentMessage = InitMessage | TaskMessage;
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
