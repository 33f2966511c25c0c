// Copyright the @ocycle/core authors. MIT license.
// Every option of an emitter, checked in one place and turned into the
// settings of the parts that use it: the write path, the queue and the
// runner. Each error names the option and the value it received.

import type { Callback, Mode } from "../chunk_info.ts";
import type {
  CallbackSource,
  EmitterOptions,
  SampleFormatOptions,
} from "../emitter_options.ts";
import type { TypedArray } from "../wire/_layout.ts";
import type { RunnerSettings } from "../run/_factory.ts";
import type { RedisSettingsOption } from "../fleet/_producer.ts";
import { toModuleUrl } from "../run/_module_url.ts";
import { IDLE_TIMEOUT, START_TIMEOUT } from "../pool/_slot.ts";
import { moduleReadFlag, processOptions } from "../pool/_process_options.ts";
import { parseRedisUrl } from "../fleet/_url.ts";
import type { RedisOptions } from "../emitter_options.ts";
import type { TransportKind } from "../pool/_transport.ts";
import {
  createKind,
  describeValue,
  type EmitterKind,
  type Kind,
} from "./_kinds.ts";
import type { QueueSettings } from "./_queue.ts";
import {
  checkRules,
  FUNCTION,
  isPositiveInteger,
  MILLISECONDS,
  POSITIVE,
  type Rule,
  SIGNAL,
  TEXT,
} from "./_rules.ts";
import type { CutSettings } from "./_write_types.ts";

/**
 * The key of an option only this package's own code passes: a transport of
 * its own in place of the mode's (the command line's `--exec` commands).
 */
export const TRANSPORT: unique symbol = Symbol("ocycle.transport");

/** The options an emitter's constructor takes, with the package's own. */
export type AllOptions<R> =
  & EmitterOptions<R>
  & SampleFormatOptions<TypedArray>
  & { [TRANSPORT]?: TransportKind<unknown> };

/** Chunks each thread or child holds by default. */
export function defaultConcurrency(mode: Mode): number {
  return mode === "thread" ? 8 : 2;
}

/** The checked options, as each part takes them. */
export interface Settings<C, R> {
  // deno-lint-ignore no-explicit-any
  readonly kind: Kind<any, any, C>;
  readonly cut: CutSettings;
  readonly queue: QueueSettings<R>;
  readonly runner: RunnerSettings<C, R>;
  readonly signal: AbortSignal | undefined;
}

const positive = POSITIVE;
const milliseconds = MILLISECONDS;
const fn = FUNCTION;

/** The rule of every option that has one, checked on the value after defaults. */
const RULES: Readonly<Record<string, Rule>> = {
  size: positive,
  clip: [(v) => typeof v === "boolean", "a boolean", TypeError],
  hop: positive,
  sampler: [
    (v) =>
      typeof v === "function" ||
      (typeof v === "number" && v >= 0 && v < Infinity),
    "a finite number of milliseconds >= 0 or a function",
    RangeError,
  ],
  mode: [
    (v) => v === "serial" || v === "thread" || v === "process" || v === "redis",
    `"serial", "thread", "process" or "redis"`,
    TypeError,
  ],
  pool: positive,
  concurrency: positive,
  maxPending: [
    (v) => v === Infinity || (Number.isSafeInteger(v) && (v as number) >= 0),
    "an integer >= 0 or Infinity",
    RangeError,
  ],
  maxQueued: [
    (v) => v === Infinity || (Number.isSafeInteger(v) && (v as number) > 0),
    "a positive integer or Infinity",
    RangeError,
  ],
  overflow: [
    (v) => v === "queue" || v === "drop-newest" || v === "drop-oldest",
    `"queue", "drop-newest" or "drop-oldest"`,
    TypeError,
  ],
  maxWait: milliseconds,
  timeout: milliseconds,
  startTimeout: milliseconds,
  idleTimeout: milliseconds,
  retries: [
    (v) => Number.isSafeInteger(v) && (v as number) >= 0,
    "an integer >= 0",
    RangeError,
  ],
  retryDelay: [
    (v) => typeof v === "number" && v >= 0 && v < Infinity,
    "a finite number of milliseconds >= 0",
    RangeError,
  ],
  onDone: fn,
  onError: fn,
  signal: SIGNAL,
  exportName: TEXT,
};

/** The settings made last, held weakly, only to be shared by the next emitter. */
const LAST_CUT: { last?: WeakRef<CutSettings> } = {};
// deno-lint-ignore no-explicit-any
const LAST_QUEUE: { last?: WeakRef<QueueSettings<any>> } = {};

/**
 * The settings made last when `made` equals them, else `made`, kept for the
 * next: the parts keep their settings, never change them, and thousands of
 * emitters made alike then hold one object, which stays in the cache,
 * rather than a copy each. Only the last is kept, and weakly: no table
 * grows, and an `onDone` (with all it holds) goes with its last emitter.
 */
function shared<T extends object>(slot: { last?: WeakRef<T> }, made: T): T {
  const last = slot.last?.deref();
  if (last !== undefined) {
    let equal = true;
    for (const key in made) {
      if (!Object.is(made[key], last[key])) {
        equal = false;
        break;
      }
    }
    if (equal) return last;
  }
  slot.last = new WeakRef(made);
  return made;
}

/**
 * Checks an emitter's arguments.
 *
 * @throws {TypeError} If an option has the wrong type.
 * @throws {RangeError} If a number is out of range.
 */
