// Copyright the @ocycle/core authors. MIT license.
// The one pool behind thread and process modes: placement, per-worker
// concurrency and batching, start-up attempts, the timeout clock, crash
// handling, requeue, abort and close, written once. A worker here is one
// Worker or one child, reached through a transport (pool/_transport.ts).
//
// A chunk goes to the ready worker that holds the fewest chunks; while none
// can take it, it waits in the backlog. Each worker holds up to `concurrency`
// chunks, so that the next one travels while the current one runs. A chunk's
// clock runs while it waits for a worker to start, and from its start once a
// worker holds it: only the oldest chunk a worker was sent has a clock, since
// the ones behind it start when it settles.
//
// A worker that breaks (it crashes, breaks the protocol, or its oldest chunk
// times out) is killed; once it is gone, the chunks it had started fail with
// what is known of its end, those it had not started go to another worker, and
// a new worker takes its place. Workers that fail to start are retried a
// bounded number of times in a row; then every chunk fails with the start-up
// error.
//
// A worker that has held nothing, with nothing waiting, for `idleTimeout` is
// ended, and the next chunk starts workers again: an idle pool holds nothing
// that keeps the program running.
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
  type Names,
  startedError,
  type StartFailure,
  startupDetail,
} from "../run/_faults.ts";
import { ProcessGroups } from "./_groups.ts";
import { Outbox } from "./_outbox.ts";
import {
  IDLE_TIMEOUT,
  type PoolJob,
  type PoolOptions,
  START_TIMEOUT,
  type Worker,
} from "./_slot.ts";
import type {
  FaultKind,
  Transport,
  TransportEvents,
  TransportKind,
} from "./_transport.ts";

/** Runs chunks in a pool of workers, each reached through a transport. */
export class Pool<P> implements Runner<unknown, unknown> {
  readonly capacity: number;
  readonly copies: boolean;
  readonly #kind: TransportKind<P>;
  readonly #names: Names;
  readonly #pool: number;
  readonly #concurrency: number;
  readonly #timeout: number;
  readonly #startAttempts: number;
  readonly #startTimeout: number;
  readonly #startDeadline: number;
  readonly #idleTimeout: number;
  readonly #activity: (() => number) | undefined;
  readonly #groups = new ProcessGroups();
  /** Workers starting, ready, or killed and not yet gone. */
  #workers: Worker<P>[] = [];
  #backlog: PoolJob<P>[] = [];
  #nextId = 0;
  #state: "open" | "closing" | "aborted" = "open";
  #abortReason: unknown;
  #replaced = 0;
  /** Workers that died or hung and are still to be replaced. */
  #owed = 0;
  #startFailures = 0;
  #broken: { detail: string; options: ChunkErrorOptions } | undefined;

