// Copyright the @ocycle/core authors. MIT license.
/**
 * The options and counts shared by every emitter.
 *
 * @module
 */

import type { BufferCounts } from "./core/_buffer_pool.ts";
import type { TypedArray, TypedArrayConstructor } from "./wire/_layout.ts";
import type { Callback, ChunkInfo, Mode } from "./chunk_info.ts";
import type { ChunkError } from "./chunk_error.ts";

export type { EmitterKind } from "./core/_kinds.ts";

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

/**
 * Redis mode: where the chunks go. Workers started on any machine with
 * `ocycle worker` or {@linkcode runWorker} on the same stream and group run
 * them; results come back to this emitter.
 */
export interface RedisOptions {
  /**
   * The server: `redis://[user[:password]@]host[:port][/db]`, or `rediss://`
   * for TLS. Messages and errors show it only with its password redacted;
   * keep the password out of source code and command lines, e.g.
   * `url: Deno.env.get("REDIS_URL")!`.
   */
  url: string;
  /** The key of the chunk stream the workers read. */
  stream: string;
  /**
   * The consumer group the workers read in.
   *
   * @default {"ocycle"}
   */
  group?: string;
  /**
   * Chunks in flight across the fleet (added and not answered yet): the
   * bound behind `write()`'s `false` and `ready`.
   *
   * @default {64}
   */
  inFlight?: number;
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
   * Everything dropped is counted in `stats.dropped`. T is the write's `t0`
   * when given (the data's own clock), else the monotonic clock
   * (`performance.now()`), so a step of the wall clock drops nothing. The
   * function is asked before the chunk is cut: if it throws or returns a bad
   * value, `write()` throws with nothing of the frame written.
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
   * (`"thread"`), in a pool of Deno subprocesses (`"process"`), or on a fleet
   * of workers on any machine, through a Redis stream (`"redis"`, with the
   * `redis` option). In redis mode the callback is the URL of the module the
   * workers were started with; it is never sent to them.
   *
   * @default {"serial"}
   */
  mode?: Mode;
  /** Redis mode: the server, the stream and the bound on chunks in flight. */
  redis?: RedisOptions;
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
   * With `overflow: "queue"`, how many chunks may wait at all: a writer that
   * ignores `write()`'s `false` then gets a `RangeError` (naming this option)
   * from the next `write()` that would complete a chunk, so that memory stays
   * bounded however the writer behaves; nothing is dropped. One large write
   * respects it too: what it cannot cut yet waits (copied) and is cut as the
   * queue drains. A microphone callback that cannot wait should choose a drop
   * policy instead.
   *
   * @default {4 * maxPending, at least 64 (Infinity when maxPending is)}
   */
  maxQueued?: number;
  /**
   * What happens to a chunk emitted while `maxPending` chunks wait: keep it
   * (`write()` has already said to slow down) up to `maxQueued`, drop it, or
   * drop the oldest waiting chunk. Dropped chunks are counted in `stats`.
   *
   * @default {"queue"}
   */
  overflow?: Overflow;
  /**
   * Milliseconds after which a non-empty partial chunk is emitted, measured
   * from the arrival of its first element on the monotonic clock (a timer),
   * never the wall clock.
   *
   * @default {Infinity}
   */
  maxWait?: number;
  /**
   * Milliseconds a chunk's callback may run, measured from its start: in
   * thread and process modes, from when its Worker or child has settled the
   * chunks sent to it before this one, so waiting in a queue is not charged.
   * A chunk that takes longer fails with a `ChunkError` of kind `"timeout"`;
   * its Worker or child is ended and replaced. In redis mode it bounds the
   * round trip, from when the chunk is sent (its XADD) to its result
   * (a worker's own `timeout` bounds the callback); the entry is then
   * deleted, and a result that comes later is dropped.
   *
   * @default {Infinity}
   */
  timeout?: number;
  /**
   * Thread and process modes: milliseconds a Worker or child may take to load
   * the callback module (its top-level code) and say it is ready, before it
   * is ended and another is tried (3 in a row, then every chunk fails with
   * kind `"startup"`); also the longest a chunk waits for one to start. Raise
   * it for a module that loads a large model at its top level.
   *
   * @default {10000}
   */
  startTimeout?: number;
  /**
   * Times a chunk is run again after it failed with a `ChunkError` of kind
   * `"crash"` (its Worker or child died) or `"timeout"` (it ran past
   * `timeout`), in every mode; other failures, such as a throw of the
   * callback, are never retried. A chunk that still fails goes to `onError`
   * with its last error, whose message ends "(after N attempts)". A chunk
   * waiting to be retried keeps its slot and its buffer. In thread mode
   * `retries > 0` makes each attempt send a copy of the bytes (one copy of
   * the chunk per attempt) rather than transfer them, so that a Worker that
   * dies cannot take them along. In serial mode a timed-out callback cannot
   * be stopped: a retry runs beside it. In redis mode the count travels with
   * the chunk and the workers apply it (a chunk whose worker died is taken
   * over by another), a chunk that still fails also goes to the dead-letter
   * stream `<stream>:dead`, and a chunk whose entry was lost (Redis restarted
   * empty) is added again.
   *
   * @default {0}
   */
  retries?: number;
  /**
   * Milliseconds before the first retry (see `retries`); doubled for each
   * next one, capped at 10000, then between half of it and all of it at
   * random (jitter).
   *
   * @default {100}
   */
  retryDelay?: number;
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
  /**
   * Attempts run again under `retries`: a chunk that succeeded on its third
   * attempt counts 2. Each is also counted in `replaced` when its Worker or
   * child was (thread and process modes); `done` and `failed` count the chunk
   * once.
   */
  readonly retried: number;
}

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
