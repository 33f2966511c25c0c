// Copyright the @ocycle/core authors. MIT license.
// The options of the `ocycle` command line are checked once, by the library:
// parseCliArgs has checkOptions judge the emitter it will make (the plan
// below, the same one the run makes) before stdin is read, and `ocycle
// worker` has runWorker judge its options as the worker starts. A refusal
// (a TypeError or RangeError naming the library's option) is told in the
// command line's terms: the flag, and the text the user typed.

import type { BufferEmitOptions } from "../buffer_emit.ts";
import type { CallbackSource } from "../emitter_options.ts";
import { type AllOptions, checkOptions, TRANSPORT } from "../core/_options.ts";
import type { TransportKind } from "../pool/_transport.ts";
import type { CliOptions } from "./_cli_options.ts";
import { UsageError } from "./_flags.ts";

/**
 * What the user typed for each option the library checks, by the option's
 * name in the library (`pool`, `redis.stream`, `permissions.read`), so that
 * a refusal shows the text and not the number it became.
 */
export type Typed = Map<string, string>;
const TYPED = new WeakMap<object, Typed>();

/** Keeps what the user typed for the options parsed from it. */
export function remember(options: object, typed: Typed): void {
  TYPED.set(options, typed);
}

/** The emitter a command line asks for, but for its onDone and onError. */
export interface EmitterPlan {
  callback: CallbackSource<Uint8Array, unknown>;
  size: number;
  options: BufferEmitOptions<unknown>;
}

/**
 * The callback, size and options of the BufferEmit that runs `cli`: its
 * module (or, for `--exec`, a transport of commands) in a local pool, or a
 * fleet through Redis. The same plan is checked by parseCliArgs and run.
 */
export function emitterPlan(
  cli: CliOptions,
  module: URL | string | undefined,
  commands: TransportKind<unknown> | undefined,
): EmitterPlan {
  const { redis, size } = cli;
  const options: BufferEmitOptions<unknown> = {
    clip: cli.clip,
    ...(cli.hop === undefined ? {} : { hop: cli.hop }),
    // The sink's room paces the input: the emitter queues what its runners
    // cannot take yet.
    maxPending: Infinity,
    ...(cli.timeout === undefined ? {} : { timeout: cli.timeout }),
    ...(cli.retries === undefined ? {} : { retries: cli.retries }),
    ...(cli.retryDelay === undefined ? {} : { retryDelay: cli.retryDelay }),
  };
  if (redis !== undefined) {
    const fleet = {
      url: redis.url,
      stream: redis.stream,
      ...(redis.group === undefined ? {} : { group: redis.group }),
      ...(redis.inFlight === undefined ? {} : { inFlight: redis.inFlight }),
    };
    return {
      callback: module!,
      size,
      options: { ...options, mode: "redis", redis: fleet },
    };
  }
  if (cli.exec === undefined) {
    return {
      callback: module!,
      size,
      options: {
        ...options,
        pool: cli.pool,
        mode: cli.mode,
        exportName: cli.exportName,
        ...(cli.mode === "process" ? { permissions: cli.allow } : {}),
      },
    };
  }
  const execOptions: AllOptions<unknown> = {
    ...options,
    pool: cli.pool,
    mode: "process",
    concurrency: 1,
    ...(commands === undefined ? {} : { [TRANSPORT]: commands }),
  };
  return { callback: () => {}, size, options: execOptions };
}

/**
 * What checkOptions is shown of `--exec`'s transport: it only asks whether
 * there is one (then a function may be the callback in process mode).
 */
const COMMANDS = {} as TransportKind<unknown>;

/** Has the library check the emitter of `cli`, as the emitter itself will. */
export function checkEmitter(cli: CliOptions): void {
  const plan = emitterPlan(cli, cli.module, COMMANDS);
  try {
    checkOptions("bytes", "BufferEmit", plan.callback, plan.size, plan.options);
  } catch (error) {
    throw usageError(error, cli);
  }
}

/**
 * The flag that gives each option the library checks, for messages. Not the
 * Redis URL: it is checked where it is read (_redis_source.ts), and named by
 * where it came from, a flag, a file or REDIS_URL.
 */
const FLAGS: Readonly<Record<string, string>> = {
  size: "--size",
  clip: "--clip",
  hop: "--hop",
  mode: "--mode",
  pool: "--pool",
  timeout: "--timeout",
  retries: "--retries",
  retryDelay: "--retry-delay",
  exportName: "--export",
  callback: "--module",
  module: "--module",
  permissions: "--allow",
  "redis.stream": "--stream",
  "redis.group": "--group",
  "redis.inFlight": "--in-flight",
  stream: "--stream",
  group: "--group",
  name: "--name",
};

/**
 * The library's refusal of an option (a TypeError or RangeError, "Cannot
 * create X as 'pool' must be ...: received number 0") in the command line's
 * terms: the flag for the option, and what the user typed for the value
 * (`--pool must be a positive integer: received "0"`). Any other error is
 * thrown again.
 *
 * @param options What parseCliArgs or parseWorkerArgs returned.
 */
export function usageError(error: unknown, options: object): UsageError {
  if (!(error instanceof TypeError || error instanceof RangeError)) {
    throw error;
  }
  const match = /^Cannot create \S+ (?:in \S+ mode )?as '([^']+)'(.*)$/s
    .exec(error.message);
  const flagOf = (name: string) => FLAGS[name] ?? FLAGS[name.split(".")[0]!];
  const flag = match === null ? undefined : flagOf(match[1]!);
  if (match === null || flag === undefined) {
    return new UsageError(error.message, { cause: error });
  }
  // A flag's value is always a string: what can be wrong is that it is "".
  let rest = match[2]!.replace(
    /^ must be a non-empty string/,
    " must not be empty",
  )
    .replace(
      /'([^':]+)(?:: true)?'/g,
      (quoted, name) => flagOf(name) ?? quoted,
    );
  const text = TYPED.get(options)?.get(match[1]!);
  if (text !== undefined) {
    const at = rest.lastIndexOf(": received ");
    rest = `${at < 0 ? rest : rest.slice(0, at)}: received "${text}"`;
  }
  return new UsageError(`${flag}${rest}`, { cause: error });
}
