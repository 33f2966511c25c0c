// Copyright the @ocycle/core authors. MIT license.
// The one place that knows every mode: it picks the runner of a mode. Serial
// mode is loaded with the emitter; every other mode (thread, process, redis,
// the CLI's commands, and `retries`) is imported when its emitter hands on its
// first chunk, each by a literal `import()` so that `deno cache` and
// `deno compile` still find it. A serial program never loads a pool.

import { ChunkError } from "../chunk_error.ts";
import type { Callback, Mode } from "../chunk_info.ts";
import { layoutType } from "../wire/_layout.ts";
import type { ProcessSettings } from "../pool/_process_args.ts";
import {
  message,
  type Runner,
  type RunnerCounts,
  type Task,
} from "./_runner.ts";
import type { RedisSettingsOption } from "../fleet/_producer.ts";
import { SerialRunner } from "./_serial.ts";
import type { TransportKind } from "../pool/_transport.ts";

/** Everything a runner is made from, checked by the emitter. */
export interface RunnerSettings<C, R>
  extends Omit<ProcessSettings, "url" | "timeout"> {
  readonly mode: Mode;
  /** The callback, or the URL of the module that exports it. */
  readonly callback: Callback<C, R> | URL;
  /** Threads or children in the pool. */
  readonly pool: number;
  /** Chunks each thread or child may hold at once. */
  readonly concurrency: number;
  /** Milliseconds a chunk may run, from its start; Infinity for no limit. */
  readonly timeout: number;
  /** Milliseconds a thread or child may take to start, and a chunk may wait for one. */
  readonly startTimeout: number;
  /** Milliseconds an idle thread or child is kept; Infinity until close(). */
  readonly idleTimeout: number;
  /**
   * Elements written to the emitter so far: a pool is idle only while this
   * does not move, so a stream still being written keeps its threads.
   */
  readonly activity?: (() => number) | undefined;
  /** Attempts after the first for a chunk that crashed or timed out. */
  readonly retries: number;
  /** Milliseconds before the first retry, doubled for each next one. */
  readonly retryDelay: number;
  /** A transport of the caller's own (the CLI's commands), in place of the mode's. */
  readonly transport?: TransportKind<unknown> | undefined;
  /** Redis mode: the server, the stream and the bound on chunks in flight. */
  readonly redis?: RedisSettingsOption | undefined;
}

/** Makes the runner of a mode: serial at once, any other when first needed. */
export function createRunner<C, R>(
  settings: RunnerSettings<C, R>,
): Runner<C, R> {
  if (isSerial(settings) && settings.retries === 0) {
    return new SerialRunner(
      settings.callback,
      settings.exportName,
      settings.timeout,
    );
  }
  return new LoadingRunner(settings);
}

/** Whether the callback runs inline: serial mode, or a function (the CLI's). */
function isSerial<C, R>(settings: RunnerSettings<C, R>): boolean {
  const { mode, callback, transport } = settings;
  if (transport !== undefined) return false;
  if (mode === "redis" && settings.redis !== undefined) return false;
  return mode === "serial" || typeof callback === "function";
}

/**
 * What the queue must know of a runner before its mode is loaded: how many
 * chunks may run at once, and whether the callback gets a copy of the bytes
 * (then the buffer stays the emitter's). The runner loaded must agree.
 */
function traits<C, R>(
  settings: RunnerSettings<C, R>,
): Pick<Runner<C, R>, "capacity" | "copies"> {
  const { mode, pool, concurrency, transport, redis } = settings;
  if (transport !== undefined) {
    return { capacity: pool * concurrency, copies: transport.copies };
  }
  if (mode === "redis" && redis !== undefined) {
    // The bytes leave for the server.
    return { capacity: redis.inFlight, copies: true };
  }
  if (isSerial(settings)) return { capacity: 1, copies: false };
  if (mode === "thread") {
    // A thread is sent a copy of bytes and samples only when a retry may
    // need them after the thread died with the original.
    const copies = settings.retries > 0 &&
      layoutType(settings.layout) !== undefined;
    return { capacity: pool * concurrency, copies };
  }
  // A child reads the bytes from a pipe.
  return { capacity: pool * concurrency, copies: true };
}

