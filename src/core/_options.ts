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
import { toModuleUrl } from "../run/_module_url.ts";
import { processOptions } from "../run/_process_args.ts";
import type { TransportKind } from "../run/_transport.ts";
import {
  createKind,
  describeValue,
  type EmitterKind,
  type Kind,
} from "./_kinds.ts";
import type { QueueSettings } from "./_queue.ts";
import type { CutSettings } from "./_write_path.ts";

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

/** Chunks each Worker or child holds by default. */
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
    concurrency = defaultConcurrency(mode),
    maxPending = 16,
    overflow = "queue",
    maxWait = Infinity,
    timeout = Infinity,
    signal,
    exportName = "default",
    [TRANSPORT]: transport,
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
    throw new TypeError(fail("mode", `"serial", "thread" or "process"`, mode));
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
  const process = processOptions(options, owner);

  let source: Callback<C, R> | URL;
  if (typeof callback === "function") {
    if (mode !== "serial" && transport === undefined) {
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

  const kind = createKind(kindName, options, owner);
  if (borrow && !kind.pooled) {
    throw new TypeError(
      `Cannot create ${owner} with 'borrow: true' as only bytes and samples are pooled: ${kindName} chunks always belong to the callback`,
    );
  }
  const serial = mode === "serial" && transport === undefined;
  return {
    kind,
    cut: {
      owner,
      size,
      hop: hop ?? size,
      clip,
      sampler: typeof sampler === "number" ? () => sampler : sampler,
      maxWait,
    },
    queue: {
      owner,
      mode,
      borrow,
      maxPending,
      overflow,
      unit: kind.unit,
      onDone,
      onError,
    },
    runner: {
      mode,
      callback: source,
      exportName,
      pool: serial ? 1 : pool,
      concurrency: serial ? 1 : concurrency,
      timeout,
      layout: kind.layout,
      borrow,
      owner,
      transport,
      ...process,
    },
    signal,
  };
}

function isPositiveInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}
