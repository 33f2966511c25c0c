// Copyright the @ocycle/core authors. MIT license.
/**
 * The engine shared by {@linkcode BufferEmit} and its siblings: it wires the
 * write path (core/_write_path.ts) that cuts frames into chunks, the queue
 * (core/_queue.ts) that bounds them and hands them on, and a runner
 * (run/_factory.ts) that runs the callback in one of three modes, and keeps
 * the emitter's life cycle: open, closing, closed or aborted.
 *
 * @module
 */

import { BufferPool } from "./core/_buffer_pool.ts";
import { ChunkQueue } from "./core/_queue.ts";
import { type AllOptions, checkOptions } from "./core/_options.ts";
import { WritePath } from "./core/_write_path.ts";
import { createRunner } from "./run/_factory.ts";
import { message, type Runner } from "./run/_runner.ts";
import type { Mode, TypedArray } from "./chunk_info.ts";
import { WALL_T0 } from "./fanout.ts";
import type {
  CallbackSource,
  CloseOptions,
  EmitterOptions,
  EmitterStats,
  SampleFormatOptions,
} from "./emitter_options.ts";
import type { EmitterKind } from "./core/_kinds.ts";

export type {
  Callback,
  TypedArray,
  TypedArrayConstructor,
} from "./chunk_info.ts";
export type { BufferCounts } from "./core/_buffer_pool.ts";
export type {
  CallbackSource,
  ChildPermissions,
  CloseOptions,
  EmitterOptions,
  EmitterStats,
  Overflow,
  RedisOptions,
  SampleFormatOptions,
  SampleInput,
} from "./emitter_options.ts";

const OPEN = 0, CLOSING = 1, CLOSED = 2, ABORTED = 3;

const RESOLVED: Promise<void> = Promise.resolve();

/** The lent buffer of an emitter that holds none: no frame fits. */
const NOTHING_LENT = new Uint8Array(0);

/** The state of an emitter's end, and what it rarely needs, apart. */
class Life<I> {
  signal: AbortSignal | undefined = undefined;
  /** The signal's listener. */
  onAbort: (() => void) | undefined = undefined;
  abortReason: unknown = undefined;
  aborting: Promise<void> | undefined = undefined;
  closing: Promise<void> | undefined = undefined;
  writable: WritableStream<I> | undefined = undefined;
}

/**
 * The engine behind every emitter: it collects written frames in recycled
 * buffers and, once `size` is reached, hands the chunk to a callback. Use one
 * of its subclasses: {@linkcode BufferEmit} for bytes, {@linkcode SampleEmit}
 * for typed samples, {@linkcode ItemEmit} for items, {@linkcode TextEmit}
 * for text.
 *
 * @typeParam I The data `write()` accepts.
 * @typeParam C The chunk the callback receives.
 * @typeParam R The callback's result.
 */
export class Emitter<I, C, R = unknown> implements AsyncDisposable {
  // What the common write reads, first, in the object's first cache line: the
  // buffer the write path lent (core/_write_path.ts, `lend()`), its fill, and
  // the fill a frame may take it to. With thousands of emitters written in
  // turn each object a write reaches is a cache miss, and the common write
  // then reaches this one, the buffer and the frame, as a hand-written
  // accumulator does. `#limit` is 0 while nothing is lent.
  #lent: Uint8Array = NOTHING_LENT;
  #fill = 0;
  #limit = 0;
  #state = OPEN;
  // deno-lint-ignore no-explicit-any
  readonly #path: WritePath<any, any, C>;
  readonly #queue: ChunkQueue<C, R>;
  // Only what every emitter needs is a field: with thousands of emitters each
  // field is memory per emitter. The owner, mode and unit are read from the
  // queue's settings (shared by emitters made alike), the runner and pool
  // from the queue; what only a signal, close(), abort() or `writable` need
  // lives in `#life`, made when first needed.
  #life: Life<I> | undefined;

