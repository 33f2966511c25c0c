// Copyright the @ocycle/core authors. MIT license.
// What the pool (pool/_pool.ts) is given, and what it keeps of each chunk and
// of each worker.

import type { Outbox } from "./_outbox.ts";
import type { Job, Transport } from "./_transport.ts";

/**
 * Milliseconds a worker may take to start, and a chunk may wait for one to
 * start, by default: a module whose top-level code never finishes costs a
 * chunk this long, whatever the retries.
 */
export const START_TIMEOUT = 10_000;

/**
 * Milliseconds a worker may hold nothing, with nothing waiting, before it is
 * ended (and started again by the next chunk), by default.
 */
export const IDLE_TIMEOUT = 1000;

/** The pool's settings, checked by the emitter. */
export interface PoolOptions {
  /** Workers in the pool. */
  readonly pool: number;
  /** Chunks each worker may hold at once. */
  readonly concurrency: number;
  /** Milliseconds a chunk may run, from its start; Infinity for no limit. */
  readonly timeout: number;
  /** Workers in a row that may fail to start before every chunk fails. */
  readonly startAttempts?: number;
  /** Milliseconds a worker may take to load the callback module and say so. */
  readonly startTimeout?: number;
  /** Milliseconds a chunk may wait for a worker to start, at most. */
  readonly startDeadline?: number;
  /** Milliseconds an idle worker is kept; Infinity keeps it until close(). */
  readonly idleTimeout?: number;
  /**
   * What the emitter has written so far (a count that only grows): a worker
   * is ended as idle only if it did not move for the whole `idleTimeout`, so
   * a stream still being written (a microphone between two chunks, a sampler
   * dropping frames) keeps its Workers warm.
   */
  readonly activity?: (() => number) | undefined;
}

/** A chunk in the pool. */
export interface PoolJob<P> extends Job<P> {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The worker holding it, or undefined while it waits in the backlog. */
  worker: Worker<P> | undefined;
  /** Whether it was sent: it is in the worker, not in its outbox. */
  sent: boolean;
  settled: boolean;
}

/** Where a worker is in its life. */
export type State = "starting" | "ready" | "ending" | "dead";

export interface Worker<P> {
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
