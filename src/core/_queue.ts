// Copyright the @ocycle/core authors. MIT license.
// The chunks between the write path and the runner: the bounded queue and its
// overflow policy, backpressure (`ready`), the hand-off to the runner, and
// what becomes of each result and error. It never knows the mode.

import { ChunkError } from "../chunk_error.ts";
import type { ChunkInfo, Mode } from "../chunk_info.ts";
import type { Overflow } from "../emitter_options.ts";
import type { BufferPool } from "./_buffer_pool.ts";
import { message, type Runner, type Task } from "../run/_runner.ts";

/** What the queue does with results and errors, checked by core/_options.ts. */
export interface QueueSettings<R> {
  readonly owner: string;
  readonly mode: Mode;
  readonly borrow: boolean;
  /** Chunks that may wait before `write()` says to slow down. */
  readonly maxPending: number;
  /** Chunks that may wait at all with `overflow: "queue"`: then writes that cut one throw. */
  readonly maxQueued: number;
  readonly overflow: Overflow;
  /** Scalars per element, to count dropped elements. */
  readonly unit: number;
  readonly onDone: ((result: R, info: ChunkInfo) => void) | undefined;
  readonly onError: ((error: ChunkError, info: ChunkInfo) => void) | undefined;
}

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
}

const RESOLVED: Promise<void> = Promise.resolve();

/** The queues holding errors that nobody has taken yet. */
const unobserved = new Set<{ takeErrors(): Error | undefined }>();
let listening = false;

/**
 * Keeps a queue's errors in sight of the program's exit: errors that
 * neither `ready`, `close()` nor `onError` took by then (a program that
 * forgot `close()`) are thrown from the `unload` event, which fails the
 * program as an uncaught error does, rather than letting it exit 0.
 */
function watchErrors(queue: { takeErrors(): Error | undefined }): void {
  unobserved.add(queue);
  if (listening || typeof globalThis.addEventListener !== "function") return;
  listening = true;
  globalThis.addEventListener("unload", () => {
    const errors: Error[] = [];
    for (const queue of unobserved) {
      const error = queue.takeErrors();
      if (error !== undefined) errors.push(error);
    }
    if (errors.length === 0) return;
    const error = errors.length === 1 ? errors[0]! : new AggregateError(
      errors,
      errors.map((e) => e.message).join("; "),
    );
    throw new Error(
      `errors that nobody observed (no 'onError', and close() never called or awaited): ${error.message}`,
      { cause: error },
    );
  });
}

/** The queue of chunks waiting for the runner, and their outcomes. */
export class ChunkQueue<C, R> {
  readonly #settings: QueueSettings<R>;
  readonly #runner: Runner<C, R>;
  readonly #pool: BufferPool<unknown> | undefined;
  /** The chunks waiting for the runner, made for the first that waits. */
  #queue: Task<C>[] | undefined;
  /**
   * What `mayWrite()` says, kept as the queue changes: every write asks, and
   * with thousands of emitters one field read is one cache line, not three.
   */
  #mayWrite = true;
  #inFlight = 0;
  #pumping = false;
  // The lists below are made when first needed: with thousands of emitters
  // most never hold an error or a waiter, and each empty array is an object.
  /** Errors for the next `ready` and `close()`: chunks' without `onError`, and others. */
  #errors: Error[] | undefined;
  #readyWaiters: Waiter[] | undefined;
  #idleWaiters: (() => void)[] | undefined;
  /** Set once the emitter is aborted: waiters reject with it. */
  #abortReason: { reason: unknown } | undefined;
  /** Told when the queue has room again after it was full: the write path. */
  onRoom: { resume(): void } | undefined;

  emitted = 0;
  done = 0;
  failed = 0;
  /** Elements (in scalars) of the chunks the overflow policy dropped. */
  dropped = 0;
  droppedChunks = 0;

  constructor(
    settings: QueueSettings<R>,
    runner: Runner<C, R>,
    pool: BufferPool<unknown> | undefined,
  ) {
    this.#settings = settings;
    this.#runner = runner;
    this.#pool = pool;
  }

