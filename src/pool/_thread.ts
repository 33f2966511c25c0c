// Copyright the @ocycle/core authors. MIT license.
// Thread mode: the transport to one thread, a module Web Worker running the
// thread entry (pool/_thread_entry.ts). Bytes and samples are transferred,
// never copied, and borrowed buffers come back with the reply to be recycled.
// Under load the cost of a message, not of its bytes, bounds the rate, so the
// pool batches chunks for a busy thread and the thread replies to a whole
// message at once.
//
// A thread runs every chunk it is sent at once (async callbacks overlap), so
// when it dies every chunk it was sent goes with it. Deno gives the parent no
// event when a thread ends itself: the thread entry says so first.

import type { TypedArray, TypedArrayConstructor } from "../wire/_layout.ts";
import {
  type ErrorMessage,
  fromWireError,
  type InitMessage,
  packTask,
  type ResultMessage,
  type TaskBatchMessage,
  type WorkerMessage,
} from "../wire/_messages.ts";
import { layoutType } from "../wire/_layout.ts";
import { loadFailure } from "../run/_faults.ts";
import type { Task } from "../run/_runner.ts";
import type {
  Exit,
  Job,
  RemoteSettings,
  Transport,
  TransportEvents,
  TransportKind,
  Unsent,
} from "./_transport.ts";

const WORKER_URL = new URL("./_thread_entry.ts", import.meta.url);

/**
 * Never called: it puts the thread entry in this package's module graph, so
 * that `deno cache` and `deno install` fetch it with the rest, and thread mode
 * starts with no network.
 */
export const threadEntry = (): Promise<unknown> => import("./_thread_entry.ts");

/**
 * A thread loads this package's files (its entry and what that imports) as a
 * dynamic import does: from disk, that needs read access to them, which the
 * program itself, started from its own entry, did not need. Said once, before
 * a thread fails to start with Deno's raw "Uncaught (in worker …)" lines.
 */
function checkSourceAccess(): void {
  if (WORKER_URL.protocol !== "file:") return;
  const path = decodeURIComponent(new URL("../", WORKER_URL).pathname)
    .replace(/\/$/, "");
  const state = Deno.permissions.querySync({ name: "read", path }).state;
  if (state === "granted") return;
  throw new Error(
    `thread mode loads this package's files into each Worker, and they are on disk: grant --allow-read=${path} (or use the package from JSR, which needs no read access for it)`,
  );
}

/** Nothing to add about a thread's end: Deno tells nothing of it. */
const GONE: Exit = { text: "" };

/** The thread mode of the pool. */
export class ThreadKind implements TransportKind<undefined> {
  readonly mode = "thread";
  readonly noun = "Worker";
  readonly nouns = "Workers";
  /**
   * With `retries`, each attempt sends a copy of the bytes and the buffer
   * stays in the parent: a thread that dies takes only the copy, and the
   * chunk can be sent again. Without it the buffer is transferred.
   */
  readonly copies: boolean;
  readonly oneAtATime = false;
  readonly batches = true;
  readonly #init: InitMessage;
  readonly #owner: string;
  /** The typed array type of bytes and samples; undefined for items and text. */
  readonly #type: TypedArrayConstructor<TypedArray> | undefined;

  constructor(settings: RemoteSettings) {
    this.#owner = settings.owner;
    this.#type = layoutType(settings.layout);
    this.copies = (settings.retries ?? 0) > 0 && this.#type !== undefined;
    this.#init = {
      type: "init",
      url: settings.url.href,
      exportName: settings.exportName,
      layout: settings.layout,
      borrow: settings.borrow,
      // A hung callback must not hold back the results batched before it.
      replyAtOnce: settings.timeout !== Infinity,
    };
  }

  loading(): undefined {
    return undefined;
  }

  prepare(): undefined {
    return undefined;
  }

  takeBack(task: Task<unknown>, buffer: unknown): void {
    // A copy came back: the buffer never left.
    if (this.copies) return;
    task.buffer = new this.#type!(buffer as ArrayBuffer);
    task.lost = false;
  }

  /**
   * @throws {Error} If this package was loaded from disk and its files may
   * not be read: a thread could not load its entry.
   */
  start(index: number, events: TransportEvents): Transport<undefined> {
    checkSourceAccess();
    return new ThreadTransport(
      new Worker(WORKER_URL, {
        type: "module",
        name: `${this.#owner} thread ${index}`,
      }),
      this.#init,
      this.#type,
      this.copies,
      events,
    );
  }
}

