// Copyright the @ocycle/core authors. MIT license.
// The `retries` option, for every mode at once: a runner around the mode's
// runner that runs a chunk again, after a growing delay, when it failed in a
// way that may not happen twice (its Worker or child died, or it timed out).
// A retried chunk keeps its slot while it waits, so the emitter's bound on
// chunks in flight holds, and its task (buffer and info) is the same one, so
// `onDone` or `onError` hears of it once, with its own ChunkInfo.

import { ChunkError } from "../chunk_error.ts";
import type { Mode } from "../chunk_info.ts";
import { isRetryable, retryDelay } from "./_retry_policy.ts";
import {
  message,
  type Runner,
  type RunnerCounts,
  type Task,
} from "./_runner.ts";

export { MAX_RETRY_DELAY, retryDelay } from "./_retry_policy.ts";

interface Waiting {
  readonly info: Task<unknown>["info"];
  readonly reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Runs each chunk up to `1 + retries` times while it fails by crash or timeout. */
export class RetryingRunner<C, R> implements Runner<C, R> {
  readonly capacity: number;
  readonly copies: boolean;
  readonly #inner: Runner<C, R>;
  readonly #mode: Mode;
  readonly #retries: number;
  readonly #delay: number;
  /** Chunks waiting out their delay, each failed at once on abort. */
  readonly #waiting = new Set<Waiting>();
  #retried = 0;
  #aborted = false;

  /**
   * @param inner The mode's runner.
   * @param mode The mode, for errors.
   * @param retries Attempts after the first, at most.
   * @param delay Milliseconds before the first retry; doubled for each next one.
   */
  constructor(inner: Runner<C, R>, mode: Mode, retries: number, delay: number) {
    this.#inner = inner;
    this.#mode = mode;
    this.#retries = retries;
    this.#delay = delay;
    this.capacity = inner.capacity;
    this.copies = inner.copies;
  }

  run(task: Task<C>): R | Promise<R> {
    // A synchronous result or throw is the callback's own: nothing to retry,
    // and the fast path of serial mode stays free of promises.
    const result = this.#inner.run(task);
    if (!(result instanceof Promise)) return result;
    return result.catch((error) => this.#again(task, error, 1));
  }

  /** After `attempts` attempts failed with `error`: another one, or the error. */
  #again(task: Task<C>, error: unknown, attempts: number): Promise<R> {
    if (
      this.#aborted || attempts > this.#retries ||
      !(error instanceof ChunkError) || !isRetryable(error.kind)
    ) {
      if (attempts > 1 && error instanceof Error) {
        error.message += ` (after ${attempts} attempts)`;
      }
      return Promise.reject(error);
    }
    return new Promise<R>((resolve, reject) => {
      const waiting: Waiting = {
        info: task.info,
        reject,
        timer: setTimeout(() => {
          this.#waiting.delete(waiting);
          this.#retried++;
          let next: R | Promise<R>;
          try {
            next = this.#inner.run(task);
          } catch (error) {
            next = Promise.reject(error);
          }
          Promise.resolve(next).then(
            resolve,
            (error) =>
              this.#again(task, error, attempts + 1).then(resolve, reject),
          );
        }, retryDelay(this.#delay, attempts)),
      };
      this.#waiting.add(waiting);
    });
  }

  close(): Promise<void> {
    // The emitter closes its runner once every chunk settled: no retry waits.
    return this.#inner.close();
  }

  abort(reason: unknown): Promise<void> {
    this.#aborted = true;
    for (const waiting of this.#waiting) {
      clearTimeout(waiting.timer);
      waiting.reject(
        new ChunkError(
          "aborted",
          waiting.info,
          this.#mode,
          `the emitter was aborted while the chunk waited to be retried: ${
            message(reason)
          }`,
          { cause: reason },
        ),
      );
    }
    this.#waiting.clear();
    return this.#inner.abort(reason);
  }

  counts(): RunnerCounts {
    return { ...this.#inner.counts(), retried: this.#retried };
  }
}