/** Imports the mode and makes its runner, with `retries` around it. */
async function load<C, R>(
  settings: RunnerSettings<C, R>,
): Promise<Runner<C, R>> {
  const runner = await modeRunner(settings);
  const { retries, retryDelay, mode } = settings;
  // Redis mode's retries are the fleet's: they travel with each chunk.
  if (retries === 0 || mode === "redis") return runner;
  const { RetryingRunner } = await import("./_retry.ts");
  return new RetryingRunner(runner, mode, retries, retryDelay);
}

async function modeRunner<C, R>(
  settings: RunnerSettings<C, R>,
): Promise<Runner<C, R>> {
  const { mode, callback, pool, concurrency, timeout, startTimeout } = settings;
  const options = {
    pool,
    concurrency,
    timeout,
    startTimeout,
    startDeadline: startTimeout,
    idleTimeout: settings.idleTimeout,
    activity: settings.activity,
  };
  if (settings.transport !== undefined) {
    const { Pool } = await import("../pool/_pool.ts");
    return new Pool(settings.transport, options) as Runner<C, R>;
  }
  if (mode === "redis" && settings.redis !== undefined) {
    const { RedisRunner } = await import("../fleet/_producer.ts");
    const { url, stream, group, inFlight } = settings.redis;
    return new RedisRunner({
      owner: settings.owner,
      url,
      stream,
      group,
      inFlight,
      layout: settings.layout,
      timeout,
      retries: settings.retries,
      retryDelay: settings.retryDelay,
    }) as Runner<C, R>;
  }
  if (isSerial(settings)) {
    return new SerialRunner(callback, settings.exportName, timeout);
  }
  const remote = { ...settings, url: callback as URL, timeout };
  const [{ Pool }, kind] = await Promise.all([
    import("../pool/_pool.ts"),
    mode === "thread"
      ? import("../pool/_thread.ts").then(({ ThreadKind }) =>
        new ThreadKind(remote)
      )
      : import("../pool/_process.ts").then(({ ProcessKind }) =>
        new ProcessKind(remote)
      ),
  ]);
  return new Pool(kind as TransportKind<unknown>, options) as Runner<C, R>;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * A mode's runner, imported and made when the first chunk comes; every call
 * after that goes straight to it.
 */
class LoadingRunner<C, R> implements Runner<C, R> {
  readonly capacity: number;
  readonly copies: boolean;
  readonly #settings: RunnerSettings<C, R>;
  #runner: Runner<C, R> | undefined;
  #loading: Promise<Runner<C, R>> | undefined;
  #aborted: { reason: unknown } | undefined;

  constructor(settings: RunnerSettings<C, R>) {
    this.#settings = settings;
    ({ capacity: this.capacity, copies: this.copies } = traits(settings));
  }

  run(task: Task<C>): R | Promise<R> {
    const runner = this.#runner;
    if (runner !== undefined) return runner.run(task);
    this.#loading ??= load(this.#settings).then((loaded) => {
      if (
        loaded.capacity !== this.capacity || loaded.copies !== this.copies
      ) {
        throw new Error(
          `the runner of ${this.#settings.mode} mode has capacity ${loaded.capacity} and copies ${loaded.copies}, where ${this.capacity} and ${this.copies} were said`,
        );
      }
      return this.#runner = loaded;
    });
    const { mode } = this.#settings;
    return this.#loading.then(
      (loaded) => {
        if (this.#aborted === undefined) return loaded.run(task);
        const { reason } = this.#aborted;
        throw new ChunkError(
          "aborted",
          task.info,
          mode,
          `the emitter was aborted: ${message(reason)}`,
          { cause: reason },
        );
      },
      (error) => {
        throw new ChunkError(
          "startup",
          task.info,
          mode,
          `${mode} mode could not be loaded: ${message(error)}`,
          { cause: error },
        );
      },
    );
  }

  close(): Promise<void> {
    if (this.#runner !== undefined) return this.#runner.close();
    return this.#loading?.then((r) => r.close(), () => {}) ?? RESOLVED;
  }

  abort(reason: unknown): Promise<void> {
    this.#aborted ??= { reason };
    if (this.#runner !== undefined) return this.#runner.abort(reason);
    return this.#loading?.then((r) => r.abort(reason), () => {}) ?? RESOLVED;
  }

  counts(): RunnerCounts {
    return this.#runner?.counts() ?? { workers: 0, replaced: 0 };
  }
}
