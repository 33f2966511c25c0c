// Copyright the @ocycle/core authors. MIT license.
// All the pool (pool/_pool.ts) knows of a mode: how to start one thread or
// child, send it chunks, end it and kill it, and what it says back. Thread
// mode (pool/_thread.ts) and process mode (pool/_process.ts) each implement it;
// what really differs between them is said here as properties, never as a
// second pool.

import type { ChunkErrorKind } from "../chunk_error.ts";
import type { Mode } from "../chunk_info.ts";
import type { ChunkLayout } from "../wire/_layout.ts";
import type { Task } from "../run/_runner.ts";

/** What every thread or child needs to know: which module to run, and how. */
export interface RemoteSettings {
  /** The emitter's class name, for messages. */
  readonly owner: string;
  /** The URL of the callback module. */
  readonly url: URL;
  /** The name of the module's export that is the callback. */
  readonly exportName: string;
  /** How chunks are rebuilt on the other side. */
  readonly layout: ChunkLayout;
  /** Whether a borrowed buffer must come back. */
  readonly borrow: boolean;
  /** Milliseconds a chunk may run, from its start; Infinity for no limit. */
  readonly timeout: number;
  /**
   * Attempts after the first for a chunk that crashed or timed out: when
   * above 0, the bytes of a chunk must outlive a thread that dies with them.
   */
  readonly retries?: number;
}

/** A chunk given to a transport: its id (unique in the pool), its task and what `prepare` made of it. */
export interface Job<P> {
  readonly id: number;
  readonly task: Task<unknown>;
  readonly payload: P;
}

/** A chunk a transport could not send, and why. */
export interface Unsent<P> {
  readonly job: Job<P>;
  readonly error: unknown;
}

/** How a thread or child ended, as far as the parent can tell. */
export interface Exit {
  /** For messages, such as " (child 0, killed by SIGKILL)"; "" when there is nothing to add. */
  readonly text: string;
  /** The exit code of a process, if it was one. */
  readonly exitCode?: number | null;
  /** The signal that ended a process, if any. */
  readonly signal?: string | null;
}

/** What a fault is, as a transport sees it. */
export type FaultKind = Extract<ChunkErrorKind, "crash" | "protocol"> | "load";

/** What a transport tells the pool. Calls about a thread the pool has ended are ignored. */
export interface TransportEvents {
  /** The callback module is loaded: chunks may come. */
  ready(): void;
  /**
   * A chunk settled: `value` is its result, or (`failed`) what the callback
   * threw. A borrowed chunk's buffer comes back as `buffer`.
   */
  settled(id: number, failed: boolean, value: unknown, buffer?: unknown): void;
  /** The replies read in one go are all in: the pool sends more. */
  flushed(): void;
  /**
   * It broke: it crashed, broke the protocol, or (`"load"`) could not load
   * the callback module. The pool kills it and settles what it held.
   */
  fault(kind: FaultKind, detail: string, cause?: unknown): void;
}

/**
 * The process groups of a pool's children and commands. A transport starts
 * each process in a group of its own through pool/_spawn.ts, which says so
 * with `watch`, and ends it with `kill`, leader and leftovers alike; the
 * pool's watchdog kills every group still watched if the parent dies.
 */
export interface Groups {
  /** A process was started as the leader of group `pid`: watch it. */
  watch(pid: number): void;
  /** Kills group `pid` now, whatever is left of it, and stops watching it. */
  kill(pid: number): void;
}

/** One running thread or child. */
export interface Transport<P> {
  /** Sends chunks, in order; returns those that could not be sent. */
  send(jobs: readonly Job<P>[]): Unsent<P>[] | undefined;
  /** Ends it once it holds no chunk; resolves once it is gone. */
  end(): Promise<void>;
  /** Kills it now. */
  kill(): void;
  /** Resolves once it is gone and nothing more will come from it. */
  readonly gone: Promise<Exit>;
  /** The last lines it wrote to stderr, for errors; "" when there are none. */
  stderr(): string;
}

/** One mode of the pool: everything that differs between thread and process modes. */
export interface TransportKind<P> {
  readonly mode: Mode;
  /** What one of them is called in messages: "Worker", "child". */
  readonly noun: string;
  /** The plural of `noun`. */
  readonly nouns: string;
  /** Whether the callback gets a copy of the bytes, so the buffer stays in the parent. */
  readonly copies: boolean;
  /**
   * Whether one runs its chunks one at a time, so that only the oldest it
   * holds has started: a crash or a timeout then takes down that chunk only,
   * and the chunks behind it go to another. Otherwise every chunk it was sent
   * has started, and goes down with it.
   */
  readonly oneAtATime: boolean;
  /**
   * Whether chunks for a busy one wait in an outbox and leave in batches:
   * worth it where a message, not its bytes, is what costs.
   */
  readonly batches: boolean;
  /** While the kind cannot run yet (it loads a codec): resolves when it can. */
  loading(): Promise<void> | undefined;
  /** Turns a task into what `send` takes. Throws to fail the chunk. */
  prepare(task: Task<unknown>): P;
  /**
   * Puts a buffer that came back from a thread under the task again, so
   * that the emitter recycles it.
   */
  takeBack(task: Task<unknown>, buffer: unknown): void;
  /**
   * Starts one, numbered `index` in messages; any process it starts goes in
   * `groups`. Throws if it cannot be started at all.
   */
  start(index: number, events: TransportEvents, groups: Groups): Transport<P>;
}
