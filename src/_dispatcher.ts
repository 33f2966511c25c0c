// Copyright the @ocycle/core authors. MIT license.
// The seam between the write path and the execution modes. The emitter cuts
// chunks and keeps the queue; a dispatcher only runs one chunk at a time per
// slot and says how it went. Serial mode lives here; thread and process modes
// each live in their own file and are created by `createDispatcher`.

import { ChunkError } from "./chunk_error.ts";
import type { Callback, ChunkInfo, Mode } from "./chunk_info.ts";
import type { FormatSpec } from "./_format.ts";
import { ProcessDispatcher } from "./_process_dispatcher.ts";
import { ThreadDispatcher } from "./_thread_dispatcher.ts";

/** One chunk on its way to the callback. */
export interface Task<C> {
  /** The chunk as the callback sees it. */
  readonly chunk: C;
  /** The chunk's info. */
  readonly info: ChunkInfo;
  /**
   * The pooled buffer behind the chunk, which the emitter recycles once the
   * task settles; `undefined` when there is nothing to recycle. A dispatcher
   * that transfers the buffer away sets this to the buffer it got back, or to
   * `undefined` and `lost` to `true` when the buffer died with a Worker.
   */
  buffer: unknown;
  /** Set by a dispatcher when the buffer could not be got back. */
  lost: boolean;
  /** Whether the callback owns the chunk (`borrow: false`). */
  readonly owned: boolean;
}

/** What every dispatcher reports in `stats`. */
export interface DispatcherCounts {
  /** Workers or children alive now. */
  readonly workers: number;
  /** Workers or children replaced after a crash or a timeout. */
  readonly replaced: number;
}

/** Runs chunks. The emitter never calls `run` more than `slots` times at once. */
export interface Dispatcher<C, R> {
  /** How many chunks may run at once. */
  readonly slots: number;
  /**
   * Whether the callback gets a copy of the chunk's bytes (a child process
   * reads them from a pipe), so the buffer can be recycled even when the
   * chunk is owned.
   */
  readonly copies: boolean;
  /** Runs one chunk; rejects (or throws) with the callback's error or a ChunkError. */
  run(task: Task<C>): R | Promise<R>;
  /** Called once every task has settled: ends Workers and children. */
  close(): Promise<void>;
  /** Stops now: every running task rejects with a ChunkError of kind "aborted". */
  abort(reason: unknown): Promise<void>;
  /** Live counts for `stats`. */
  counts(): DispatcherCounts;
}

/** Everything a dispatcher needs to know, checked by the emitter. */
export interface DispatcherContext<C, R> {
  readonly mode: Mode;
  /** The callback, or the URL of the module that exports it. */
  readonly callback: Callback<C, R> | URL;
  /** The name of the module's export that is the callback. */
  readonly exportName: string;
  /** Workers or children in the pool. */
  readonly pool: number;
  /** Chunks each Worker or child may hold at once; `slots` is `pool * concurrency`. */
  readonly concurrency: number;
  /** Milliseconds a chunk may run, from its start; Infinity for no limit. */
  readonly timeout: number;
  /** How chunks are rebuilt on the other side. */
  readonly format: FormatSpec;
  /** Whether a borrowed buffer must come back from a Worker. */
  readonly borrow: boolean;
  /** Process mode: the Deno permission flags a child gets. */
  readonly permissionFlags: readonly string[];
  /** Process mode: the child's environment; `undefined` clears it. */
  readonly env: Record<string, string> | undefined;
  /** Process mode: V8 flags for the child, such as `--max-old-space-size=64`. */
  readonly v8Flags: readonly string[];
  /** The emitter's class name, for messages. */
  readonly owner: string;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

/** Loads a callback module and picks its export; the error names both. */
export async function loadCallback<C, R>(
  url: URL,
  exportName: string,
): Promise<Callback<C, R>> {
  const module = await import(url.href) as Record<string, unknown>;
  const fn = module[exportName];
  if (typeof fn !== "function") {
    throw new TypeError(
      `Cannot use module ${url.href} as a callback as its export '${exportName}' is not a function: received ${typeof fn}`,
    );
  }
  return fn as Callback<C, R>;
}

interface Running {
  readonly info: ChunkInfo;
  readonly reject: (error: unknown) => void;
}

/**
 * Runs the callback inline, one chunk at a time, in order. A synchronous
 * callback settles without a microtask, which is what keeps the write path
 * near the speed of a memcpy. `timeout` and `abort` can only stop waiting for
 * an async callback: inline code cannot be killed.
 */
export class SerialDispatcher<C, R> implements Dispatcher<C, R> {
  readonly slots = 1;
  readonly copies = false;
  #fn: Callback<C, R> | undefined;
  #loading: Promise<Callback<C, R>> | undefined;
  readonly #context: DispatcherContext<C, R>;
  readonly #running = new Set<Running>();

  constructor(context: DispatcherContext<C, R>) {
    this.#context = context;
    if (typeof context.callback === "function") this.#fn = context.callback;
  }

  run(task: Task<C>): R | Promise<R> {
    const fn = this.#fn;
    if (fn !== undefined) return this.#call(fn, task);
    this.#loading ??= loadCallback<C, R>(
      this.#context.callback as URL,
      this.#context.exportName,
    ).then((f) => this.#fn = f);
    return this.#guard(
      task.info,
      this.#loading.then(
        (f) => this.#call(f, task),
        (error) => {
          throw new ChunkError(
            "startup",
            task.info,
            "serial",
            `the callback module could not be loaded: ${message(error)}`,
            { cause: error },
          );
        },
      ),
    );
  }

  #call(fn: Callback<C, R>, task: Task<C>): R | Promise<R> {
    const result = fn(task.chunk, task.info.t0, task.info);
    if (!isThenable(result)) return result;
    return this.#guard(task.info, result as PromiseLike<R>);
  }

  #guard(info: ChunkInfo, promise: PromiseLike<R>): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const entry: Running = { info, reject };
      const settle = () => {
        if (timer !== undefined) clearTimeout(timer);
        this.#running.delete(entry);
      };
      const timeout = this.#context.timeout;
      if (timeout !== Infinity) {
        timer = setTimeout(() => {
          settle();
          reject(
            new ChunkError(
              "timeout",
              info,
              "serial",
              `the callback did not settle within ${timeout} ms`,
            ),
          );
        }, timeout);
      }
      this.#running.add(entry);
      promise.then(
        (value) => {
          settle();
          resolve(value);
        },
        (error) => {
          settle();
          reject(error);
        },
      );
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  abort(reason: unknown): Promise<void> {
    for (const entry of this.#running) {
      this.#running.delete(entry);
      entry.reject(
        new ChunkError(
          "aborted",
          entry.info,
          "serial",
          `the emitter was aborted: ${message(reason)}`,
          { cause: reason },
        ),
      );
    }
    return Promise.resolve();
  }

  counts(): DispatcherCounts {
    return { workers: 0, replaced: 0 };
  }
}

/** The message of an error, or the value as text. */
export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Creates the dispatcher of a mode. */
export function createDispatcher<C, R>(
  context: DispatcherContext<C, R>,
): Dispatcher<C, R> {
  switch (context.mode) {
    case "serial":
      return new SerialDispatcher(context);
    case "thread":
      return new ThreadDispatcher(context);
    case "process":
      return new ProcessDispatcher(context);
  }
}