  get #waiting(): number {
    return this.#queue === undefined ? 0 : this.#queue.length;
  }

  /** Chunks waiting for a free slot. */
  get queued(): number {
    return this.#waiting;
  }

  /** The runner the queue hands chunks to. */
  get runner(): Runner<C, R> {
    return this.#runner;
  }

  /** The pool of the chunks' buffers, if they are pooled. */
  get pool(): BufferPool<unknown> | undefined {
    return this.#pool;
  }

  /** The settings, shared by emitters made alike (core/_options.ts). */
  get settings(): QueueSettings<R> {
    return this.#settings;
  }

  /** Chunks running. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Whether a writer may go on: fewer than `maxPending` chunks wait (none, when it is 0). */
  mayWrite(): boolean {
    return this.#mayWrite;
  }

  /** Sets what `mayWrite()` says, after the queue changed. */
  #changed(): void {
    const queued = this.#waiting;
    this.#mayWrite = queued === 0 || queued < this.#settings.maxPending;
  }

  /**
   * Whether another chunk may be queued: `undefined`, or the error for a
   * writer that ignored `write()`'s `false` until `maxQueued` chunks wait.
   */
  room(): Error | undefined {
    const { maxQueued, overflow, owner } = this.#settings;
    if (this.#waiting < maxQueued || overflow !== "queue") return;
    return new RangeError(
      `Cannot write to ${owner} as ${maxQueued} chunks wait already ('maxQueued'): await 'ready' before writing more, or set 'overflow' to "drop-newest" or "drop-oldest" to drop chunks instead`,
    );
  }

  /**
   * Takes a chunk cut by the write path, with the pooled buffer behind it: the
   * buffer stays the queue's until the chunk starts, so that a chunk dropped
   * before it runs gives its buffer back to the pool.
   */
  submit(chunk: C, info: ChunkInfo, buffer: unknown): void {
    const task: Task<C> = {
      chunk,
      info,
      buffer: this.#pool === undefined ? undefined : buffer,
      lost: false,
      owned: !this.#settings.borrow,
    };
    this.emitted++;
    if (this.#inFlight < this.#runner.capacity && this.#waiting === 0) {
      this.#start(task);
      return;
    }
    const { maxPending, overflow } = this.#settings;
    if (this.#waiting >= maxPending) {
      if (overflow === "drop-newest") return this.#drop(task);
      if (overflow === "drop-oldest") {
        const oldest = this.#queue?.shift();
        // Nothing may wait (maxPending 0): the chunk itself is the oldest.
        if (oldest === undefined) return this.#drop(task);
        this.#drop(oldest);
      }
    }
    (this.#queue ??= []).push(task);
    this.#changed();
  }

  /** Resolves when the caller may write again; rejects with errors kept for it. */
  ready(): Promise<void> {
    if (this.#abortReason !== undefined) {
      return Promise.reject(this.#abortReason.reason);
    }
    if (this.#errors !== undefined && this.#errors.length > 0) {
      return Promise.reject(this.takeErrors());
    }
    if (this.mayWrite()) return RESOLVED;
    return new Promise((resolve, reject) =>
      (this.#readyWaiters ??= []).push({ resolve, reject })
    );
  }

  /** Resolves once nothing waits and nothing runs. */
  idle(): Promise<void> {
    if (this.#waiting === 0 && this.#inFlight === 0) return RESOLVED;
    return new Promise((resolve) => (this.#idleWaiters ??= []).push(resolve));
  }

  /** Fails every waiting chunk as aborted; waiters reject with `reason`. */
  abort(reason: unknown): void {
    this.#abortReason = { reason };
    const queued = this.#queue ?? [];
    this.#queue = undefined;
    this.#changed();
    for (const task of queued) {
      this.droppedChunks++;
      this.#recycle(task);
      this.#fail(
        task.info,
        new ChunkError(
          "aborted",
          task.info,
          this.#settings.mode,
          `the emitter was aborted before the chunk ran: ${message(reason)}`,
          { cause: reason },
        ),
      );
    }
    this.#wake();
  }

  /**
   * Keeps an error that belongs to no chunk (a write deferred from a
   * callback failed) for the next `ready` and `close()`.
   */
  report(error: unknown): void {
    (this.#errors ??= []).push(
      error instanceof Error ? error : new Error(message(error)),
    );
    watchErrors(this);
    this.#wake();
  }

  /** The errors kept for `ready` and `close()`, as one error. */
  takeErrors(): Error | undefined {
    const errors = this.#errors ?? [];
    this.#errors = undefined;
    unobserved.delete(this);
    if (errors.length <= 1) return errors[0];
    const what = errors.every((e) => e instanceof ChunkError)
      ? `chunks of ${this.#settings.owner} failed`
      : `errors in ${this.#settings.owner}`;
    return new AggregateError(
      errors,
      `${errors.length} ${what}: ${errors.map((e) => e.message).join("; ")}`,
    );
  }

  #drop(task: Task<C>): void {
    this.droppedChunks++;
    this.dropped += task.info.length * this.#settings.unit;
    this.#recycle(task);
  }

  #start(task: Task<C>): void {
    this.#inFlight++;
    if (task.owned && task.buffer !== undefined && !this.#runner.copies) {
      // From here the buffer is the callback's to keep.
      this.#pool!.give();
      task.buffer = undefined;
    }
    let result: R | Promise<R>;
    try {
      result = this.#runner.run(task);
    } catch (error) {
      this.#settle(task, error, true);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value) => this.#settle(task, value, false),
        (error) => this.#settle(task, error, true),
      );
    } else this.#settle(task, result, false);
  }

  #settle(task: Task<C>, value: unknown, failed: boolean): void {
    this.#inFlight--;
    this.#recycle(task);
    if (failed) this.#fail(task.info, value);
    else {
      this.done++;
      const onDone = this.#settings.onDone;
      if (onDone !== undefined) {
        try {
          onDone(value as R, task.info);
        } catch (error) {
          this.done--;
          this.#fail(
            task.info,
            new ChunkError(
              "onDone",
              task.info,
              this.#settings.mode,
              `onDone threw: ${message(error)}`,
              { cause: error },
            ),
          );
        }
      }
    }
    this.#pump();
  }

  #recycle(task: Task<C>): void {
    const pool = this.#pool;
    if (pool === undefined) return;
    if (task.buffer !== undefined) {
      pool.release(task.buffer);
      task.buffer = undefined;
    } else if (task.lost) {
      pool.lose();
      task.lost = false;
    }
  }

  #fail(info: ChunkInfo, error: unknown): void {
    this.failed++;
    const { mode, onError } = this.#settings;
    const chunkError = error instanceof ChunkError ? error : new ChunkError(
      "callback",
      info,
      mode,
      `the callback threw: ${message(error)}`,
      { cause: error },
    );
    if (onError !== undefined) {
      try {
        onError(chunkError, info);
        return;
      } catch (thrown) {
        (this.#errors ??= []).push(
          new ChunkError(
            "callback",
            info,
            mode,
            `onError threw: ${message(thrown)}`,
            { cause: thrown },
          ),
        );
      }
    } else if (chunkError.kind !== "aborted") {
      (this.#errors ??= []).push(chunkError);
    }
    if (this.#errors !== undefined && this.#errors.length > 0) {
      watchErrors(this);
    }
    this.#wake();
  }

  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (
        this.#inFlight < this.#runner.capacity && this.#waiting > 0
      ) {
        this.#start(this.#queue!.shift()!);
      }
    } finally {
      this.#pumping = false;
      this.#changed();
    }
    if (
      this.onRoom !== undefined &&
      this.#waiting < this.#settings.maxQueued
    ) this.onRoom.resume();
    this.#wake();
  }

  #wake(): void {
    const ready = this.#readyWaiters;
    if (ready !== undefined && ready.length > 0) {
      if (this.#abortReason !== undefined) {
        for (const w of ready.splice(0)) w.reject(this.#abortReason.reason);
      } else if (this.#errors !== undefined && this.#errors.length > 0) {
        const error = this.takeErrors();
        for (const w of ready.splice(0)) w.reject(error);
      } else if (this.mayWrite()) {
        for (const w of ready.splice(0)) w.resolve();
      }
    }
    const idle = this.#idleWaiters;
    if (
      idle !== undefined && idle.length > 0 && this.#waiting === 0 &&
      this.#inFlight === 0
    ) {
      for (const resolve of idle.splice(0)) resolve();
    }
  }
}