  constructor(kind: TransportKind<P>, options: PoolOptions) {
    this.#kind = kind;
    this.#pool = options.pool;
    this.#concurrency = options.concurrency;
    this.#timeout = options.timeout;
    this.#startAttempts = options.startAttempts ?? 3;
    this.#startTimeout = options.startTimeout ?? START_TIMEOUT;
    this.#startDeadline = options.startDeadline ?? START_TIMEOUT;
    this.#idleTimeout = options.idleTimeout ?? IDLE_TIMEOUT;
    this.#activity = options.activity;
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
        worker: undefined,
        sent: false,
        settled: false,
      };
      // Workers start on demand: all of them at first, and again once idle
      // ones have ended, but never while a ready one has room.
      let worker = this.#pick();
      if (worker === undefined) {
        this.#fill();
        // None could be started at all: no use waiting for one.
        if (this.#broken !== undefined) {
          return reject(this.#startupError(task.info));
        }
        worker = this.#pick();
      }
      if (worker === undefined) this.#wait(job);
      else this.#assign(worker, job);
    });
  }

  async close(): Promise<void> {
    if (this.#state === "open") this.#state = "closing";
    const ending: Promise<unknown>[] = [];
    for (const worker of this.#workers) {
      if (worker.state === "dead") ending.push(worker.transport.gone);
      else if (worker.state === "starting") {
        // It holds nothing, and its module may never finish loading.
        this.#stopClock(worker);
        worker.state = "dead";
        worker.transport.kill();
        ending.push(worker.transport.gone);
      } else {
        this.#stopClock(worker);
        worker.state = "ending";
        ending.push(worker.transport.end());
      }
    }
    await Promise.all(ending);
    // A worker killed just before may still be on its way out.
    while (this.#workers.length > 0) {
      await Promise.all(this.#workers.map((w) => w.transport.gone));
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
      for (const worker of this.#workers) {
        if (worker.state !== "dead") {
          this.#stopClock(worker);
          worker.state = "dead";
          worker.transport.kill();
        }
        for (const job of [...worker.sent, ...worker.outbox?.clear() ?? []]) {
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
        worker.sent = [];
      }
    }
    await this.close();
  }

  counts(): RunnerCounts {
    let workers = 0;
    for (const worker of this.#workers) if (worker.state !== "dead") workers++;
    return { workers, replaced: this.#replaced };
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

  /** Starts workers up to `pool`. */
  #fill(): void {
    while (
      this.#workers.length < this.#pool && this.#state === "open" &&
      this.#broken === undefined
    ) {
      if (!this.#spawn()) return;
    }
  }

  #spawn(): boolean {
    const used = new Set(this.#workers.map((w) => w.index));
    let index = 0;
    while (used.has(index)) index++;
    const worker: Worker<P> = {
      index,
      transport: undefined as unknown as Transport<P>,
      state: "starting",
      sent: [],
      idleTimer: undefined,
      outbox: this.#kind.batches
        ? new Outbox(this.#concurrency, (jobs) => {
          if (worker.state === "ready") this.#send(worker, jobs);
        })
        : undefined,
      startTimer: undefined,
    };
    try {
      worker.transport = this.#kind.start(
        index,
        this.#events(worker),
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
    this.#workers.push(worker);
    const ms = this.#startTimeout;
    worker.startTimer = setTimeout(() => {
      worker.startTimer = undefined;
      if (worker.state === "starting") {
        this.#fault(
          worker,
          "startup",
          `the ${this.#kind.noun} did not load the callback module and say it was ready within ${ms} ms`,
          undefined,
          "hung",
        );
      }
    }, ms);
    worker.transport.gone.then(() => this.#onGone(worker));
    return true;
  }

  #events(worker: Worker<P>): TransportEvents {
    return {
      ready: () => this.#onReady(worker),
      settled: (id, failed, value, buffer) =>
        this.#onSettled(worker, id, failed, value, buffer),
      flushed: () => this.#onFlushed(worker),
      fault: (kind, detail, cause) =>
        this.#onFault(worker, kind, detail, cause),
    };
  }

  /** The ready worker with the fewest chunks and room for one more. */
  #pick(): Worker<P> | undefined {
    let best: Worker<P> | undefined;
    let load = this.#concurrency;
    for (const worker of this.#workers) {
      const held = worker.sent.length + (worker.outbox?.length ?? 0);
      if (worker.state === "ready" && held < load) {
        best = worker;
        load = held;
        if (load === 0) break;
      }
    }
    return best;
  }

  /**
   * Puts a chunk in the backlog, at the back or the front. Its clock runs
   * there, for `timeout` or the start-up deadline, whichever is shorter: a
   * worker whose module never finishes loading must not leave it waiting for
   * good.
   */
  #wait(job: PoolJob<P>, front = false): void {
    job.worker = undefined;
    job.sent = false;
    if (front) this.#backlog.unshift(job);
    else this.#backlog.push(job);
    if (job.timer === undefined) {
      const ms = Math.min(this.#timeout, this.#startDeadline);
      job.timer = setTimeout(() => this.#onTimeout(job), ms);
    }
  }

  /** Sends waiting chunks to ready workers. */
  #drain(): void {
    while (this.#backlog.length > 0) {
      const worker = this.#pick();
      if (worker === undefined) return;
      this.#assign(worker, this.#backlog.shift()!);
    }
  }

  /** Gives a chunk to a ready worker: at once, or via its outbox. */
  #assign(worker: Worker<P>, job: PoolJob<P>): void {
    clearTimeout(worker.idleTimer);
    worker.idleTimer = undefined;
    if (job.timer !== undefined) {
      // From here its time is counted in the worker: see `Worker.sent`.
      clearTimeout(job.timer);
      job.timer = undefined;
    }
    job.worker = worker;
    if (worker.outbox === undefined) this.#send(worker, [job]);
    else worker.outbox.push(job, worker.sent.length);
  }

  #send(worker: Worker<P>, jobs: PoolJob<P>[]): void {
    const unsent = worker.transport.send(jobs);
    worker.outbox?.sending(worker.sent.length);
    for (const job of jobs) {
      if (unsent?.some((u) => u.job === job)) continue;
      job.sent = true;
      worker.sent.push(job);
    }
    this.#startClock(worker);
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

  // ---- what workers say ----

  #onReady(worker: Worker<P>): void {
    if (worker.state === "ending" || worker.state === "dead") return;
    if (worker.state !== "starting") {
      return this.#fault(worker, "protocol", "an unexpected ready message");
    }
    worker.state = "ready";
    clearTimeout(worker.startTimer);
    worker.startTimer = undefined;
    this.#startFailures = 0;
    this.#drain();
    this.#rest(worker);
  }

  #onSettled(
    worker: Worker<P>,
    id: number,
    failed: boolean,
    value: unknown,
    buffer: unknown,
  ): void {
    if (worker.state === "dead") return;
    const sent = worker.sent;
    const at = sent[0]?.id === id ? 0 : sent.findIndex((job) => job.id === id);
    if (at === -1) {
      return this.#fault(
        worker,
        "protocol",
        `the ${this.#kind.noun} broke the protocol: a reply for unknown task id ${id}`,
      );
    }
    const job = sent[at]!;
    sent.splice(at, 1);
    worker.outbox?.replied();
    if (at === 0) this.#restartClock(worker, job);
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
          { cause: value, stderr: worker.transport.stderr() },
        ),
      );
    }
    this.#rest(worker);
  }

  #onFlushed(worker: Worker<P>): void {
    if (worker.state !== "ready") return;
    worker.outbox?.turn(worker.sent.length);
    if (this.#backlog.length > 0) this.#drain();
    this.#rest(worker);
  }

  #onFault(
    worker: Worker<P>,
    kind: FaultKind,
    detail: string,
    cause: unknown,
  ): void {
    if (worker.state === "ending") {
      // It was told to end: a load error or a crash now costs nothing.
      return;
    }
    if (kind === "load") this.#fault(worker, "startup", detail, cause, "load");
    else this.#fault(worker, kind, detail, cause);
  }

  // ---- idle workers ----

  /**
   * Ends a worker once it has held nothing, with nothing waiting and nothing
   * written to the emitter, for `idleTimeout`: an idle pool holds no Worker
   * or child, so a program that never calls close() still ends. A stream
   * still being written is not idle, however long between its chunks. The
   * next chunk starts workers again.
   */
  #rest(worker: Worker<P>): void {
    if (
      worker.idleTimer !== undefined || this.#idleTimeout === Infinity ||
      worker.state !== "ready" || this.#state !== "open" ||
      worker.sent.length > 0 || (worker.outbox?.length ?? 0) > 0 ||
      this.#backlog.length > 0
    ) return;
    const written = this.#activity?.();
    worker.idleTimer = setTimeout(() => {
      worker.idleTimer = undefined;
      if (
        worker.state !== "ready" || worker.sent.length > 0 ||
        (worker.outbox?.length ?? 0) > 0
      ) return;
      // Written to meanwhile: more chunks are on their way.
      if (this.#activity?.() !== written) return this.#rest(worker);
      worker.state = "ending";
      worker.rested = true;
      worker.transport.end();
    }, this.#idleTimeout);
  }

  // ---- the clock ----

  /** Starts the clock of the oldest chunk a worker was sent, if not yet. */
  #startClock(worker: Worker<P>): void {
    if (this.#timeout === Infinity) return;
    const first = worker.sent[0];
    if (first !== undefined && first.timer === undefined) {
      first.timer = setTimeout(() => this.#onTimeout(first), this.#timeout);
    }
  }

  /** The oldest chunk settled: the next one starts now, and so does its clock. */
  #restartClock(worker: Worker<P>, settled: PoolJob<P>): void {
    if (settled.timer !== undefined) {
      clearTimeout(settled.timer);
      settled.timer = undefined;
    }
    this.#startClock(worker);
  }

  #stopClock(worker: Worker<P>): void {
    clearTimeout(worker.startTimer);
    worker.startTimer = undefined;
    clearTimeout(worker.idleTimer);
    worker.idleTimer = undefined;
    for (const job of worker.sent) {
      clearTimeout(job.timer);
      job.timer = undefined;
    }
  }

  #onTimeout(job: PoolJob<P>): void {
    job.timer = undefined;
    if (job.settled) return;
    const worker = job.worker;
    if (worker === undefined || !job.sent) {
      const at = this.#backlog.indexOf(job);
      if (at !== -1) this.#backlog.splice(at, 1);
      const timedOut = this.#timeout <= this.#startDeadline;
      const ms = timedOut ? this.#timeout : this.#startDeadline;
      this.#settle(
        job,
        this.#error(
          timedOut ? "timeout" : "startup",
          job.task.info,
          `no ${this.#kind.noun} was ready to take the chunk within ${ms} ms${
            timedOut ? "" : ", the start-up deadline"
          } (the callback module's top-level code may still be running)`,
        ),
      );
      return;
    }
    this.#fault(
      worker,
      "timeout",
      `the callback did not settle within ${this.#timeout} ms of its start; its ${this.#kind.noun} was ended and will be replaced`,
    );
  }

  // ---- faults ----

  /**
   * The one place a worker ends badly: it is killed; the chunks it had not
   * started go back to the front of the backlog; those it had started fail
   * once it is gone, with what is known of its end.
   */
  #fault(
    worker: Worker<P>,
    kind: "crash" | "protocol" | "timeout" | "startup",
    detail: string,
    cause?: unknown,
    how: StartFailure = "died",
  ): void {
    if (worker.state === "dead" || worker.state === "ending") return;
    const wasStarting = worker.state === "starting";
    this.#stopClock(worker);
    worker.state = "dead";
    worker.transport.kill();
    const started = this.#kind.oneAtATime
      ? worker.sent.slice(0, 1)
      : worker.sent;
    const requeue = [
      ...worker.sent.slice(started.length),
      ...worker.outbox?.clear() ?? [],
    ];
    worker.sent = [];
    for (let i = requeue.length - 1; i >= 0; i--) this.#wait(requeue[i]!, true);
    const failure = wasStarting ? how : undefined;
    if (failure !== "load") this.#owed++;
    const fault: Fault = { kind, detail, cause };
    worker.transport.gone.then((gone) => {
      // One whose module failed to load was killed by the pool: how it
      // ended says nothing more.
      const exit = failure === "load" ? { text: "" } : gone;
      const stderr = worker.transport.stderr();
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
          `${this.#kind.noun} ${worker.index}`,
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
    for (const worker of this.#workers) {
      if (worker.state === "starting") {
        this.#stopClock(worker);
        worker.state = "dead";
        worker.transport.kill();
      }
    }
  }

  /** Once a worker is gone: it leaves the pool, and another takes its place. */
  #onGone(worker: Worker<P>): void {
    if (worker.state === "starting" || worker.state === "ready") {
      // Gone without a word: whatever it held fails all the same.
      this.#fault(worker, "crash", `the ${this.#kind.noun} ended unexpectedly`);
    }
    this.#stopClock(worker);
    worker.state = "dead";
    const at = this.#workers.indexOf(worker);
    if (at !== -1) this.#workers.splice(at, 1);
    // An idle worker that was ended is replaced only on demand.
    if (worker.rested && this.#backlog.length === 0) return;
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
    if (job.timer !== undefined) clearTimeout(job.timer);
    job.timer = undefined;
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
