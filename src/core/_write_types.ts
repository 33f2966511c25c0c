// Copyright the @ocycle/core authors. MIT license.
// The types the write path (core/_write_path.ts) shares with the emitter and
// the options, and keeps of its own: types only, so nothing here is loaded.

import type { ChunkInfo } from "../chunk_info.ts";

/** How the write path cuts, checked by core/_options.ts. */
export interface CutSettings {
  /** The emitter's class name, for messages. */
  readonly owner: string;
  /** The chunk size, in elements. */
  readonly size: number;
  /** Elements between window starts. */
  readonly hop: number;
  readonly clip: boolean;
  readonly sampler: (() => number) | undefined;
  /** Milliseconds; Infinity for none. */
  readonly maxWait: number;
}

/** Receives each chunk the path cuts, with the pooled buffer behind it. */
export type Emit<C> = (chunk: C, info: ChunkInfo, buffer: unknown) => void;

/** Receives the error of a deferred write, whose caller has returned. */
export type Fail = (error: unknown) => void;

/** A write deferred while a chunk was being handed on: a copy of its data. */
export interface LaterWrite {
  readonly data: unknown;
  /** Its length, in scalars. */
  readonly n: number;
  readonly t0: number | undefined;
  readonly wall: boolean;
}

/** What was asked of the path while it was busy, in order. */
export type Later = LaterWrite | (() => void);

/** The part of a write not cut yet because the queue was full: a copy. */
export interface Rest {
  readonly data: unknown;
  /** Its length, in scalars. */
  readonly n: number;
  /** The absolute offset of its first element. */
  readonly start: number;
  /** The write's timestamp, if it needed one. */
  readonly stamp: number | undefined;
  /** The write's own clock for the sampler. */
  readonly own: number | undefined;
}

/**
 * Says whether the queue has room for another chunk: `undefined` when it
 * has, else the error for a writer that goes on regardless.
 */
export type Room = () => Error | undefined;

/**
 * Where the path's chunks go: the queue (core/_queue.ts), one object rather
 * than a closure per call, so that an emitter holds no closures for them.
 */
export interface Sink<C> {
  /** Receives each chunk the path cuts, with the pooled buffer behind it. */
  submit(chunk: C, info: ChunkInfo, buffer: unknown): void;
  /** Receives the error of a deferred write, whose caller has returned. */
  report(error: unknown): void;
  /** Whether another chunk may be queued (see {@linkcode Room}). */
  room(): Error | undefined;
}