export function checkOptions<C, R>(
  kindName: EmitterKind,
  owner: string,
  callback: CallbackSource<C, R>,
  size: number,
  options: AllOptions<R>,
): Settings<C, R> {
  const {
    clip = false,
    hop,
    sampler,
    borrow = false,
    onDone,
    onError,
    mode = "serial",
    pool = navigator.hardwareConcurrency ?? 1,
    concurrency = defaultConcurrency(mode),
    maxPending = 16,
    maxQueued = maxPending === Infinity
      ? Infinity
      : Math.max(64, 4 * maxPending),
    overflow = "queue",
    maxWait = Infinity,
    timeout = Infinity,
    startTimeout = START_TIMEOUT,
    idleTimeout = IDLE_TIMEOUT,
    retries = 0,
    retryDelay = 100,
    signal,
    exportName = "default",
    [TRANSPORT]: transport,
  } = options;
  const values = {
    size,
    clip,
    hop,
    sampler,
    mode,
    pool,
    concurrency,
    maxPending,
    maxQueued,
    overflow,
    maxWait,
    timeout,
    startTimeout,
    idleTimeout,
    retries,
    retryDelay,
    onDone,
    onError,
    signal,
    exportName,
  };
  checkRules(owner, RULES, values);
  if (maxQueued < maxPending) {
    throw new RangeError(
      `Cannot create ${owner} as 'maxQueued' must be at least 'maxPending' (${maxPending}): received ${maxQueued}`,
    );
  }
  if (hop !== undefined && !clip) {
    throw new TypeError(
      `Cannot create ${owner} as 'hop' requires 'clip: true': received hop ${hop} without clip`,
    );
  }
  const process = processOptions(options, owner);
  const redis = redisOptions(options.redis, mode, owner);
  const source = callbackSource(callback, mode, transport, owner);
  const kind = createKind(kindName, options, owner);
  if (borrow && !kind.pooled) {
    throw new TypeError(
      `Cannot create ${owner} with 'borrow: true' as only bytes and samples are pooled: ${kindName} chunks always belong to the callback`,
    );
  }
  const serial = mode === "serial" && transport === undefined;
  if (mode === "process" && transport === undefined) {
    // Here, not when process mode loads with the first chunk.
    moduleReadFlag(source as URL, process.permissionFlags, owner);
  }
  return {
    kind,
    cut: shared(LAST_CUT, {
      owner,
      size,
      hop: hop ?? size,
      clip,
      sampler: typeof sampler === "number" ? () => sampler : sampler,
      maxWait,
    }),
    queue: shared(LAST_QUEUE, {
      owner,
      mode,
      borrow,
      maxPending,
      maxQueued,
      overflow,
      unit: kind.unit,
      onDone,
      onError,
    }),
    runner: {
      mode,
      callback: source,
      exportName,
      pool: serial ? 1 : pool,
      concurrency: serial ? 1 : concurrency,
      timeout,
      startTimeout,
      idleTimeout,
      retries,
      retryDelay,
      layout: kind.layout,
      borrow,
      owner,
      transport,
      redis,
      ...process,
    },
    signal,
  };
}

/**
 * The callback as a function or a module URL.
 *
 * @throws {TypeError} If it is neither, or a function where it cannot go.
 */
function callbackSource<C, R>(
  callback: CallbackSource<C, R>,
  mode: Mode,
  transport: unknown,
  owner: string,
): Callback<C, R> | URL {
  if (typeof callback === "function") {
    if (mode !== "serial" && transport === undefined) {
      throw new TypeError(
        `Cannot create ${owner} in ${mode} mode as a function cannot cross into a ${
          mode === "thread"
            ? "Worker"
            : mode === "redis"
            ? "worker on another machine"
            : "child process"
        }: pass the URL of a module that exports the callback, e.g. new URL("./callback.ts", import.meta.url)`,
      );
    }
    return callback;
  }
  if (callback instanceof URL) return callback;
  if (typeof callback === "string" && callback !== "") {
    return toModuleUrl(callback);
  }
  throw new TypeError(
    `Cannot create ${owner} as 'callback' must be a function or the URL of a module that exports one: received ${
      describeValue(callback)
    }`,
  );
}

/**
 * Checks the `redis` option against the mode.
 *
 * @throws {TypeError} If it is missing in redis mode, given in another, or a part is not a non-empty string.
 * @throws {RangeError} If `inFlight` is not a positive integer.
 */
function redisOptions(
  redis: RedisOptions | undefined,
  mode: Mode,
  owner: string,
): RedisSettingsOption | undefined {
  if (mode !== "redis") {
    if (redis !== undefined) {
      throw new TypeError(
        `Cannot create ${owner} as 'redis' is for mode "redis": received mode ${
          JSON.stringify(mode)
        }`,
      );
    }
    return undefined;
  }
  if (typeof redis !== "object" || redis === null) {
    throw new TypeError(
      `Cannot create ${owner} in redis mode as 'redis' must be an object with 'url' and 'stream': received ${
        describeValue(redis)
      }`,
    );
  }
  const { url, stream, group = "ocycle", inFlight = 64 } = redis;
  for (const [name, value] of Object.entries({ url, stream, group })) {
    if (typeof value !== "string" || value === "") {
      throw new TypeError(
        `Cannot create ${owner} as 'redis.${name}' must be a non-empty string: received ${
          describeValue(value)
        }`,
      );
    }
  }
  try {
    parseRedisUrl(url);
  } catch (error) {
    throw new TypeError(
      `Cannot create ${owner} as 'redis.url' must be a redis:// or rediss:// URL: ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
  if (!isPositiveInteger(inFlight)) {
    throw new RangeError(
      `Cannot create ${owner} as 'redis.inFlight' must be a positive integer: received ${
        describeValue(inFlight)
      }`,
    );
  }
  return { url, stream, group, inFlight };
}
