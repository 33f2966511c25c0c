// Copyright the @ocycle/core authors. MIT license.
// Serial mode: the callback runs inline, one chunk at a time, in order.

import { loadFailure } from "./_faults.ts";
import { ChunkError } from "../chunk_error.ts";
import type { Callback, ChunkInfo } from "../chunk_info.ts";
import { isThenable, loadCallback } from "./_load_callback.ts";
import { race } from "./_deadline.ts";
import {
  message,
  type Runner,
  type RunnerCounts,
  type Task,
} from "./_runner.ts";

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
export class SerialRunner<C, R> implements Runner<C, R> {
  // Constants on the prototype, not fields: thousands of emitters each hold a
  // runner, and every field is memory per emitter.
  /** One chunk at a time. */
  get capacity(): number {
    return 1;
  }
  /** The callback gets the buffer itself. */
  get copies(): boolean {
    return false;
  }
  #fn: Callback<C, R> | undefined;
  #loading: Promise<Callback<C, R>> | undefined;
  /** The callback's module, when it was given as one. */
  readonly #module:
    | { readonly url: URL; readonly exportName: string }
    | undefined;
  /** `undefined` for no limit: a field that holds Infinity is a number box each. */
  readonly #timeout: number | undefined;
  /** The running async callbacks, each failed at once on abort; made for the first. */
  #running: Set<Running> | undefined;

  /**
   * @param callback The callback, or the URL of the module that exports it.
   * @param exportName The module's export that is the callback.
   * @param timeout Milliseconds an async callback may take; Infinity for no limit.
   */
  constructor(
    callback: Callback<C, R> | URL,
    exportName: string,
    timeout: number,
  ) {
    if (typeof callback === "function") this.#fn = callback;
    else this.#module = { url: callback, exportName };
    this.#timeout = timeout === Infinity ? undefined : timeout;
  }

  run(task: Task<C>): R | Promise<R> {
    const fn = this.#fn;
    if (fn !== undefined) return this.#call(fn, task);
    const { url, exportName } = this.#module!;
    this.#loading ??= loadCallback<C, R>(url, exportName).then((f) =>
      this.#fn = f
    );
    return this.#guard(
      task.info,
      this.#loading.then(
        (f) => this.#call(f, task),
        (error) => {
          throw new ChunkError(
            "startup",
            task.info,
            "serial",
            loadFailure(url.href, message(error)),
            { cause: error },
          );
        },
      ),
    );
  }

  #call(fn: Callback<C, R>, task: Task<C>): R | Promise<R> {
    const result = fn(task.chunk, task.info.t0, task.info);
    if (!isThenable(result)) return result;
    return this.#guard(task.info, Promise.resolve(result));
  }

  /**
   * Settles with the callback's promise, unless the emitter is aborted
   * first, or `timeout` passes first.
   */
  #guard(info: ChunkInfo, promise: Promise<R>): Promise<R> {
    let running: Running | undefined;
    const guarded = new Promise<R>((resolve, reject) => {
      const entry: Running = running = { info, reject };
      const set = this.#running ??= new Set();
      set.add(entry);
      promise.then(
        (value) => {
          set.delete(entry);
          resolve(value);
        },
        (error) => {
          set.delete(entry);
          reject(error);
        },
      );
    });
    const timeout = this.#timeout;
    if (timeout === undefined) return guarded;
    return race(guarded, timeout).catch((error) => {
      // Still running: the deadline passed, whatever the error says.
      if (!this.#running!.delete(running!)) throw error;
      throw new ChunkError(
        "timeout",
        info,
        "serial",
        `the callback did not settle within ${timeout} ms`,
      );
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  abort(reason: unknown): Promise<void> {
    if (this.#running === undefined) return Promise.resolve();
    for (const entry of this.#running) {
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
    this.#running.clear();
    return Promise.resolve();
  }

  counts(): RunnerCounts {
    return { workers: 0, replaced: 0 };
  }
}
