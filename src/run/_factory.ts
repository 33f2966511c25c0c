// Copyright the @ocycle/core authors. MIT license.
// The one place that knows every mode: it picks the runner of a mode.

import type { Callback, Mode } from "../chunk_info.ts";
import { Pool } from "./_pool.ts";
import { ProcessKind } from "./_process.ts";
import type { ProcessSettings } from "./_process_args.ts";
import type { Runner } from "./_runner.ts";
import { RedisRunner, type RedisSettingsOption } from "./_redis.ts";
import { RetryingRunner } from "./_retry.ts";
import { SerialRunner } from "./_serial.ts";
import { ThreadKind } from "./_thread.ts";
import type { TransportKind } from "./_transport.ts";

/** Everything a runner is made from, checked by the emitter. */
export interface RunnerSettings<C, R>
  extends Omit<ProcessSettings, "url" | "timeout"> {
  readonly mode: Mode;
  /** The callback, or the URL of the module that exports it. */
  readonly callback: Callback<C, R> | URL;
  /** Workers or children in the pool. */
  readonly pool: number;
  /** Chunks each Worker or child may hold at once. */
  readonly concurrency: number;
  /** Milliseconds a chunk may run, from its start; Infinity for no limit. */
  readonly timeout: number;
  /** Milliseconds a Worker or child may take to start, and a chunk may wait for one. */
  readonly startTimeout: number;
  /** Milliseconds an idle Worker or child is kept; Infinity until close(). */
  readonly idleTimeout: number;
  /** Attempts after the first for a chunk that crashed or timed out. */
  readonly retries: number;
  /** Milliseconds before the first retry, doubled for each next one. */
  readonly retryDelay: number;
  /** A transport of the caller's own (the CLI's commands), in place of the mode's. */
  readonly transport?: TransportKind<unknown> | undefined;
  /** Redis mode: the server, the stream and the bound on chunks in flight. */
  readonly redis?: RedisSettingsOption | undefined;
}

/** Makes the runner of a mode. */
export function createRunner<C, R>(
  settings: RunnerSettings<C, R>,
): Runner<C, R> {
  const runner = modeRunner(settings);
  const { retries, retryDelay, mode } = settings;
  // Redis mode's retries are the fleet's: they travel with each chunk.
  if (retries === 0 || mode === "redis") return runner;
  return new RetryingRunner(runner, mode, retries, retryDelay);
}

function modeRunner<C, R>(settings: RunnerSettings<C, R>): Runner<C, R> {
  const { mode, callback, pool, concurrency, timeout, startTimeout } = settings;
  const options = {
    pool,
    concurrency,
    timeout,
    startTimeout,
    startDeadline: startTimeout,
    idleTimeout: settings.idleTimeout,
  };
  if (settings.transport !== undefined) {
    return new Pool(settings.transport, options) as Runner<C, R>;
  }
  if (mode === "redis" && settings.redis !== undefined) {
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
  if (mode === "serial" || typeof callback === "function") {
    return new SerialRunner(callback, settings.exportName, timeout);
  }
  const remote = { ...settings, url: callback, timeout };
  const kind = mode === "thread"
    ? new ThreadKind(remote)
    : new ProcessKind(remote);
  return new Pool(kind as TransportKind<unknown>, options) as Runner<C, R>;
}