  /**
   * Constructs an emitter of the given kind. The package's subclasses pass
   * their kind; users construct a subclass.
   *
   * @ignore
   * @param kind The kind of data.
   * @param owner The class name, used in error messages.
   * @param callback The callback, or the URL of its module.
   * @param size The chunk size, in elements.
   * @param options The emitter's options.
   */
  protected constructor(
    kind: EmitterKind,
    owner: string,
    callback: CallbackSource<C, R>,
    size: number,
    options: EmitterOptions<R> & SampleFormatOptions<TypedArray> = {},
  ) {
    const settings = checkOptions(
      kind,
      owner,
      callback,
      size,
      options as AllOptions<R>,
    );
    const { kind: data, queue, signal } = settings;
    const runner = createRunner<C, R>({
      ...settings.runner,
      activity: () => {
        this.#settle();
        return this.#path.written;
      },
    });
    // Enough free buffers for every running and every waiting chunk, so that
    // a steady stream allocates nothing.
    const maxPending = queue.maxPending;
    const keep = runner.capacity +
      (Number.isFinite(maxPending) ? maxPending : 64) + 2;
    // The kind, shared by every emitter of it, makes the buffers.
    const pool = data.pooled
      ? new BufferPool(data, size * data.unit, keep)
      : undefined;
    // With thousands of emitters each closure is memory per emitter: the
    // queue is the path's sink, the path the queue's room listener, and only
    // a `maxWait` timer (which must settle a loan first) gets a closure.
    this.#queue = new ChunkQueue(queue, runner, pool);
    this.#path = new WritePath(
      data,
      settings.cut,
      pool,
      this.#queue,
      settings.cut.maxWait === Infinity ? undefined : () => this.#settle(),
    );
    // No loan while part of a write waits for room: resume() needs no settle.
    this.#queue.onRoom = this.#path;
    if (signal !== undefined) {
      const life = this.#lifeState();
      life.signal = signal;
      if (signal.aborted) {
        this.#state = ABORTED;
        life.abortReason = signal.reason;
        this.#queue.abort(signal.reason);
        this.#path.stop();
      } else {
        life.onAbort = () => {
          this.abort(signal.reason);
        };
        signal.addEventListener("abort", life.onAbort, { once: true });
      }
    }
  }

  #lifeState(): Life<I> {
    return this.#life ??= new Life();
  }

  get #owner(): string {
    return this.#queue.settings.owner;
  }

  get #runner(): Runner<C, R> {
    return this.#queue.runner;
  }

  /** What was aborted with, once aborted. */
  get #abortReason(): unknown {
    return this.#life?.abortReason;
  }

  /** Whether the writer may go on: the queue has room and no write waits for it. */
  #room(): boolean {
    const path = this.#path;
    return path.open = this.#queue.mayWrite() && !path.waiting;
  }

  /**
   * Writes one frame. Never blocks: returns `false` when `maxPending` chunks
   * already wait, and the caller should await {@linkcode Emitter.ready}
   * before writing more.
   *
   * Called from a serial callback, `onDone` or `onError` while the emitter is
   * handing on a chunk, the frame is checked and copied at once, and written
   * once the write (or flush) that cut the chunk is done: stream order holds.
   *
   * @param data The frame.
   * @param t0 The frame's timestamp in milliseconds since the epoch; the
   * clock is read only when a chunk needs one and none was given. A `t0` is
   * also the clock of the sampler's pauses; without one they run on the
   * monotonic clock.
   * @returns Whether the caller may keep writing without waiting.
   * @throws {TypeError} If `data` is not of the emitter's kind (or is a view
   * of a detached buffer), or the emitter is closed.
   * @throws {RangeError} If `t0` is not a finite number, the sampler throws
   * or returns a bad value, or `maxQueued` chunks wait already (a writer
   * that ignored `false`); nothing of the frame was written then.
   */
  write(data: I, t0?: number): boolean {
    // The common write: bytes that fit in the lent buffer. A lent buffer
    // means the emitter is open and the queue has room (see `#lend()`).
    if (data instanceof Uint8Array && t0 === undefined) {
      const fill = this.#fill;
      const end = fill + data.length;
      if (end <= this.#limit && end !== fill) {
        this.#lent.set(data, fill);
        this.#fill = end;
        return true;
      }
    }
    return this.#write(data, t0, false);
  }

  /**
   * `fanout`'s write: `t0` was read from the wall clock, so it stamps the
   * chunks but the sampler's pauses keep to the monotonic clock.
   *
   * @ignore
   */
  [WALL_T0](data: I, t0: number): boolean {
    return this.#write(data, t0, true);
  }

  /** Every write but the common one, through the write path. */
  #write(data: I, t0: number | undefined, wall: boolean): boolean {
    if (this.#state !== OPEN) throw this.#closedError();
    this.#settle();
    const open = this.#path.write(data, t0, wall) || this.#room();
    // Not once closed from a callback of this write: a carry may be left.
    if (this.#state === OPEN) this.#lend();
    return open;
  }

  /** Takes the buffer being filled on loan, when the write path lends it. */
  #lend(): void {
    const path = this.#path;
    const limit = path.lend();
    if (limit === 0) return;
    this.#lent = path.lent as Uint8Array;
    this.#fill = path.fill;
    this.#limit = limit;
  }

  /**
   * Hands back the lent buffer with what was copied into it: before the
   * path is asked anything, so that it sees every byte written.
   */
  #settle(): void {
    if (this.#limit === 0) return;
    this.#limit = 0;
    this.#lent = NOTHING_LENT;
    this.#path.settle(this.#fill);
  }

  /**
   * Emits the partial chunk now, if it holds anything not yet emitted. From
   * a serial callback, `onDone` or `onError`, once the write that cut the
   * chunk is done; while part of a write waits for room in the queue, once
   * that part is cut, so that chunks keep the order of the stream.
   *
   * @throws {TypeError} If the emitter is closed.
   */
  flush(): void {
    if (this.#state !== OPEN) throw this.#closedError();
    this.#settle();
    this.#path.flush("flush");
  }

  /**
   * Resolves when the caller may write again: fewer than `maxPending` chunks
   * wait. Rejects with a callback's error when there is no `onError`.
   */
  get ready(): Promise<void> {
    return this.#queue.ready();
  }

  /**
   * Emits the partial tail as a final chunk (unless `flush: false`), waits
   * for every callback, and ends the pool. Rejects with the errors of
   * chunks that failed without an `onError`. Later writes throw, also those
   * made from the callbacks of the chunks it flushes.
   *
   * Called from a serial callback, `onDone` or `onError` while the emitter is
   * handing on a chunk, it takes effect once the write that cut the chunk is
   * done, that write's tail included: nothing written before it is lost. Do
   * not await it there: it waits for that callback too.
   *
   * @param options Whether to flush the tail.
   * @returns A promise that settles once everything is done.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#state === ABORTED) return this.#rejectAborted();
    const life = this.#lifeState();
    if (life.closing !== undefined) return life.closing;
    const { flush = true } = options;
    this.#settle();
    this.#state = CLOSING;
    // Set before the tail is flushed, so that a close() from its callback
    // gets this promise.
    const { promise, resolve } = Promise.withResolvers<void>();
    life.closing = promise;
    const finish = () =>
      resolve(
        this.#state === ABORTED ? this.#rejectAborted() : this.#finish(flush),
      );
    if (this.#path.busy) this.#path.defer(finish);
    else finish();
    return promise;
  }

  async #finish(flush: boolean): Promise<void> {
    // What a write could not cut yet for want of room is cut first.
    while (this.#path.waiting && this.#state === CLOSING) {
      await this.#queue.idle();
      this.#path.resume();
    }
    if (flush) this.#path.flush("close");
    else this.#path.dropTail();
    await this.#queue.idle();
    await this.#runner.close();
    this.#release();
    if (this.#state === CLOSING) this.#state = CLOSED;
    if (this.#state === ABORTED) throw this.#abortReason;
    const errors = this.#queue.takeErrors();
    if (errors !== undefined) throw errors;
  }

  /** Settles only once the abort has ended every Worker and child. */
  #rejectAborted(): Promise<void> {
    return (this.#life?.aborting ?? RESOLVED).then(() => {
      throw this.#abortReason;
    });
  }

  /**
   * Stops now: chunks still waiting fail with a `ChunkError` of kind
   * `"aborted"` (reported to `onError`), running ones are stopped (their
   * Workers terminated, their children killed), the partial tail is dropped,
   * and every buffer returns to the pool. Later writes throw.
   *
   * Called from a serial callback, `onDone` or `onError`, it stops at once
   * too: no later chunk of the write being cut reaches a callback, and the
   * rest of that write, like writes deferred from callbacks, is counted in
   * `stats.dropped`. The chunk whose callback called it still reports its
   * result.
   *
   * @param reason Why; later calls reject with it.
   * @returns A promise that resolves once every Worker and child is gone.
   */
  abort(reason?: unknown): Promise<void> {
    if (this.#state === CLOSED) return RESOLVED;
    if (this.#state === ABORTED) return this.#life?.aborting ?? RESOLVED;
    return this.#lifeState().aborting = this.#stop(reason);
  }

  async #stop(reason: unknown): Promise<void> {
    this.#settle();
    this.#state = ABORTED;
    const life = this.#lifeState();
    life.abortReason = reason ?? new DOMException(
      `${this.#owner} was aborted`,
      "AbortError",
    );
    this.#path.halt();
    this.#queue.abort(this.#abortReason);
    await this.#runner.abort(this.#abortReason);
    await this.#queue.idle();
    await this.#runner.close();
    this.#release();
  }

  /** Closes the emitter, as {@linkcode Emitter.close} does. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * A `WritableStream` that writes each chunk it gets, waits for `ready`
   * (backpressure), closes the emitter on close and aborts it on abort.
   */
  get writable(): WritableStream<I> {
    return this.#lifeState().writable ??= new WritableStream<I>({
      write: (chunk) => {
        this.write(chunk);
        return this.ready;
      },
      close: () => this.close(),
      abort: (reason) => this.abort(reason),
    }, { highWaterMark: 1 });
  }

  /** Live counts: what was written, emitted, dropped, what is pending, and the buffers. */
  get stats(): EmitterStats {
    this.#settle();
    const unit = this.#queue.settings.unit;
    const path = this.#path;
    const queue = this.#queue;
    const counts = this.#runner.counts();
    return {
      written: path.written / unit,
      emitted: queue.emitted,
      done: queue.done,
      failed: queue.failed,
      dropped: (path.dropped + queue.dropped) / unit,
      droppedChunks: queue.droppedChunks,
      skipped: path.skipped / unit,
      pending: queue.queued + queue.inFlight,
      queued: queue.queued,
      inFlight: queue.inFlight,
      buffers: queue.pool?.counts() ??
        { created: 0, free: 0, out: 0, given: 0, discarded: 0, lost: 0 },
      workers: counts.workers,
      replaced: counts.replaced,
      retried: counts.retried ?? 0,
    };
  }

  /** The emitter's execution mode. */
  get mode(): Mode {
    return this.#queue.settings.mode;
  }

  /** Returns the buffer being filled to the pool once nothing will write again. */
  #release(): void {
    const life = this.#life;
    if (life?.onAbort !== undefined) {
      life.signal!.removeEventListener("abort", life.onAbort);
    }
    this.#path.stop();
  }

  #closedError(): Error {
    if (this.#state === ABORTED) {
      return this.#abortReason instanceof Error
        ? this.#abortReason
        : new TypeError(
          `Cannot write to ${this.#owner} as it was aborted: ${
            message(this.#abortReason)
          }`,
        );
    }
    return new TypeError(`Cannot write to ${this.#owner} as it is closed`);
  }
}
