// Copyright the @ocycle/core authors. MIT license.
// Thread mode: a pool of module Workers (src/_worker.ts) behind the
// dispatcher seam. Each Worker holds up to `concurrency` chunks so that the
// next one travels while the current one runs; a chunk goes to the live Worker
// with the fewest chunks. Bytes and samples are transferred, never copied, and
// borrowed buffers come back with the reply to be recycled.
//
// Under load the cost of a message, not of its bytes, bounds the rate: the
// chunks given to a Worker wait in its outbox until the current task of the
// main thread ends (a microtask) and leave together in one message; the Worker
// replies to a whole message at once, so that batches, once formed, keep their
// size. A quick Worker's outbox leaves when the Worker runs low; a slow one's
// leaves in batches of half its chunks, so that it always has the next batch
// while it runs one, and each message, both ways, carries several chunks.
//
// A Worker that dies (an uncaught error, `self.close()`, `Deno.exit()`) or
// misses a deadline is terminated. The chunks it had been sent fail and their
// buffers are counted lost; chunks still in its outbox never left and go to
// another Worker. A new Worker starts when the next chunk needs one. Workers
// that cannot start are retried a bounded number of times, then every chunk
// fails at once with the start-up error.

import { ChunkError, type ChunkErrorKind } from "./chunk_error.ts";
import type { ChunkInfo } from "./chunk_info.ts";
import {
  type Dispatcher,
  type DispatcherContext,
  type DispatcherCounts,
  message,
  type Task,
} from "./_dispatcher.ts";
import {
  type TypedArray,
  type TypedArrayConstructor,
  typedArrayType,
} from "./_format.ts";
import {
  type ErrorMessage,
  fromWireError,
  type InitMessage,
  packTask,
  type ResultMessage,
  type TaskBatchMessage,
  type WorkerMessage,
} from "./_protocol.ts";

/** Workers in a row that may fail to start before the pool gives up. */
const START_ATTEMPTS = 3;

/**
 * Milliseconds per chunk above which a Worker counts as slow: its outbox
 * leaves as soon as it holds half of the Worker's chunks, so that the Worker
 * always has a whole batch waiting while it runs the current one and replies
 * to it in one message.
 */
const SLOW_MS = 0.1;

const WORKER_URL = new URL("./_worker.ts", import.meta.url);

interface Job<C, R> {
  readonly id: number;
  readonly task: Task<C>;
  readonly resolve: (value: R) => void;
  readonly reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The Worker holding the chunk, or undefined while it waits for one. */
  slot: Slot<C, R> | undefined;
  /** Whether the chunk was posted: its transferred buffer is in the Worker. */
  sent: boolean;
  settled: boolean;
}

interface Slot<C, R> {
  readonly worker: Worker;
  ready: boolean;
  dead: boolean;
  /** Whether it ever replied to a chunk: a Worker that dies before is a start-up failure. */
  served: boolean;
  /** The chunks it holds, posted or in its outbox, by id. */
  readonly jobs: Map<number, Job<C, R>>;
  /** Chunks for it that leave together at the end of the current task. */
  outbox: Job<C, R>[];
  /** Chunks posted to it that have not replied yet. */
  sent: number;
  /**
   * With a timeout: those chunks, in the order they were posted. Only the
   * first one's clock runs: a chunk's callback starts once the ones before it
   * have settled, so that is when its time starts.
   */
  readonly running: Job<C, R>[];
  /** Whether a flush of its outbox is due at the end of the current task. */
  flushing: boolean;
  /** A moving average of its milliseconds per chunk, message costs included. */
  perChunk: number;
  /** When it last replied, or got work while idle (performance.now()). */
  since: number;
}

/** Runs each chunk in a pool of module Workers. */
export class ThreadDispatcher<C, R> implements Dispatcher<C, R> {
  readonly slots: number;
  readonly copies = false;
  readonly #context: DispatcherContext<C, R>;
  readonly #init: InitMessage;
  readonly #pool: number;
  readonly #concurrency: number;
  /** A Worker's outbox leaves once it has at most this many chunks posted. */
  readonly #lowWater: number;
  /** A slow Worker's outbox leaves once it holds this many chunks. */
  readonly #batch: number;
  readonly #timeout: number;
  /** The typed array type of bytes and samples; undefined for items and text. */
  readonly #type: TypedArrayConstructor<TypedArray> | undefined;
  /** Live Workers: starting or ready. */
  #live: Slot<C, R>[] = [];
  /** Chunks waiting for a Worker. */
  #backlog: Job<C, R>[] = [];
  #nextId = 0;
  #started = 0;
  #replaced = 0;
  /** Workers in a row that died before serving a chunk. */
  #startFailures = 0;
  /** Set once Workers cannot start: every chunk fails with it. */
  #broken: { detail: string; cause: unknown } | undefined;
  #ended = false;
  #abortReason: unknown;
  #aborted = false;

