// Copyright the @ocycle/core authors. MIT license.
/**
 * The engine shared by {@linkcode BufferEmit} and its siblings: the write
 * path that cuts frames into chunks, the queue, backpressure, and the hand-off
 * to a dispatcher that runs the callback in one of three modes.
 *
 * @module
 */

import { type BufferCounts, BufferPool } from "./_buffer_pool.ts";
import { ChunkError } from "./chunk_error.ts";
import type { Callback, ChunkInfo, Mode } from "./chunk_info.ts";

export type { Callback } from "./chunk_info.ts";
import {
  createDispatcher,
  type Dispatcher,
  message,
  type Task,
} from "./_dispatcher.ts";
import {
  bytesFormat,
  describeValue,
  type Format,
  itemsFormat,
  samplesFormat,
  textFormat,
  type TypedArray,
  type TypedArrayConstructor,
  typedArrayType,
} from "./_format.ts";

export type { BufferCounts } from "./_buffer_pool.ts";
export type {
  SampleInput,
  TypedArray,
  TypedArrayConstructor,
} from "./_format.ts";

/**
 * The callback of an emitter: a function (serial mode only), or the URL of a
 * module whose export is the callback (every mode). A string is a path or URL
 * resolved against the current working directory.
 */
export type CallbackSource<C, R> = Callback<C, R> | URL | string;

/** What the emitter does with a chunk when `maxPending` chunks already wait. */
export type Overflow = "queue" | "drop-newest" | "drop-oldest";

/**
 * Permissions a child process gets in process mode, each passed as the
 * matching `--allow-*` flag: `true` for all, or a list to scope it.
 */
export interface ChildPermissions {
  /** `--allow-read`. The callback module's own file is always readable. */
  read?: boolean | string[];
  /** `--allow-write`. */
  write?: boolean | string[];
  /** `--allow-net`. */
  net?: boolean | string[];
  /** `--allow-env`. */
  env?: boolean | string[];
  /** `--allow-run`. */
  run?: boolean | string[];
  /** `--allow-sys`. */
  sys?: boolean | string[];
  /** `--allow-ffi`. */
  ffi?: boolean | string[];
  /** `--allow-import`. */
  import?: boolean | string[];
}

/** Options shared by every emitter. */
export interface EmitterOptions<R> {
  /**
   * Cut exact chunks of `size`, carrying the remainder into the next chunk.
   * Without it a chunk is everything buffered once `size` is reached.
   *
   * @default {false}
   */
  clip?: boolean;
  /**
   * Start a window every `hop` elements (requires `clip`): windows overlap
   * when `hop < size` and leave gaps when `hop > size`.
   *
   * @default {size}
   */
  hop?: number;
  /**
   * A duty cycle: after an emit triggered by a write stamped T, writes
   * stamped before T + sampler milliseconds are dropped whole, and so is
   * the carried remainder. A number, or a function returning one per emit.
   * Everything dropped is counted in `stats.dropped`.
   */
  sampler?: number | (() => number);
  /**
   * Hand the callback a zero-copy view of a pooled buffer, valid until the
   * callback returns or its promise settles. Bytes and samples only.
   *
   * @default {false}
   */
  borrow?: boolean;
  /** Receives each callback's result, with its chunk's info, on the main thread. */
  onDone?: (result: R, info: ChunkInfo) => void;
  /**
   * Receives each chunk's error. Without it errors are kept and reject the
   * next `ready` and `close()`: they are never swallowed.
   */
  onError?: (error: ChunkError, info: ChunkInfo) => void;
  /**
   * Where the callback runs: inline (`"serial"`), in a pool of Web Workers
   * (`"thread"`) or in a pool of Deno subprocesses (`"process"`).
   *
   * @default {"serial"}
   */
  mode?: Mode;
  /**
   * Workers or child processes in the pool (thread and process modes).
   *
   * @default {navigator.hardwareConcurrency}
   */
  pool?: number;
  /**
   * Chunks each Worker or child may hold at once (thread and process modes):
   * more than one lets the next chunk travel while the current one runs.
   * At most `pool * concurrency` chunks are in flight. Thread mode defaults
   * to 8: under load a busy Worker gets its chunks in batches of half that,
   * and replies once per batch, so that each message carries several chunks.
   * Lower it to bound the memory of large chunks in flight.
   *
   * @default {2, or 8 in thread mode}
   */
  concurrency?: number;
  /**
   * Chunks that may wait for a free slot before `write()` returns `false`
   * and `ready` waits.
   *
   * @default {16}
   */
  maxPending?: number;
  /**
   * What happens to a chunk emitted while `maxPending` chunks wait: keep it
   * anyway (`write()` has already said to slow down), drop it, or drop the
   * oldest waiting chunk. Dropped chunks are counted in `stats`.
   *
   * @default {"queue"}
   */
  overflow?: Overflow;
  /**
   * Milliseconds after which a non-empty partial chunk is emitted, measured
   * from the arrival of its first element.
   *
   * @default {Infinity}
   */
  maxWait?: number;
  /**
   * Milliseconds a chunk's callback may run, measured from its start: in
   * thread and process modes, from when its Worker or child has settled the
   * chunks sent to it before this one, so waiting in a queue is not charged.
   * A chunk that takes longer fails with a `ChunkError` of kind `"timeout"`;
   * its Worker or child is ended and replaced.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /** Aborting it stops the emitter as {@linkcode Emitter.abort} does. */
  signal?: AbortSignal;
  /**
   * The export of the callback module that is the callback.
   *
   * @default {"default"}
   */
  exportName?: string;
  /** Process mode: permissions each child gets; by default only reading its module. */
  permissions?: ChildPermissions;
  /** Process mode: the children's environment. By default it is empty. */
  env?: Record<string, string>;
  /** Process mode: V8 flags for each child, e.g. `["--max-old-space-size=64"]`. */
  v8Flags?: string[];
}

