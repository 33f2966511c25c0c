// Copyright the @ocycle/core authors. MIT license.
// The one pool behind thread and process modes: placement, per-slot
// concurrency and batching, start-up attempts, the timeout clock, crash
// handling, requeue, abort and close, written once. A slot is the pool's
// record of one thread (a Web Worker) or one child process, reached through a
// transport (pool/_transport.ts). Its timers (a chunk's clock, a slot's
// start-up and idle timers) are pool/_clock.ts.
//
// A chunk goes to the ready slot that holds the fewest chunks; while none
// can take it, it waits in the backlog. Each slot holds up to `concurrency`
// chunks, so that the next one travels while the current one runs.
//
// A slot that breaks (it crashes, breaks the protocol, or its oldest chunk
// times out) is killed; once it is gone, the chunks it had started fail with
// what is known of its end, those it had not started go to another slot, and
// a new slot takes its place. Slots that fail to start are retried a
// bounded number of times in a row; then every chunk fails with the start-up
// error.
//
// Processes (children, commands) each run in a process group of their own,
// watched by the pool's watchdog (pool/_groups.ts), which starts with the first
// of them and ends once close() has seen the last one go.

import { ChunkError, type ChunkErrorOptions } from "../chunk_error.ts";
import type { ChunkInfo } from "../chunk_info.ts";
import {
  describe,
  message,
  type Runner,
  type RunnerCounts,
  type Task,
  warn,
} from "../run/_runner.ts";
import {
  exitOptions,
  type Fault,
  hungDetail,
  type Names,
  startedError,
  type StartFailure,
  startupDetail,
  timeoutDetail,
  waitedError,
} from "../run/_faults.ts";
import { Clock } from "./_clock.ts";
import { ProcessGroups } from "./_groups.ts";
import { Outbox } from "./_outbox.ts";
import type { PoolJob, PoolOptions, Slot } from "./_slot.ts";
import type {
  FaultKind,
  Transport,
  TransportEvents,
  TransportKind,
} from "./_transport.ts";

/** Runs chunks in a pool of slots, each reached through a transport. */
export class Pool<P> implements Runner<unknown, unknown> {
  readonly capacity: number;
  readonly copies: boolean;
  readonly #kind: TransportKind<P>;
  readonly #names: Names;
  readonly #pool: number;
  readonly #concurrency: number;
  readonly #startAttempts: number;
  readonly #clock: Clock<P>;
  readonly #groups = new ProcessGroups();
  /** Slots starting, ready, or killed and not yet gone. */
  #slots: Slot<P>[] = [];
  #backlog: PoolJob<P>[] = [];
  #nextId = 0;
  #state: "open" | "closing" | "aborted" = "open";
  #abortReason: unknown;
  #replaced = 0;
  /** Slots that died or hung and are still to be replaced. */
  #owed = 0;
  #startFailures = 0;
  #broken: { detail: string; options: ChunkErrorOptions } | undefined;