  constructor(context: DispatcherContext<C, R>) {
    if (!(context.callback instanceof URL)) {
      throw new TypeError(
        `Cannot create ${context.owner} in thread mode as a function cannot cross into a Worker: pass the URL of a module that exports the callback`,
      );
    }
    this.#context = context;
    this.#pool = context.pool;
    this.#concurrency = context.concurrency;
    // With two chunks per Worker, batches of two beat a pipeline of single
    // messages; with more, a batch leaves while the Worker still runs one.
    this.#lowWater = Math.floor((context.concurrency - 1) / 2);
    this.#batch = Math.max(1, Math.floor(context.concurrency / 2));
    this.#timeout = context.timeout;
    this.slots = context.pool * context.concurrency;
    const format = context.format;
    this.#type = format.kind === "bytes"
      ? Uint8Array
      : format.kind === "samples"
      ? typedArrayType(format.type)
      : undefined;
    this.#init = {
      type: "init",
      url: context.callback.href,
      exportName: context.exportName,
      format,
      borrow: context.borrow,
      // A hung callback must not hold back the results batched before it.
      replyAtOnce: context.timeout !== Infinity,
    };
  }

  run(task: Task<C>): Promise<R> {
    if (this.#aborted) {
      return Promise.reject(this.#abortedError(task.info, ""));
    }
    if (this.#broken !== undefined) {
      return Promise.reject(this.#startupError(task.info));
    }
    if (this.#ended) {
      return Promise.reject(
        threadError("aborted", task.info, "the Worker pool was already closed"),
      );
    }
    if (this.#live.length < this.#pool) this.#spawn();
    return new Promise<R>((resolve, reject) => {
      const job: Job<C, R> = {
        id: this.#nextId++,
        task,
        resolve,
        reject,
        timer: undefined,
        slot: undefined,
        sent: false,
        settled: false,
      };
      const slot = this.#pick();
      if (slot === undefined) this.#wait(job);
      else this.#assign(slot, job);
    });
  }

  close(): Promise<void> {
    this.#ended = true;
    for (const slot of this.#live) this.#end(slot);
    this.#live = [];
    return Promise.resolve();
  }

  abort(reason: unknown): Promise<void> {
    if (this.#aborted) return Promise.resolve();
    this.#aborted = true;
    this.#abortReason = reason;
    const backlog = this.#backlog;
    this.#backlog = [];
    for (const job of backlog) {
      this.#settle(
        job,
        this.#abortedError(job.task.info, " before a Worker took the chunk"),
      );
    }
    const live = this.#live;
    this.#live = [];
    for (const slot of live) {
      this.#end(slot);
      for (const job of slot.jobs.values()) {
        this.#settle(
          job,
          this.#abortedError(
            job.task.info,
            job.sent
              ? " while the chunk ran: its Worker was terminated"
              : " before a Worker took the chunk",
          ),
        );
      }
      slot.jobs.clear();
    }
    return Promise.resolve();
  }

  counts(): DispatcherCounts {
    return { workers: this.#live.length, replaced: this.#replaced };
  }

  // ---- Workers ----

  /** Starts Workers up to `pool`. */
  #spawn(): void {
    while (this.#live.length < this.#pool) {
      const worker = new Worker(WORKER_URL, {
        type: "module",
        name: `${this.#context.owner} thread ${this.#started++}`,
      });
      const slot: Slot<C, R> = {
        worker,
        ready: false,
        dead: false,
        served: false,
        jobs: new Map(),
        outbox: [],
        sent: 0,
        running: [],
        flushing: false,
        perChunk: 0,
        since: 0,
      };
      worker.onmessage = (event: MessageEvent<WorkerMessage>) =>
        this.#onMessage(slot, event.data);
      worker.onerror = (event: ErrorEvent) => {
        // Without this the error would be rethrown in the parent.
        event.preventDefault();
        const where = event.filename
          ? ` at ${event.filename}:${event.lineno}:${event.colno}`
          : "";
        this.#onDeath(
          slot,
          `its Worker died from an uncaught error (${event.message}${where})`,
          event.error ?? event.message,
        );
      };
      worker.onmessageerror = () => {
        this.#onDeath(
          slot,
          "its Worker sent a reply that could not be deserialised",
          undefined,
        );
      };
      this.#live.push(slot);
      worker.postMessage(this.#init);
    }
  }

  /** The ready Worker with the fewest chunks and room for one more. */
  #pick(): Slot<C, R> | undefined {
    let best: Slot<C, R> | undefined;
    let load = this.#concurrency;
    for (const slot of this.#live) {
      if (slot.ready && slot.jobs.size < load) {
        best = slot;
        load = slot.jobs.size;
        if (load === 0) break;
      }
    }
    return best;
  }

  /**
   * Puts a chunk in the backlog, at the back or the front. With a timeout its
   * clock runs there: a Worker whose module never finishes loading must not
   * leave it waiting for good.
   */
  #wait(job: Job<C, R>, front = false): void {
    if (front) this.#backlog.unshift(job);
    else this.#backlog.push(job);
    if (this.#timeout !== Infinity && job.timer === undefined) {
      job.timer = setTimeout(() => this.#onTimeout(job), this.#timeout);
    }
  }

  /** Gives a chunk to a ready Worker, via its outbox. */
  #assign(slot: Slot<C, R>, job: Job<C, R>): void {
    if (job.timer !== undefined) {
      // From here its time is counted in the Worker: see `Slot.running`.
      clearTimeout(job.timer);
      job.timer = undefined;
    }
    job.slot = slot;
    slot.jobs.set(job.id, job);
    slot.outbox.push(job);
    this.#schedule(slot);
  }

  /**
   * Flushes a Worker's outbox at the end of the current task, unless the
   * Worker holds enough posted chunks to keep busy: then the outbox grows
   * until the replies bring it down, or, for a slow Worker, until it makes a
   * whole batch, and leaves as one message.
   */
  #schedule(slot: Slot<C, R>): void {
    if (
      !slot.flushing && slot.outbox.length > 0 &&
      (slot.sent <= this.#lowWater ||
        (slot.perChunk > SLOW_MS && slot.outbox.length >= this.#batch))
    ) {
      slot.flushing = true;
      queueMicrotask(() => this.#flush(slot));
    }
  }

  #flush(slot: Slot<C, R>): void {
    slot.flushing = false;
    const outbox = slot.outbox;
    slot.outbox = [];
    // A dead Worker's outbox was already re-queued or failed.
    if (slot.dead) return;
    const jobs = outbox.filter((job) => !job.settled && job.slot === slot);
    // A slow Worker gets batches of at most `#batch`: it replies to a whole
    // batch at once, so a larger one would leave it idle until the refill.
    if (jobs.length === 0) return;
    const most = slot.perChunk > SLOW_MS ? this.#batch : jobs.length;
    if (jobs.length <= most) this.#post(slot, jobs);
    else {
      for (let at = 0; at < jobs.length; at += most) {
        this.#post(slot, jobs.slice(at, at + most));
      }
    }
  }

  /** Posts chunks in one message; their transferred buffers leave with it. */
  #post(slot: Slot<C, R>, jobs: Job<C, R>[]): void {
    const type = this.#type;
    const meta: number[] = [];
    const chunks: unknown[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const job of jobs) {
      const task = job.task;
      let chunk: unknown = task.chunk;
      if (type !== undefined) {
        // The chunk is a view from offset 0 of its pooled buffer: send the
        // whole ArrayBuffer. Until it comes back it belongs to the Worker.
        chunk = (chunk as TypedArray).buffer;
        transfer.push(chunk as ArrayBuffer);
      }
      packTask(meta, job.id, task.info);
      chunks.push(chunk);
    }
    try {
      slot.worker.postMessage(
        { type: "tasks", meta, chunks } satisfies TaskBatchMessage,
        transfer,
      );
    } catch (error) {
      if (jobs.length > 1 && type === undefined) {
        // Items or text that cannot be cloned: find which, one at a time.
        for (const job of jobs) this.#post(slot, [job]);
        return;
      }
      for (const job of jobs) {
        slot.jobs.delete(job.id);
        const buffer = job.task.buffer as TypedArray | undefined;
        if (
          buffer !== undefined && (buffer.buffer as ArrayBuffer).detached
        ) {
          job.task.buffer = undefined;
          job.task.lost = true;
        }
        this.#settle(
          job,
          new ChunkError(
            "callback",
            job.task.info,
            "thread",
            `the chunk could not be sent to a Worker: ${message(error)}`,
            { cause: error },
          ),
        );
      }
      if (this.#backlog.length > 0) this.#drain();
      return;
    }
    if (slot.sent === 0) slot.since = performance.now();
    slot.sent += jobs.length;
    if (this.#timeout !== Infinity) {
      slot.running.push(...jobs);
      this.#startClock(slot);
    }
    for (const job of jobs) {
      job.sent = true;
      if (type !== undefined && !job.task.owned) {
        // Lost until the reply brings the buffer back.
        job.task.buffer = undefined;
        job.task.lost = true;
      }
    }
  }

  #onMessage(slot: Slot<C, R>, reply: WorkerMessage): void {
    if (slot.dead) return;
    switch (reply.type) {
      case "result":
      case "error":
        this.#time(slot, 1);
        this.#onReply(slot, reply);
        this.#schedule(slot);
        if (this.#backlog.length > 0) this.#drain();
        return;
      case "replies":
        this.#time(slot, reply.replies.length);
        for (const one of reply.replies) this.#onReply(slot, one);
        this.#schedule(slot);
        if (this.#backlog.length > 0) this.#drain();
        return;
      case "ready":
        slot.ready = true;
        this.#drain();
        return;
      case "startup-error": {
        const error = fromWireError(reply.error);
        this.#onDeath(slot, error.message, error);
        return;
      }
      case "closing":
        this.#onDeath(
          slot,
          `its Worker ended itself: the callback module called ${reply.how}${
            reply.code === undefined ? "" : ` with code ${reply.code}`
          }`,
          undefined,
        );
        return;
    }
  }

  /** Updates a Worker's time per chunk with `n` replies that came now. */
  #time(slot: Slot<C, R>, n: number): void {
    const now = performance.now();
    slot.perChunk += ((now - slot.since) / n - slot.perChunk) / 4;
    slot.since = now;
  }

  #onReply(slot: Slot<C, R>, reply: ResultMessage | ErrorMessage): void {
    // Only the Worker that holds a chunk can settle it.
    const job = slot.jobs.get(reply.id);
    if (job === undefined) return;
    slot.jobs.delete(reply.id);
    slot.sent--;
    if (this.#timeout !== Infinity) {
      const at = slot.running.indexOf(job);
      if (at !== -1) slot.running.splice(at, 1);
      this.#startClock(slot);
    }
    slot.served = true;
    this.#startFailures = 0;
    job.settled = true;
    if (reply.buffer !== undefined && !job.task.owned) {
      job.task.buffer = new this.#type!(reply.buffer);
      job.task.lost = false;
    }
    if (job.timer !== undefined) clearTimeout(job.timer);
    if (reply.type === "result") job.resolve(reply.value as R);
    else job.reject(fromWireError(reply.error));
  }

  /** Starts the clock of the oldest chunk a Worker is running, if not yet. */
  #startClock(slot: Slot<C, R>): void {
    const first = slot.running[0];
    if (first !== undefined && first.timer === undefined) {
      first.timer = setTimeout(() => this.#onTimeout(first), this.#timeout);
    }
  }

  /** Sends waiting chunks to ready Workers, and starts Workers they need. */
  #drain(): void {
    while (this.#backlog.length > 0) {
      const slot = this.#pick();
      if (slot === undefined) break;
      this.#assign(slot, this.#backlog.shift()!);
    }
    if (
      this.#backlog.length > 0 && this.#live.length < this.#pool &&
      this.#broken === undefined && !this.#aborted && !this.#ended
    ) this.#spawn();
  }

  /** Terminates a Worker and stops listening to it. */
  #end(slot: Slot<C, R>): void {
    slot.dead = true;
    slot.worker.onmessage = null;
    slot.worker.onerror = null;
    slot.worker.onmessageerror = null;
    slot.worker.terminate();
  }

  /**
   * Takes a Worker out of the pool and hands back the chunks that never
   * left its outbox, which go to the front of the backlog.
   */
  #remove(slot: Slot<C, R>): void {
    this.#end(slot);
    const i = this.#live.indexOf(slot);
    if (i !== -1) this.#live.splice(i, 1);
    const unsent: Job<C, R>[] = [];
    for (const job of slot.jobs.values()) {
      if (!job.sent) {
        job.slot = undefined;
        unsent.push(job);
        slot.jobs.delete(job.id);
      }
    }
    for (let i = unsent.length - 1; i >= 0; i--) this.#wait(unsent[i]!, true);
  }

  /** A Worker died or ended itself: fail what it held, replace it later. */
  #onDeath(slot: Slot<C, R>, detail: string, cause: unknown): void {
    if (slot.dead) return;
    this.#remove(slot);
    if (!slot.served && slot.jobs.size === 0) {
      this.#startFailures++;
      if (this.#startFailures >= START_ATTEMPTS) {
        this.#giveUp(
          `the callback module could not be started in ${START_ATTEMPTS} Workers in a row: ${detail}`,
          cause,
        );
        return;
      }
    } else this.#replaced++;
    for (const job of slot.jobs.values()) {
      this.#fail(
        job,
        "crash",
        `${detail}; the chunk was in that Worker, which will be replaced`,
        cause,
      );
    }
    slot.jobs.clear();
    this.#drain();
  }

  #onTimeout(job: Job<C, R>): void {
    job.timer = undefined;
    const slot = job.slot;
    const timeout = this.#timeout;
    if (slot === undefined || !job.sent) {
      const i = this.#backlog.indexOf(job);
      if (i !== -1) this.#backlog.splice(i, 1);
      slot?.jobs.delete(job.id);
      this.#fail(
        job,
        "timeout",
        `no Worker was ready to take the chunk within ${timeout} ms (the callback module's top-level code may still be running)`,
      );
      return;
    }
    slot.jobs.delete(job.id);
    this.#remove(slot);
    this.#replaced++;
    this.#fail(
      job,
      "timeout",
      `the callback did not settle within ${timeout} ms of its start; its Worker was terminated and will be replaced`,
    );
    for (const other of slot.jobs.values()) {
      this.#fail(
        other,
        "crash",
        `its Worker was terminated because chunk ${job.task.info.index} on the same Worker timed out after ${timeout} ms; the chunk had already been sent to that Worker and went with it`,
      );
    }
    slot.jobs.clear();
    this.#drain();
  }

  /** Workers cannot start: fail everything waiting, and every later chunk. */
  #giveUp(detail: string, cause: unknown): void {
    this.#broken = { detail, cause };
    for (const slot of [...this.#live]) {
      if (!slot.ready) this.#remove(slot);
    }
    const backlog = this.#backlog;
    this.#backlog = [];
    for (const job of backlog) {
      this.#settle(job, this.#startupError(job.task.info));
    }
  }

  /** Rejects a job that will get no reply. Its buffer, if sent, stays lost. */
  #settle(job: Job<C, R>, error: ChunkError): void {
    if (job.timer !== undefined) clearTimeout(job.timer);
    job.timer = undefined;
    job.settled = true;
    job.reject(error);
  }

  /** Rejects a job with a ChunkError of `kind` about its chunk. */
  #fail(
    job: Job<C, R>,
    kind: ChunkErrorKind,
    detail: string,
    cause?: unknown,
  ): void {
    this.#settle(job, threadError(kind, job.task.info, detail, cause));
  }

  #startupError(info: ChunkInfo): ChunkError {
    const broken = this.#broken!;
    return threadError("startup", info, broken.detail, broken.cause);
  }

  #abortedError(info: ChunkInfo, how: string): ChunkError {
    const reason = this.#abortReason;
    return new ChunkError(
      "aborted",
      info,
      "thread",
      `the emitter was aborted${how}: ${message(reason)}`,
      { cause: reason },
    );
  }
}

/** A thread-mode ChunkError; `cause` is kept only when there is one. */
function threadError(
  kind: ChunkErrorKind,
  info: ChunkInfo,
  detail: string,
  cause?: unknown,
): ChunkError {
  return new ChunkError(
    kind,
    info,
    "thread",
    detail,
    cause === undefined ? {} : { cause },
  );
}
