// Copyright the @ocycle/core authors. MIT license.
// What the pool (pool/_pool.ts) is given, and what it keeps of each chunk and
// of each slot: its record of one thread (a Web Worker) or one child process.

import type { Outbox } from "./_outbox.ts";
import type { Job, Transport } from "./_transport.ts";

/**
 * Milliseconds a thread or child may take to start, and a chunk may wait for
 * one to start, by default: a module whose top-level code never finishes
 * costs a chunk this long, whatever the retries.
 */
export const START_TIMEOUT = 10_000;

/**
 * Milliseconds a thread or child may hold nothing, with nothing waiting,
 * before it is ended (and started again by the next chunk), by default.
 */
export const IDLE_TIMEOUT = 1000;

/** The pool's settings, checked by the emitter. */
export interface PoolOptions {
  /** Threads or children in the pool. */
  readonly pool: number;
  /** Chunks each thread or child may hold at once. */
  readonly concurrency: number;
  /** Milliseconds a chunk may run, from its start; Infinity for no limit. */
  readonly timeout: number;
  /** Threads or children in a row that may fail to start before every chunk fails. */
  readonly startAttempts?: number;
  /** Milliseconds a thread or child may take to load the callback module and say so. */
  readonly startTimeout?: number;
  /** Milliseconds a chunk may wait for a thread or child to start, at most. */
  readonly startDeadline?: number;
  /** Milliseconds an idle thread or child is kept; Infinity keeps it until close(). */
  readonly idleTimeout?: number;
  /**
   * What the emitter has written so far (a count that only grows): a slot
   * is ended as idle only if it did not move for the whole `idleTimeout`, so
   * a stream still being written (a microphone between two chunks, a sampler
   * dropping frames) keeps its threads and children warm.
   */
  readonly activity?: (() => number) | undefined;
}

/** A chunk in the pool. */
export interface PoolJob<P> extends Job<P> {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The slot holding it, or undefined while it waits in the backlog. */
  slot: Slot<P> | undefined;
  /** Whether it was sent: it is in the thread or child, not in its outbox. */
  sent: boolean;
  settled: boolean;
}

/** Where a slot is in its life. */
export type State = "starting" | "ready" | "ending" | "dead";

/** The pool's record of one thread or child: its transport, its chunks, its timers. */
export interface Slot<P> {
  readonly index: number;
  transport: Transport<P>;
  state: State;
  /** Chunks sent to it, oldest first; only the first one's clock runs. */
  sent: PoolJob<P>[];
  /** With a batching transport: chunks for it that leave together. */
  readonly outbox: Outbox<PoolJob<P>> | undefined;
  startTimer: ReturnType<typeof setTimeout> | undefined;
  /** Runs while it holds nothing and nothing waits: see `idleTimeout`. */
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set once it was ended for being idle, not for a fault. */
  rested?: boolean;
}