  constructor(kind: TransportKind<P>, options: PoolOptions) {
    this.#kind = kind;
    this.#pool = options.pool;
    this.#concurrency = options.concurrency;
    this.#startAttempts = options.startAttempts ?? 3;
    this.#clock = new Clock(options, {
      expired: (job) => this.#onTimeout(job),
      hung: (slot, ms) =>
        this.#fault(
          slot,
          "startup",
          hungDetail(this.#names, ms),
          undefined,
          "hung",
        ),
      mayRest: () => this.#state === "open" && this.#backlog.length === 0,
      idle: (slot) => {
        slot.state = "ending";
        slot.rested = true;
        slot.transport.end();
      },
    });
    this.capacity = options.pool * options.concurrency;
    this.#names = {
      noun: kind.noun,
      nouns: kind.nouns,
      timeout: options.timeout,
    };
    this.copies = kind.copies;
  }

  run(task: Task<unknown>): Promise<unknown> {
    const refused = this.#refusal(task.info);
    if (refused !== undefined) return Promise.reject(refused);
    const loading = this.#kind.loading();
    if (loading !== undefined) return loading.then(() => this.run(task));
    let payload: P;
    try {
      payload = this.#kind.prepare(task);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const job: PoolJob<P> = {
        id: this.#nextId = (this.#nextId % 0xfffffffe) + 1,
        task,
        payload,
        resolve,
        reject,
        timer: undefined,
        slot: undefined,
        sent: false,
        settled: false,
      };
      // Slots start on demand: all of them at first, and again once idle
      // ones have ended, but never while a ready one has room.
      let slot = this.#pick();
      if (slot === undefined) {
        this.#fill();
        // None could be started at all: no use waiting for one.
        if (this.#broken !== undefined) {
          return reject(this.#startupError(task.info));
        }
        slot = this.#pick();
      }
      if (slot === undefined) this.#wait(job);
      else this.#assign(slot, job);
    });
  }

  async close(): Promise<void> {
    if (this.#state === "open") this.#state = "closing";
    const ending: Promise<unknown>[] = [];
    for (const slot of this.#slots) {
      if (slot.state === "dead") ending.push(slot.transport.gone);
      else if (slot.state === "starting") {
        // It holds nothing, and its module may never finish loading.
        this.#clock.stop(slot);
        slot.state = "dead";
        slot.transport.kill();
        ending.push(slot.transport.gone);
      } else {
        this.#clock.stop(slot);
        slot.state = "ending";
        ending.push(slot.transport.end());
      }
    }
    await Promise.all(ending);
    // A slot killed just before may still be on its way out.
    while (this.#slots.length > 0) {
      await Promise.all(this.#slots.map((s) => s.transport.gone));
    }
    await this.#groups.close();
  }

  async abort(reason: unknown): Promise<void> {
    if (this.#state !== "aborted") {
      this.#state = "aborted";
      this.#abortReason = reason;
      for (const job of this.#backlog.splice(0)) {
        this.#settle(
          job,
          this.#aborted(job, ` before a ${this.#kind.noun} took the chunk`),
        );
      }
      for (const slot of this.#slots) {
        if (slot.state !== "dead") {
          this.#clock.stop(slot);
          slot.state = "dead";
          slot.transport.kill();
        }
        for (const job of [...slot.sent, ...slot.outbox?.clear() ?? []]) {
          this.#settle(
            job,
            this.#aborted(
              job,
              job.sent
                ? ` while the chunk ran: its ${this.#kind.noun} was terminated`
                : ` before a ${this.#kind.noun} took the chunk`,
            ),
          );
        }
        slot.sent = [];
      }
    }
    await this.close();
  }

  counts(): RunnerCounts {
    let alive = 0;
    for (const slot of this.#slots) if (slot.state !== "dead") alive++;
    return { workers: alive, replaced: this.#replaced };
  }

  /** Why a new chunk cannot run, if it cannot. */
  #refusal(info: ChunkInfo): ChunkError | undefined {
    if (this.#state === "aborted") {
      return this.#error(
        "aborted",
        info,
        `the emitter was aborted: ${message(this.#abortReason)}`,
        { cause: this.#abortReason },
      );
    }
    if (this.#broken !== undefined) return this.#startupError(info);
    if (this.#state === "closing") {
      return this.#error("aborted", info, "the pool was already closed");
    }
    return undefined;
  }

  // ---- placement ----

  /** Starts slots up to `pool`. */
  #fill(): void {
    while (
      this.#slots.length < this.#pool && this.#state === "open" &&
      this.#broken === undefined
    ) {
      if (!this.#spawn()) return;
    }
  }

  #spawn(): boolean {
    const used = new Set(this.#slots.map((s) => s.index));
    let index = 0;
    while (used.has(index)) index++;
    const slot: Slot<P> = {
      index,
      transport: undefined as unknown as Transport<P>,
      state: "starting",
      sent: [],
      idleTimer: undefined,
      outbox: this.#kind.batches
        ? new Outbox(this.#concurrency, (jobs) => {
          if (slot.state === "ready") this.#send(slot, jobs);
        })
        : undefined,
      startTimer: undefined,
    };
    try {
      slot.transport = this.#kind.start(
        index,
        this.#events(slot),
        this.#groups,
      );
    } catch (error) {
      // Most often: the parent lacks the permission to start one at all.
      this.#break(
        `a ${this.#kind.noun} could not be started: ${describe(error)}`,
        { cause: error },
      );
      return false;
    }
    if (this.#owed > 0) {
      this.#owed--;
      this.#replaced++;
    }
    this.#slots.push(slot);
    this.#clock.starting(slot);
    slot.transport.gone.then(() => this.#onGone(slot));
    return true;
  }

  #events(slot: Slot<P>): TransportEvents {
    return {
      ready: () => this.#onReady(slot),
      settled: (id, failed, value, buffer) =>
        this.#onSettled(slot, id, failed, value, buffer),
      flushed: () => this.#onFlushed(slot),
      fault: (kind, detail, cause) => this.#onFault(slot, kind, detail, cause),
    };
  }

  /** The ready slot with the fewest chunks and room for one more. */
  #pick(): Slot<P> | undefined {
    let best: Slot<P> | undefined;
    let load = this.#concurrency;
    for (const slot of this.#slots) {
      const held = slot.sent.length + (slot.outbox?.length ?? 0);
      if (slot.state === "ready" && held < load) {
        best = slot;
        load = held;
        if (load === 0) break;
      }
    }
    return best;
  }

  /** Puts a chunk in the backlog, at the back or the front; its clock runs. */
  #wait(job: PoolJob<P>, front = false): void {
    job.slot = undefined;
    job.sent = false;
    if (front) this.#backlog.unshift(job);
    else this.#backlog.push(job);
    this.#clock.waiting(job);
  }

  /** Sends waiting chunks to ready slots. */
  #drain(): void {
    while (this.#backlog.length > 0) {
      const slot = this.#pick();
      if (slot === undefined) return;
      this.#assign(slot, this.#backlog.shift()!);
    }
  }

  /** Gives a chunk to a ready slot: at once, or via its outbox. */
  #assign(slot: Slot<P>, job: PoolJob<P>): void {
    this.#clock.assigned(slot, job);
    job.slot = slot;
    if (slot.outbox === undefined) this.#send(slot, [job]);
    else slot.outbox.push(job, slot.sent.length);
  }

  #send(slot: Slot<P>, jobs: PoolJob<P>[]): void {
    const unsent = slot.transport.send(jobs);
    slot.outbox?.sending(slot.sent.length);
    for (const job of jobs) {
      if (unsent?.some((u) => u.job === job)) continue;
      job.sent = true;
      slot.sent.push(job);
    }
    this.#clock.run(slot);
    if (unsent === undefined) return;
    for (const { job, error } of unsent) {
      this.#settle(
        job as PoolJob<P>,
        this.#error(
          "callback",
          job.task.info,
          `the chunk could not be sent to a ${this.#kind.noun}: ${
            message(error)
          }`,
          { cause: error },
        ),
      );
    }
    this.#drain();
  }

  // ---- what a slot's thread or child says ----

  #onReady(slot: Slot<P>): void {
    if (slot.state === "ending" || slot.state === "dead") return;
    if (slot.state !== "starting") {
      return this.#fault(slot, "protocol", "an unexpected ready message");
    }
    slot.state = "ready";
    this.#clock.ready(slot);
    this.#startFailures = 0;
    this.#drain();
    this.#clock.rest(slot);
  }

  #onSettled(
    slot: Slot<P>,
    id: number,
    failed: boolean,
    value: unknown,
    buffer: unknown,
  ): void {
    if (slot.state === "dead") return;
    const sent = slot.sent;
    const at = sent[0]?.id === id ? 0 : sent.findIndex((job) => job.id === id);
    if (at === -1) {
      return this.#fault(
        slot,
        "protocol",
        `the ${this.#kind.noun} broke the protocol: a reply for unknown task id ${id}`,
      );
    }
    const job = sent[at]!;
    sent.splice(at, 1);
    slot.outbox?.replied();
    if (at === 0) this.#clock.next(slot, job);
    if (buffer !== undefined && !job.task.owned) {
      this.#kind.takeBack(job.task, buffer);
    }
    if (!failed) this.#settle(job, undefined, value);
    else {
      this.#settle(
        job,
        value instanceof ChunkError ? value : this.#error(
          "callback",
          job.task.info,
          `the callback threw: ${message(value)}`,
          { cause: value, stderr: slot.transport.stderr() },
        ),
      );
    }
    this.#clock.rest(slot);
  }

  #onFlushed(slot: Slot<P>): void {
    if (slot.state !== "ready") return;
    slot.outbox?.turn(slot.sent.length);
    if (this.#backlog.length > 0) this.#drain();
    this.#clock.rest(slot);
  }

  #onFault(
    slot: Slot<P>,
    kind: FaultKind,
    detail: string,
    cause: unknown,
  ): void {
    if (slot.state === "ending") {
      // It was told to end: a load error or a crash now costs nothing.
      return;
    }
    if (kind === "load") this.#fault(slot, "startup", detail, cause, "load");
    else this.#fault(slot, kind, detail, cause);
  }

  // ---- timeouts ----

  /** A chunk's clock ran out: in the backlog, or in a slot. */
  #onTimeout(job: PoolJob<P>): void {
    if (job.settled) return;
    const slot = job.slot;
    if (slot === undefined || !job.sent) {
      const at = this.#backlog.indexOf(job);
      if (at !== -1) this.#backlog.splice(at, 1);
      const { kind, detail } = waitedError(
        this.#names,
        this.#clock.startDeadline,
      );
      return this.#settle(job, this.#error(kind, job.task.info, detail));
    }
    this.#fault(slot, "timeout", timeoutDetail(this.#names));
  }

  // ---- faults ----

  /**
   * The one place a slot ends badly: it is killed; the chunks it had not
   * started go back to the front of the backlog; those it had started fail
   * once it is gone, with what is known of its end.
   */
  #fault(
    slot: Slot<P>,
    kind: "crash" | "protocol" | "timeout" | "startup",
    detail: string,
    cause?: unknown,
    how: StartFailure = "died",
  ): void {
    if (slot.state === "dead" || slot.state === "ending") return;
    const wasStarting = slot.state === "starting";
    this.#clock.stop(slot);
    slot.state = "dead";
    slot.transport.kill();
    const started = this.#kind.oneAtATime ? slot.sent.slice(0, 1) : slot.sent;
    const requeue = [
      ...slot.sent.slice(started.length),
      ...slot.outbox?.clear() ?? [],
    ];
    slot.sent = [];
    for (let i = requeue.length - 1; i >= 0; i--) this.#wait(requeue[i]!, true);
    const failure = wasStarting ? how : undefined;
    if (failure !== "load") this.#owed++;
    const fault: Fault = { kind, detail, cause };
    slot.transport.gone.then((gone) => {
      // One whose module failed to load was killed by the pool: how it
      // ended says nothing more.
      const exit = failure === "load" ? { text: "" } : gone;
      const stderr = slot.transport.stderr();
      const options = exitOptions(exit, stderr, cause);
      const text = `${detail}${exit.text}`;
      const culprit = started[0]?.task.info.index ?? 0;
      started.forEach((job, i) => {
        const { kind, detail } = startedError(
          fault,
          exit,
          this.#names,
          i,
          culprit,
        );
        this.#settle(job, this.#error(kind, job.task.info, detail, options));
      });
      if (failure !== undefined) this.#failedStart(failure, text, options);
      else if (started.length === 0) {
        // Nothing to blame it on: still say what happened.
        warn(
          `${this.#kind.noun} ${slot.index}`,
          `replaced after a fault while idle: ${text}`,
        );
      }
    });
  }

  #failedStart(
    failure: StartFailure,
    text: string,
    options: ChunkErrorOptions,
  ): void {
    const n = ++this.#startFailures;
    if (n < this.#startAttempts || this.#broken !== undefined) return;
    this.#break(startupDetail(failure, n, this.#names, text), options);
  }

  /** Start-up failed for good: every chunk waiting, and every later one, fails with this. */
  #break(detail: string, options: ChunkErrorOptions): void {
    if (this.#broken !== undefined) return;
    this.#broken = { detail, options };
    for (const job of this.#backlog.splice(0)) {
      this.#settle(job, this.#startupError(job.task.info));
    }
    for (const slot of this.#slots) {
      if (slot.state === "starting") {
        this.#clock.stop(slot);
        slot.state = "dead";
        slot.transport.kill();
      }
    }
  }

  /** Once a slot is gone: it leaves the pool, and another takes its place. */
  #onGone(slot: Slot<P>): void {
    if (slot.state === "starting" || slot.state === "ready") {
      // Gone without a word: whatever it held fails all the same.
      this.#fault(slot, "crash", `the ${this.#kind.noun} ended unexpectedly`);
    }
    this.#clock.stop(slot);
    slot.state = "dead";
    const at = this.#slots.indexOf(slot);
    if (at !== -1) this.#slots.splice(at, 1);
    // An idle slot that was ended is replaced only on demand.
    if (slot.rested && this.#backlog.length === 0) return;
    // Let the fault handler settle its chunks first (it also waits for `gone`).
    queueMicrotask(() => {
      this.#fill();
      if (this.#backlog.length > 0) this.#drain();
    });
  }

  // ---- settling ----

  #settle(job: PoolJob<P>, error: ChunkError | undefined, value?: unknown) {
    if (job.settled) return;
    job.settled = true;
    this.#clock.stopChunk(job);
    if (error === undefined) job.resolve(value);
    else job.reject(error);
  }

  #error(
    kind: ChunkError["kind"],
    info: ChunkInfo,
    detail: string,
    options: ChunkErrorOptions = {},
  ): ChunkError {
    return new ChunkError(kind, info, this.#kind.mode, detail, options);
  }

  #startupError(info: ChunkInfo): ChunkError {
    const { detail, options } = this.#broken!;
    return this.#error("startup", info, detail, options);
  }

  #aborted(job: PoolJob<P>, how: string): ChunkError {
    const reason = this.#abortReason;
    return this.#error(
      "aborted",
      job.task.info,
      `the emitter was aborted${how}: ${message(reason)}`,
      { cause: reason },
    );
  }
}