/** Options of {@linkcode Emitter.close}. */
export interface CloseOptions {
  /**
   * Emit the partial tail as a final chunk. When `false` the tail is counted
   * as dropped.
   *
   * @default {true}
   */
  flush?: boolean;
}

/** Counts kept by an emitter. Elements are bytes, frames, items or characters. */
export interface EmitterStats {
  /** Elements written, dropped ones included. */
  readonly written: number;
  /** Chunks emitted to the dispatcher. */
  readonly emitted: number;
  /** Chunks whose callback succeeded. */
  readonly done: number;
  /** Chunks that failed. */
  readonly failed: number;
  /** Elements dropped by the sampler, by `close({ flush: false })` or by an abort. */
  readonly dropped: number;
  /** Chunks dropped by the `overflow` policy or by an abort before they ran. */
  readonly droppedChunks: number;
  /** Elements skipped between windows when `hop > size`. */
  readonly skipped: number;
  /** Chunks waiting or running. */
  readonly pending: number;
  /** Chunks waiting for a free slot. */
  readonly queued: number;
  /** Chunks running. */
  readonly inFlight: number;
  /** The recycled buffers (bytes and samples). */
  readonly buffers: BufferCounts;
  /** Workers or children alive (0 in serial mode). */
  readonly workers: number;
  /** Workers or children replaced after a crash or a timeout. */
  readonly replaced: number;
}

/** The kinds of data an emitter can hold. */
export type EmitterKind = "bytes" | "samples" | "items" | "text";

/** Options only {@linkcode SampleEmit} reads, checked by the shared engine. */
export interface SampleFormatOptions<T extends TypedArray> {
  /**
   * The typed array type of the samples.
   *
   * @default {Float32Array}
   */
  type?: TypedArrayConstructor<T>;
  /**
   * Interleaved channels per frame; `size` and `hop` count frames.
   *
   * @default {1}
   */
  channels?: number;
}

const OPEN = 0, CLOSING = 1, CLOSED = 2, ABORTED = 3;

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
}

