// Copyright the @ocycle/core authors. MIT license.
// The pool's timers, kept apart from its rules (pool/_pool.ts), which decide
// what a timer that runs out means.
//
// A chunk's clock runs while it waits for a thread or child to start, and from
// its start once a slot holds it: only the oldest chunk a slot was sent has a
// clock, since the ones behind it start when it settles. A slot has
// `startTimeout` to say it is ready. A slot that has held nothing, with
// nothing waiting, for `idleTimeout` is ended, and the next chunk starts slots
// again: an idle pool holds nothing that keeps the program running.

import {
  IDLE_TIMEOUT,
  type PoolJob,
  type PoolOptions,
  type Slot,
  START_TIMEOUT,
} from "./_slot.ts";

/** What the pool is told when a timer runs out. */
export interface ClockEvents<P> {
  /** A chunk's clock ran out, in the backlog or in a slot. */
  expired(job: PoolJob<P>): void;
  /** A slot did not say it was ready within `ms`. */
  hung(slot: Slot<P>, ms: number): void;
  /** Whether the pool as a whole lets a slot rest: open, nothing waiting. */
  mayRest(): boolean;
  /** A slot was idle for `idleTimeout`: the pool ends it. */
  idle(slot: Slot<P>): void;
}

/** The timers of one pool's chunks and slots. */
export class Clock<P> {
  /** Milliseconds a chunk may run, from its start; Infinity for no limit. */
  readonly timeout: number;
  /** Milliseconds a chunk may wait for a slot to start, at most. */
  readonly startDeadline: number;
  readonly #startTimeout: number;
  readonly #idleTimeout: number;
  readonly #activity: (() => number) | undefined;
  readonly #events: ClockEvents<P>;

  constructor(options: PoolOptions, events: ClockEvents<P>) {
    this.timeout = options.timeout;
    this.startDeadline = options.startDeadline ?? START_TIMEOUT;
    this.#startTimeout = options.startTimeout ?? START_TIMEOUT;
    this.#idleTimeout = options.idleTimeout ?? IDLE_TIMEOUT;
    this.#activity = options.activity;
    this.#events = events;
  }

  /** A slot was started: it has `startTimeout` to say it is ready. */
  starting(slot: Slot<P>): void {
    const ms = this.#startTimeout;
    slot.startTimer = setTimeout(() => {
      slot.startTimer = undefined;
      if (slot.state === "starting") this.#events.hung(slot, ms);
    }, ms);
  }

  /** A slot said it is ready. */
  ready(slot: Slot<P>): void {
    clearTimeout(slot.startTimer);
    slot.startTimer = undefined;
  }

  /**
   * A chunk waits in the backlog. Its clock runs there, for `timeout` or the
   * start-up deadline, whichever is shorter: a slot whose module never
   * finishes loading must not leave it waiting for good.
   */
  waiting(job: PoolJob<P>): void {
    if (job.timer === undefined) {
      const ms = Math.min(this.timeout, this.startDeadline);
      job.timer = setTimeout(() => this.#expire(job), ms);
    }
  }

  /**
   * A chunk was given to a slot, which is no longer idle. From here its time
   * is counted in the slot: see `Slot.sent`.
   */
  assigned(slot: Slot<P>, job: PoolJob<P>): void {
    clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    this.stopChunk(job);
  }

  /** Starts the clock of the oldest chunk a slot was sent, if not yet. */
  run(slot: Slot<P>): void {
    if (this.timeout === Infinity) return;
    const first = slot.sent[0];
    if (first !== undefined && first.timer === undefined) {
      first.timer = setTimeout(() => this.#expire(first), this.timeout);
    }
  }

  /** The oldest chunk settled: the next one starts now, and so does its clock. */
  next(slot: Slot<P>, settled: PoolJob<P>): void {
    this.stopChunk(settled);
    this.run(slot);
  }

  /** A chunk's clock stops, wherever it runs. */
  stopChunk(job: PoolJob<P>): void {
    if (job.timer !== undefined) clearTimeout(job.timer);
    job.timer = undefined;
  }

  /** Stops every timer of a slot: its own and those of the chunks it was sent. */
  stop(slot: Slot<P>): void {
    clearTimeout(slot.startTimer);
    slot.startTimer = undefined;
    clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    for (const job of slot.sent) {
      clearTimeout(job.timer);
      job.timer = undefined;
    }
  }

  /**
   * Ends a slot once it has held nothing, with nothing waiting and nothing
   * written to the emitter, for `idleTimeout`: an idle pool holds no thread
   * or child, so a program that never calls close() still ends. A stream
   * still being written is not idle, however long between its chunks. The
   * next chunk starts slots again.
   */
  rest(slot: Slot<P>): void {
    if (
      slot.idleTimer !== undefined || this.#idleTimeout === Infinity ||
      slot.state !== "ready" || !this.#events.mayRest() ||
      slot.sent.length > 0 || (slot.outbox?.length ?? 0) > 0
    ) return;
    const written = this.#activity?.();
    slot.idleTimer = setTimeout(() => {
      slot.idleTimer = undefined;
      if (
        slot.state !== "ready" || slot.sent.length > 0 ||
        (slot.outbox?.length ?? 0) > 0
      ) return;
      // Written to meanwhile: more chunks are on their way.
      if (this.#activity?.() !== written) return this.rest(slot);
      this.#events.idle(slot);
    }, this.#idleTimeout);
  }

  #expire(job: PoolJob<P>): void {
    job.timer = undefined;
    this.#events.expired(job);
  }
}