class ThreadTransport implements Transport<undefined> {
  readonly gone: Promise<Exit>;
  readonly #thread: Worker;
  readonly #type: TypedArrayConstructor<TypedArray> | undefined;
  readonly #copies: boolean;
  readonly #events: TransportEvents;
  /** The callback module's URL, for messages. */
  readonly #url: string;
  #resolveGone!: (exit: Exit) => void;
  #ended = false;

  constructor(
    thread: Worker,
    init: InitMessage,
    type: TypedArrayConstructor<TypedArray> | undefined,
    copies: boolean,
    events: TransportEvents,
  ) {
    this.#thread = thread;
    this.#type = type;
    this.#copies = copies;
    this.#events = events;
    this.#url = init.url;
    this.gone = new Promise((resolve) => this.#resolveGone = resolve);
    thread.onmessage = (event: MessageEvent<WorkerMessage>) =>
      this.#onMessage(event.data);
    thread.onerror = (event: ErrorEvent) => {
      // Without this the error would be rethrown in the parent.
      event.preventDefault();
      const where = event.filename
        ? ` at ${event.filename}:${event.lineno}:${event.colno}`
        : "";
      events.fault(
        "crash",
        `its Worker died from an uncaught error (${event.message}${where})`,
        event.error ?? event.message,
      );
    };
    thread.onmessageerror = () => {
      events.fault(
        "crash",
        "its Worker sent a reply that could not be deserialised",
      );
    };
    thread.postMessage(init);
  }

  send(jobs: readonly Job<undefined>[]): Unsent<undefined>[] | undefined {
    const type = this.#type;
    const meta: number[] = [];
    const chunks: unknown[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const job of jobs) {
      const task = job.task;
      let chunk: unknown = task.chunk;
      if (type !== undefined) {
        // The chunk is a view from offset 0 of its pooled buffer: send the
        // whole ArrayBuffer, or a copy of the chunk's bytes (`copies`). Until
        // it comes back it belongs to the thread.
        chunk = this.#copies
          ? (chunk as TypedArray).slice().buffer
          : (chunk as TypedArray).buffer;
        transfer.push(chunk as ArrayBuffer);
      }
      packTask(meta, job.id, task.info);
      chunks.push(chunk);
    }
    try {
      this.#thread.postMessage(
        { type: "tasks", meta, chunks } satisfies TaskBatchMessage,
        transfer,
      );
    } catch (error) {
      if (jobs.length > 1 && type === undefined) {
        // Items or text that cannot be cloned: find which, one at a time.
        const unsent: Unsent<undefined>[] = [];
        for (const job of jobs) unsent.push(...this.send([job]) ?? []);
        return unsent.length > 0 ? unsent : undefined;
      }
      return jobs.map((job) => {
        const buffer = job.task.buffer as TypedArray | undefined;
        if (buffer !== undefined && (buffer.buffer as ArrayBuffer).detached) {
          job.task.buffer = undefined;
          job.task.lost = true;
        }
        return { job, error };
      });
    }
    if (type !== undefined && !this.#copies) {
      for (const job of jobs) {
        if (!job.task.owned) {
          // Lost until the reply brings the buffer back.
          job.task.buffer = undefined;
          job.task.lost = true;
        }
      }
    }
    return undefined;
  }

  end(): Promise<void> {
    this.#stop();
    return this.gone.then(() => {});
  }

  kill(): void {
    this.#stop();
  }

  stderr(): string {
    return "";
  }

  #stop(): void {
    if (this.#ended) return;
    this.#ended = true;
    const thread = this.#thread;
    thread.onmessage = null;
    thread.onerror = null;
    thread.onmessageerror = null;
    thread.terminate();
    this.#resolveGone(GONE);
  }

  #onMessage(reply: WorkerMessage): void {
    const events = this.#events;
    switch (reply.type) {
      case "result":
      case "error":
        this.#onReply(reply);
        return events.flushed();
      case "replies":
        for (const one of reply.replies) this.#onReply(one);
        return events.flushed();
      case "ready":
        return events.ready();
      case "startup-error": {
        const error = fromWireError(reply.error);
        return events.fault(
          "load",
          loadFailure(this.#url, error.message),
          error,
        );
      }
      case "closing":
        return events.fault(
          "crash",
          `its Worker ended itself: the callback module called ${reply.how}${
            reply.code === undefined ? "" : ` with code ${reply.code}`
          }`,
        );
    }
  }

  #onReply(reply: ResultMessage | ErrorMessage): void {
    if (reply.type === "result") {
      this.#events.settled(reply.id, false, reply.value, reply.buffer);
    } else {
      this.#events.settled(
        reply.id,
        true,
        fromWireError(reply.error),
        reply.buffer,
      );
    }
  }
}