const RESOLVED: Promise<void> = Promise.resolve();

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
  // deno-lint-ignore no-explicit-any
  readonly #format: Format<any, any, C>;
  readonly #owner: string;
  readonly #mode: Mode;
  readonly #unit: number;
  readonly #size: number;
  readonly #hop: number;
  readonly #clip: boolean;
  readonly #borrow: boolean;
  readonly #sampler: (() => number) | undefined;
  readonly #maxWait: number;
  readonly #maxPending: number;
  readonly #overflow: Overflow;
  readonly #onDone: ((result: R, info: ChunkInfo) => void) | undefined;
  readonly #onError:
    | ((error: ChunkError, info: ChunkInfo) => void)
    | undefined;
  readonly #pool: BufferPool<unknown> | undefined;
  readonly #dispatcher: Dispatcher<C, R>;
  readonly #signal: AbortSignal | undefined;

  // The write path, all counts in scalars (frames times channels for samples).
  #buffer: unknown;
  #fill = 0;
  /** Absolute offset of the buffer's first element. */
  #winStart = 0;
  /** Absolute offset of everything written so far. */
  #offset = 0;
  /** Absolute offset up to which everything has been emitted. */
  #emittedTo = 0;
  /** Absolute offset of the next window start that has no timestamp yet. */
  #nextStart = 0;
  /** Timestamps of window starts already written, oldest first. */
  #t0s: number[] = [];
  #resumeAt: number | undefined;
  #index = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  // The queue and its counts.
  #queue: Task<C>[] = [];
  #inFlight = 0;
  #pumping = false;
  #state = OPEN;
  #abortReason: unknown;
  #aborting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #errors: ChunkError[] = [];
  #readyWaiters: Waiter[] = [];
  #idleWaiters: (() => void)[] = [];
  #writable: WritableStream<I> | undefined;

  #written = 0;
  #emitted = 0;
  #done = 0;
  #failed = 0;
  #dropped = 0;
  #droppedChunks = 0;
  #skipped = 0;

  /**
   * Constructs an emitter of the given kind. Subclasses pass their kind;
   * users construct a subclass.
   *
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
    this.#owner = owner;
    const fail = (name: string, must: string, value: unknown) =>
      `Cannot create ${owner} as '${name}' must be ${must}: received ${
        describeValue(value)
      }`;
    const {
      clip = false,
      hop,
      sampler,
      borrow = false,
      onDone,
      onError,
      mode = "serial",
      pool = navigator.hardwareConcurrency ?? 1,
      concurrency = mode === "thread" ? 8 : 2,
      maxPending = 16,
      overflow = "queue",
      maxWait = Infinity,
      timeout = Infinity,
      signal,
      exportName = "default",
      permissions = {},
      env,
      v8Flags = [],
    } = options;

    if (!isPositiveInteger(size)) {
      throw new RangeError(fail("size", "a positive integer", size));
    }
    if (typeof clip !== "boolean") {
      throw new TypeError(fail("clip", "a boolean", clip));
    }
    if (hop !== undefined) {
      if (!isPositiveInteger(hop)) {
        throw new RangeError(fail("hop", "a positive integer", hop));
      }
      if (!clip) {
        throw new TypeError(
          `Cannot create ${owner} as 'hop' requires 'clip: true': received hop ${hop} without clip`,
        );
      }
    }
    if (
      sampler !== undefined && typeof sampler !== "function" &&
      !(typeof sampler === "number" && sampler >= 0 && sampler < Infinity)
    ) {
      throw new RangeError(
        fail(
          "sampler",
          "a finite number of milliseconds >= 0 or a function",
          sampler,
        ),
      );
    }
    if (mode !== "serial" && mode !== "thread" && mode !== "process") {
      throw new TypeError(
        fail("mode", `"serial", "thread" or "process"`, mode),
      );
    }
    if (!isPositiveInteger(pool)) {
      throw new RangeError(fail("pool", "a positive integer", pool));
    }
    if (!isPositiveInteger(concurrency)) {
      throw new RangeError(
        fail("concurrency", "a positive integer", concurrency),
      );
    }
    if (
      !(maxPending === Infinity ||
        (Number.isSafeInteger(maxPending) && maxPending >= 0))
    ) {
      throw new RangeError(
        fail("maxPending", "an integer >= 0 or Infinity", maxPending),
      );
    }
    if (
      overflow !== "queue" && overflow !== "drop-newest" &&
      overflow !== "drop-oldest"
    ) {
      throw new TypeError(
        fail("overflow", `"queue", "drop-newest" or "drop-oldest"`, overflow),
      );
    }
    if (!(typeof maxWait === "number" && maxWait > 0)) {
      throw new RangeError(
        fail("maxWait", "a number of milliseconds > 0", maxWait),
      );
    }
    if (!(typeof timeout === "number" && timeout > 0)) {
      throw new RangeError(
        fail("timeout", "a number of milliseconds > 0", timeout),
      );
    }
    for (const [name, fn] of [["onDone", onDone], ["onError", onError]]) {
      if (fn !== undefined && typeof fn !== "function") {
        throw new TypeError(fail(name as string, "a function", fn));
      }
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(fail("signal", "an AbortSignal", signal));
    }
    if (typeof exportName !== "string" || exportName === "") {
      throw new TypeError(fail("exportName", "a non-empty string", exportName));
    }
    if (!Array.isArray(v8Flags) || v8Flags.some((f) => typeof f !== "string")) {
      throw new TypeError(fail("v8Flags", "an array of strings", v8Flags));
    }

    let source: Callback<C, R> | URL;
    if (typeof callback === "function") {
      if (mode !== "serial") {
        throw new TypeError(
          `Cannot create ${owner} in ${mode} mode as a function cannot cross into a ${
            mode === "thread" ? "Worker" : "child process"
          }: pass the URL of a module that exports the callback, e.g. new URL("./callback.ts", import.meta.url)`,
        );
      }
      source = callback;
    } else if (callback instanceof URL) {
      source = callback;
    } else if (typeof callback === "string" && callback !== "") {
      source = toModuleUrl(callback);
    } else {
      throw new TypeError(
        fail(
          "callback",
          "a function or the URL of a module that exports one",
          callback,
        ),
      );
    }

    // deno-lint-ignore no-explicit-any
    let format: Format<any, any, any>;
    switch (kind) {
      case "bytes":
        format = bytesFormat();
        break;
      case "samples": {
        const { type = Float32Array, channels = 1 } = options;
        if (
          typeof type !== "function" || typedArrayType(type.name) !== type
        ) {
          throw new TypeError(
            fail("type", "a typed array constructor such as Int16Array", type),
          );
        }
        if (!isPositiveInteger(channels)) {
          throw new RangeError(
            fail("channels", "a positive integer", channels),
          );
        }
        format = samplesFormat(type, channels);
        break;
      }
      case "items":
        format = itemsFormat();
        break;
      case "text":
        format = textFormat();
        break;
    }
    if (borrow && !format.pooled) {
      throw new TypeError(
        `Cannot create ${owner} with 'borrow: true' as only bytes and samples are pooled: ${kind} chunks always belong to the callback`,
      );
    }
    this.#format = format;
    this.#unit = format.unit;
    this.#mode = mode;
    this.#size = size * format.unit;
    this.#hop = (hop ?? size) * format.unit;
    this.#clip = clip;
    this.#borrow = borrow;
    this.#sampler = sampler === undefined
      ? undefined
      : typeof sampler === "number"
      ? () => sampler
      : sampler;
    this.#maxWait = maxWait;
    this.#maxPending = maxPending;
    this.#overflow = overflow;
    this.#onDone = onDone;
    this.#onError = onError;
    this.#dispatcher = createDispatcher<C, R>({
      mode,
      callback: source,
      exportName,
      pool: mode === "serial" ? 1 : pool,
      concurrency: mode === "serial" ? 1 : concurrency,
      timeout,
      format: format.spec,
      borrow,
      permissionFlags: permissionFlags(permissions, owner),
      env,
      v8Flags,
      owner,
    });
    // Enough free buffers for every slot and every waiting chunk, so that a
    // steady stream allocates nothing.
    const keep = this.#dispatcher.slots +
      (Number.isFinite(maxPending) ? maxPending : 64) + 2;
    this.#pool = format.pooled
      ? new BufferPool((n) => format.alloc(n), this.#size, keep)
      : undefined;
    this.#buffer = this.#pool ? this.#pool.take() : format.alloc(this.#size);

    this.#signal = signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.#state = ABORTED;
        this.#abortReason = signal.reason;
      } else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  #onAbort = () => {
    this.abort(this.#signal?.reason);
  };

  /**
   * Writes one frame. Never blocks: returns `false` when `maxPending` chunks
   * already wait, and the caller should await {@linkcode Emitter.ready}
   * before writing more.
   *
   * @param data The frame.
   * @param t0 The frame's timestamp in milliseconds since the epoch; the
   * clock is read only when a chunk needs one and none was given.
   * @returns Whether the caller may keep writing without waiting.
   * @throws {TypeError} If `data` is not of the emitter's kind, or the emitter is closed.
   * @throws {RangeError} If `t0` is not a finite number, or the sampler returns a bad value.
   */
  write(data: I, t0?: number): boolean {
    if (this.#state !== OPEN) throw this.#closedError();
    const format = this.#format;
    const frame = format.frame(data, this.#owner);
    if (t0 !== undefined && !Number.isFinite(t0)) {
      throw new RangeError(
        `Cannot write to ${this.#owner} as 't0' must be a finite number of milliseconds: received ${
          describeValue(t0)
        }`,
      );
    }
    const n = format.length(frame);
    if (n === 0) return this.#mayWrite();
    let stamp = t0;
    const start = this.#offset;
    this.#offset = start + n;
    this.#written += n;
    if (this.#resumeAt !== undefined) {
      stamp ??= Date.now();
      if (stamp < this.#resumeAt) {
        this.#dropped += n;
        return this.#mayWrite();
      }
      this.#resumeAt = undefined;
      this.#winStart = this.#nextStart = this.#emittedTo = start;
    }
    // The common case, kept short: the whole frame lands in the partial chunk
    // and neither completes it nor starts a window that needs a timestamp.
    const fill0 = this.#fill;
    if (
      fill0 > 0 && fill0 + n < this.#size && this.#nextStart >= start + n &&
      fill0 + n <= format.capacity(this.#buffer)
    ) {
      format.put(this.#buffer, fill0, frame, 0, n);
      this.#fill = fill0 + n;
      return this.#mayWrite();
    }
    const size = this.#size, clip = this.#clip;
    let pos = 0;
    while (pos < n) {
      let fill = this.#fill;
      if (fill === 0 && start + pos < this.#winStart) {
        // The gap between two windows when hop > size.
        const k = Math.min(this.#winStart - start - pos, n - pos);
        this.#skipped += k;
        pos += k;
        continue;
      }
      const end = clip ? Math.min(n, pos + size - fill) : n;
      if (this.#nextStart < start + end) {
        stamp ??= Date.now();
        if (clip) {
          do {
            this.#t0s.push(stamp);
            this.#nextStart += this.#hop;
          } while (this.#nextStart < start + end);
        } else {
          this.#t0s.push(stamp);
          this.#nextStart = Infinity;
        }
      }
      if (fill === 0 && this.#maxWait !== Infinity) this.#arm();
      let buffer = this.#buffer;
      if (!clip && fill + end - pos > format.capacity(buffer)) {
        const grown = this.#pool
          ? this.#pool.grow(Math.max(2 * fill, fill + end - pos))
          : format.alloc(fill + end - pos);
        format.carry(buffer, 0, fill, grown);
        this.#buffer = buffer = grown;
      }
      format.put(buffer, fill, frame, pos, end);
      this.#fill = fill += end - pos;
      pos = end;
      if (fill >= size) {
        this.#emit("size", false);
        if (this.#sampler !== undefined) {
          stamp ??= Date.now();
          this.#pause(stamp);
          this.#dropped += n - pos;
          break;
        }
      }
    }
    return this.#mayWrite();
  }

  /**
   * Emits the partial chunk now, if it holds anything not yet emitted.
   *
   * @throws {TypeError} If the emitter is closed.
   */
  flush(): void {
    if (this.#state !== OPEN) throw this.#closedError();
    this.#flushTail("flush");
  }

  /**
   * Resolves when the caller may write again: fewer than `maxPending` chunks
   * wait. Rejects with a callback's error when there is no `onError`.
   */
  get ready(): Promise<void> {
    if (this.#state === ABORTED) return Promise.reject(this.#abortReason);
    if (this.#errors.length > 0) return Promise.reject(this.#takeErrors());
    if (this.#mayWrite()) return RESOLVED;
    return new Promise((resolve, reject) =>
      this.#readyWaiters.push({ resolve, reject })
    );
  }

  /**
   * Emits the partial tail as a final chunk (unless `flush: false`), waits
   * for every callback, and ends the pool. Rejects with the errors of
   * chunks that failed without an `onError`. Later writes throw.
   *
   * @param options Whether to flush the tail.
   * @returns A promise that settles once everything is done.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#state === ABORTED) {
      // Settle only once the abort has ended every Worker and child.
      return (this.#aborting ?? RESOLVED).then(() => {
        throw this.#abortReason;
      });
    }
    if (this.#closing !== undefined) return this.#closing;
    const { flush = true } = options;
    this.#disarm();
    if (flush) this.#flushTail("close");
    else this.#dropped += this.#winStart + this.#fill - this.#unemittedFrom();
    this.#state = CLOSING;
    this.#closing = (async () => {
      await this.#idle();
      await this.#dispatcher.close();
      this.#release();
      if (this.#state === CLOSING) this.#state = CLOSED;
      if (this.#state === ABORTED) throw this.#abortReason;
      if (this.#errors.length > 0) throw this.#takeErrors();
    })();
    return this.#closing;
  }

  /**
   * Stops now: chunks still waiting fail with a `ChunkError` of kind
   * `"aborted"` (reported to `onError`), running ones are stopped (their
   * Workers terminated, their children killed), the partial tail is dropped,
   * and every buffer returns to the pool. Later writes throw.
   *
   * @param reason Why; later calls reject with it.
   * @returns A promise that resolves once every Worker and child is gone.
   */
  abort(reason?: unknown): Promise<void> {
    if (this.#state === CLOSED) return RESOLVED;
    if (this.#state === ABORTED) return this.#aborting ?? RESOLVED;
    return this.#aborting = this.#stop(reason);
  }

  async #stop(reason: unknown): Promise<void> {
    this.#state = ABORTED;
    this.#abortReason = reason ?? new DOMException(
      `${this.#owner} was aborted`,
      "AbortError",
    );
    this.#disarm();
    this.#dropped += this.#winStart + this.#fill - this.#unemittedFrom();
    const queued = this.#queue;
    this.#queue = [];
    for (const task of queued) {
      this.#droppedChunks++;
      this.#recycle(task);
      this.#fail(
        task.info,
        new ChunkError(
          "aborted",
          task.info,
          this.#mode,
          `the emitter was aborted before the chunk ran: ${
            message(this.#abortReason)
          }`,
          { cause: this.#abortReason },
        ),
      );
    }
    await this.#dispatcher.abort(this.#abortReason);
    await this.#idle();
    await this.#dispatcher.close();
    this.#release();
    this.#wake();
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
    return this.#writable ??= new WritableStream<I>({
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
    const unit = this.#unit;
    const counts = this.#dispatcher.counts();
    return {
      written: this.#written / unit,
      emitted: this.#emitted,
      done: this.#done,
      failed: this.#failed,
      dropped: this.#dropped / unit,
      droppedChunks: this.#droppedChunks,
      skipped: this.#skipped / unit,
      pending: this.#queue.length + this.#inFlight,
      queued: this.#queue.length,
      inFlight: this.#inFlight,
      buffers: this.#pool?.counts() ??
        { created: 0, free: 0, out: 0, given: 0, discarded: 0, lost: 0 },
      workers: counts.workers,
      replaced: counts.replaced,
    };
  }

  /** The emitter's execution mode. */
  get mode(): Mode {
    return this.#mode;
  }

  // ---- the write path's helpers ----

  /** Whether a writer may go on: fewer than `maxPending` chunks wait (none, when it is 0). */
  #mayWrite(): boolean {
    const queued = this.#queue.length;
    return queued === 0 || queued < this.#maxPending;
  }

  /** Where the unemitted part of the buffer starts. */
  #unemittedFrom(): number {
    return Math.min(
      Math.max(this.#emittedTo, this.#winStart),
      this.#winStart + this.#fill,
    );
  }

  #flushTail(reason: "flush" | "close" | "maxWait"): void {
    this.#disarm();
    if (this.#winStart + this.#fill > this.#emittedTo && this.#fill > 0) {
      this.#emit(reason, reason === "close");
    }
  }

  #pause(stamp: number): void {
    const pause = this.#sampler!();
    if (!(typeof pause === "number" && pause >= 0 && pause < Infinity)) {
      throw new RangeError(
        `Cannot pause ${this.#owner} as 'sampler' must return a finite number of milliseconds >= 0: received ${
          describeValue(pause)
        }`,
      );
    }
    this.#disarm();
    this.#resumeAt = stamp + pause;
    // A gap in the data must not be stitched over: the carry goes too.
    this.#dropped += Math.max(0, this.#winStart + this.#fill - this.#emittedTo);
    this.#fill = 0;
    this.#t0s.length = 0;
  }

  /** Emits `buffer[0, fill)` and sets up the next buffer. */
  #emit(reason: ChunkInfo["reason"], final: boolean): void {
    const format = this.#format;
    const buffer = this.#buffer;
    const length = this.#fill;
    const winStart = this.#winStart;
    const unit = this.#unit;
    const t0 = this.#t0s.shift() ?? Date.now();
    const info: ChunkInfo = {
      index: this.#index++,
      offset: winStart / unit,
      length: length / unit,
      t0,
      reason,
      final,
    };
    this.#emittedTo = winStart + length;
    const next = this.#pool ? this.#pool.take() : format.alloc(this.#size);
    if (reason === "size" && this.#clip) {
      const hop = this.#hop, size = this.#size;
      if (hop < size) {
        format.carry(buffer, hop, size, next);
        this.#fill = size - hop;
        if (this.#maxWait !== Infinity) this.#arm();
      } else {
        this.#fill = 0;
        this.#disarm();
      }
      this.#winStart = winStart + hop;
    } else {
      this.#fill = 0;
      this.#winStart = this.#nextStart = winStart + length;
      this.#t0s.length = 0;
      this.#disarm();
    }
    this.#buffer = next;
    this.#submit(format.chunk(buffer, length), info, buffer);
  }

  #arm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#state === OPEN) this.#flushTail("maxWait");
    }, this.#maxWait);
  }

  #disarm(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  // ---- the queue ----

  #submit(chunk: C, info: ChunkInfo, buffer: unknown): void {
    const pool = this.#pool;
    const task: Task<C> = {
      chunk,
      info,
      buffer: undefined,
      lost: false,
      owned: !this.#borrow,
    };
    if (pool !== undefined) {
      if (this.#borrow || this.#dispatcher.copies) task.buffer = buffer;
      else pool.give();
    }
    this.#emitted++;
    if (
      this.#inFlight < this.#dispatcher.slots && this.#queue.length === 0
    ) {
      this.#start(task);
      return;
    }
    if (this.#queue.length >= this.#maxPending) {
      if (this.#overflow === "drop-newest") {
        this.#drop(task);
        return;
      }
      if (this.#overflow === "drop-oldest") this.#drop(this.#queue.shift()!);
    }
    this.#queue.push(task);
  }

  #drop(task: Task<C>): void {
    this.#droppedChunks++;
    this.#dropped += task.info.length * this.#unit;
    this.#recycle(task);
  }

  #start(task: Task<C>): void {
    this.#inFlight++;
    let result: R | Promise<R>;
    try {
      result = this.#dispatcher.run(task);
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
      this.#done++;
      if (this.#onDone !== undefined) {
        try {
          this.#onDone(value as R, task.info);
        } catch (error) {
          this.#done--;
          this.#fail(
            task.info,
            new ChunkError(
              "onDone",
              task.info,
              this.#mode,
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
    this.#failed++;
    const chunkError = error instanceof ChunkError ? error : new ChunkError(
      "callback",
      info,
      this.#mode,
      `the callback threw: ${message(error)}`,
      { cause: error },
    );
    if (this.#onError !== undefined) {
      try {
        this.#onError(chunkError, info);
        return;
      } catch (thrown) {
        this.#errors.push(
          new ChunkError(
            "callback",
            info,
            this.#mode,
            `onError threw: ${message(thrown)}`,
            { cause: thrown },
          ),
        );
      }
    } else if (chunkError.kind !== "aborted") this.#errors.push(chunkError);
    this.#wake();
  }

  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (
        this.#inFlight < this.#dispatcher.slots && this.#queue.length > 0
      ) {
        this.#start(this.#queue.shift()!);
      }
    } finally {
      this.#pumping = false;
    }
    this.#wake();
  }

  #wake(): void {
    if (this.#readyWaiters.length > 0) {
      if (this.#state === ABORTED) {
        for (const w of this.#readyWaiters.splice(0)) {
          w.reject(this.#abortReason);
        }
      } else if (this.#errors.length > 0) {
        const error = this.#takeErrors();
        for (const w of this.#readyWaiters.splice(0)) w.reject(error);
      } else if (this.#mayWrite()) {
        for (const w of this.#readyWaiters.splice(0)) w.resolve();
      }
    }
    if (
      this.#idleWaiters.length > 0 && this.#queue.length === 0 &&
      this.#inFlight === 0
    ) {
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }

  #idle(): Promise<void> {
    if (this.#queue.length === 0 && this.#inFlight === 0) return RESOLVED;
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #takeErrors(): Error {
    const errors = this.#errors.splice(0);
    return errors.length === 1 ? errors[0]! : new AggregateError(
      errors,
      `${errors.length} chunks of ${this.#owner} failed: ${
        errors.map((e) => e.message).join("; ")
      }`,
    );
  }

  /** Returns the buffer being filled to the pool once nothing will write again. */
  #release(): void {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    if (this.#pool !== undefined && this.#buffer !== undefined) {
      this.#pool.release(this.#buffer);
      this.#buffer = undefined;
      this.#fill = 0;
    }
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

function isPositiveInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

function toModuleUrl(specifier: string): URL {
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) return new URL(specifier);
  const cwd = typeof Deno !== "undefined" ? Deno.cwd() : "/";
  return new URL(specifier, `file://${cwd.endsWith("/") ? cwd : cwd + "/"}`);
}

function permissionFlags(
  permissions: ChildPermissions,
  owner: string,
): string[] {
  if (typeof permissions !== "object" || permissions === null) {
    throw new TypeError(
      `Cannot create ${owner} as 'permissions' must be an object: received ${
        describeValue(permissions)
      }`,
    );
  }
  const flags: string[] = [];
  for (const [name, value] of Object.entries(permissions)) {
    if (
      !["read", "write", "net", "env", "run", "sys", "ffi", "import"].includes(
        name,
      )
    ) {
      throw new TypeError(
        `Cannot create ${owner} as 'permissions.${name}' is not a Deno permission: use read, write, net, env, run, sys, ffi or import`,
      );
    }
    if (value === true) flags.push(`--allow-${name}`);
    else if (
      Array.isArray(value) && value.every((v) => typeof v === "string")
    ) {
      const comma = value.find((v) => v.includes(","));
      if (comma !== undefined) {
        throw new TypeError(
          `Cannot create ${owner} as 'permissions.${name}' holds a value with a comma, which Deno's --allow-${name} list cannot express: received ${
            describeValue(comma)
          }`,
        );
      }
      if (value.length > 0) flags.push(`--allow-${name}=${value.join(",")}`);
    } else if (value !== false && value !== undefined) {
      throw new TypeError(
        `Cannot create ${owner} as 'permissions.${name}' must be a boolean or an array of strings: received ${
          describeValue(value)
        }`,
      );
    }
  }
  return flags;
}
