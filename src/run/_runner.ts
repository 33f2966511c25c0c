// Copyright the @ocycle/core authors. MIT license.
// The seam between the emitter and the modes. The emitter cuts chunks and
// keeps the queue; a runner runs the chunks it is given, at most `capacity` at
// once, and says how each went. Serial mode is a runner of its own; thread and
// process modes are one pool (pool/_pool.ts) over a transport each. This file
// imports no mode: run/_factory.ts picks one.

import type { ChunkInfo } from "../chunk_info.ts";

/** One chunk on its way to the callback. */
export interface Task<C> {
  /** The chunk as the callback sees it. */
  readonly chunk: C;
  /** The chunk's info. */
  readonly info: ChunkInfo;
  /**
   * The pooled buffer behind the chunk, which the emitter recycles once the
   * task settles; `undefined` when there is nothing to recycle. A transport
   * that moves the buffer away sets this to the buffer it got back, or to
   * `undefined` and `lost` to `true` when the buffer died with a thread.
   */
  buffer: unknown;
  /** Set by a transport when the buffer could not be got back. */
  lost: boolean;
  /** Whether the callback owns the chunk (`borrow: false`). */
  readonly owned: boolean;
}

/** What every runner reports in `stats`. */
export interface RunnerCounts {
  /** Threads or children alive now. */
  readonly workers: number;
  /** Threads or children started to replace one that crashed or timed out. */
  readonly replaced: number;
  /** Attempts run again after a crash or a timeout (`retries`); only the retrying runner counts them. */
  readonly retried?: number;
}

/** Runs chunks. The emitter never has more than `capacity` of them running at once. */
export interface Runner<C, R> {
  /** How many chunks may run at once. */
  readonly capacity: number;
  /**
   * Whether the callback gets a copy of the chunk's bytes (a child process
   * reads them from a pipe), so that the buffer can be recycled even when
   * the chunk is owned.
   */
  readonly copies: boolean;
  /** Runs one chunk; rejects (or throws) with the callback's error or a ChunkError. */
  run(task: Task<C>): R | Promise<R>;
  /** Called once every task has settled: ends threads and children. */
  close(): Promise<void>;
  /** Stops now: every running task rejects with a ChunkError of kind "aborted". */
  abort(reason: unknown): Promise<void>;
  /** Live counts for `stats`. */
  counts(): RunnerCounts;
}

/** The message of an error, or the value as text. */
export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** An error as `Name: message`, or the value as text. */
export function describe(value: unknown): string {
  return value instanceof Error
    ? `${value.name}: ${value.message}`
    : String(value);
}

/** Says something on stderr that no chunk can carry. */
export function warn(who: string, text: string): void {
  try {
    Deno.stderr.writeSync(
      new TextEncoder().encode(`[ocycle ${who}] ${text}\n`),
    );
  } catch {
    // The parent's stderr is gone.
  }
}
