// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line's arguments, for its two commands (`ocycle`, which
// cuts stdin into chunks, and `ocycle worker`, which runs a fleet's chunks
// from Redis): the options they come to, the rules of the command line
// itself (which flags go together). The options are checked by the library,
// before anything starts, in _check.ts; the flags' syntax is _flags.ts; the
// --help texts are _help.ts.

import type { ChildPermissions } from "../emitter.ts";
import type {
  CliOptions,
  CliRedis,
  LocalMode,
  WorkerCliOptions,
} from "./_cli_options.ts";
import { checkEmitter, remember, type Typed } from "./_check.ts";
import {
  type Flags,
  OCYCLE,
  type One,
  readFlags,
  UsageError,
  type ValueName,
  WORKER,
} from "./_flags.ts";
import { message } from "./_common.ts";
import {
  type Environment,
  PROCESS_ENV,
  readRedisSource,
  REDIS_URL_VARIABLE,
  RedisSourceError,
} from "./_redis_source.ts";
import {
  type AudioFormat,
  bytesPerFrame,
  parseDuration,
  parseSize,
} from "./_units.ts";

export { UsageError } from "./_flags.ts";

export type {
  CliOptions,
  CliRedis,
  LocalMode,
  WorkerCliOptions,
} from "./_cli_options.ts";

/**
 * Parses the command line of `ocycle` (not `ocycle worker`: see
 * parseWorkerArgs), and has the library check the emitter it asks for, so
 * that a bad option is refused before stdin is read.
 *
 * @throws {UsageError} Naming the flag and the value.
 */
export function parseCliArgs(
  args: readonly string[],
  env: Environment = PROCESS_ENV,
): CliOptions {
  const flags = readFlags(args, OCYCLE);
  const typed: Typed = new Map();
  const help = flags.has("help");
  const running = readRunning(flags, help, env, typed);
  const keepFailed = flags.has("keep-failed");
  if (keepFailed && running.exec === undefined && !help) {
    throw new UsageError(
      `--keep-failed is for --exec: a failed handler has no output to keep`,
    );
  }
  const exportName = flags.one("--export");
  if (exportName !== undefined) typed.set("exportName", exportName);
  const options: CliOptions = {
    ...readChunking(flags.one, flags.has("clip"), typed),
    ...running,
    ...readRetries(flags.one, running, typed),
    exportName: exportName ?? "default",
    keepOrder: flags.has("keep-order"),
    keepFailed,
    quiet: flags.has("quiet"),
    help,
  };
  remember(options, typed);
  if (!help) checkEmitter(options);
  return options;
}

/**
 * Parses the command line of `ocycle worker`, the arguments after `worker`.
 * runWorker checks the options when the worker starts (startWorker).
 *
 * @throws {UsageError} Naming the flag and the value.
 */
export function parseWorkerArgs(
  args: readonly string[],
  env: Environment = PROCESS_ENV,
): WorkerCliOptions {
  const flags = readFlags(args, WORKER);
  const { one } = flags;
  const typed: Typed = new Map();
  const help = flags.has("help");
  const required = (flag: `--${ValueName}`, what: string) => {
    const value = one(flag);
    if (value === undefined && !help) {
      throw new UsageError(
        `ocycle worker needs ${flag} ${what} (see ocycle worker --help)`,
      );
    }
    return value ?? "";
  };
  const url = help ? "" : readRedisUrl(flags, env)?.url;
  if (url === undefined) {
    throw new UsageError(
      `ocycle worker needs --redis <url>: the Redis server to take chunks from (${FROM_ELSEWHERE}) (see ocycle worker --help)`,
    );
  }
  const stream = required(
    "--stream",
    "<name>: the Redis key of the chunk stream, the producer's --stream",
  );
  const module = required(
    "--module",
    "./handler.ts: the handler that runs each chunk",
  );
  const mode = readMode(one("--mode"));
  const texts = {
    stream,
    group: one("--group"),
    name: one("--name"),
    exportName: one("--export"),
    pool: one("--pool"),
    timeout: one("--timeout"),
  };
  for (const [option, text] of Object.entries(texts)) {
    if (text !== undefined) typed.set(option, text);
  }
  const options: WorkerCliOptions = {
    url,
    stream,
    group: texts.group,
    module,
    exportName: texts.exportName ?? "default",
    name: texts.name,
    mode,
    pool: texts.pool === undefined ? undefined : toNumber(texts.pool),
    allow: readAllow(flags.all("--allow"), mode, module, typed),
    timeout: readDuration("--timeout", texts.timeout),
    quiet: flags.has("quiet"),
    help,
  };
  remember(options, typed);
  return options;
}

/**
 * How stdin is cut: --size, --hop, --clip, and the audio format that turns
 * durations into bytes.
 */
function readChunking(
  one: One,
  clip: boolean,
  typed: Typed,
): Pick<CliOptions, "size" | "hop" | "clip"> {
  const rateText = one("--rate");
  let rate: number | undefined;
  if (rateText !== undefined) {
    rate = Number(rateText);
    if (!Number.isFinite(rate) || rate <= 0) {
      throw new UsageError(
        `--rate must be a positive number of frames per second: received "${rateText}"`,
      );
    }
  }
  const channelsText = one("--channels") ?? "1";
  const audio: AudioFormat = {
    rate,
    format: one("--format") ?? "s16le",
    channels: Number(channelsText),
  };
  const frameBytes = wrap(() => bytesPerFrame(audio));
  const sizeText = one("--size") ?? "1MiB";
  typed.set("size", sizeText);
  const size = wrap(() => parseSize("--size", sizeText, audio));
  const hopText = one("--hop");
  let hop: number | undefined;
  if (hopText !== undefined) {
    typed.set("hop", hopText);
    hop = wrap(() => parseSize("--hop", hopText, audio));
  }
  if (rate !== undefined && frameBytes > 1) {
    for (const [flag, bytes] of [["--size", size], ["--hop", hop]] as const) {
      if (bytes !== undefined && bytes % frameBytes !== 0) {
        throw new UsageError(
          `${flag} must be whole frames of ${frameBytes} bytes (${audio.format}, ${audio.channels} channel(s)): received ${bytes} bytes`,
        );
      }
    }
  }
  return { size, hop, clip };
}

/**
 * What runs each chunk (a command, a handler module in a local pool, or a
 * fleet through Redis), how many at once, and with which permissions.
 */
function readRunning(
  flags: Flags,
  help: boolean,
  env: Environment,
  typed: Typed,
): Pick<
  CliOptions,
  | "pool"
  | "timeout"
  | "exec"
  | "execText"
  | "module"
  | "mode"
  | "allow"
  | "redis"
> {
  const { one } = flags;
  const poolText = one("--pool");
  const timeoutText = one("--timeout");
  if (poolText !== undefined) typed.set("pool", poolText);
  if (timeoutText !== undefined) typed.set("timeout", timeoutText);
  const execText = one("--exec");
  const module = one("--module");
  const modeText = one("--mode");
  const [redis, redisLabel] = readRedis(flags, help, env, typed) ?? [];
  if (redis !== undefined) {
    // The producer runs nothing: how the chunks run is each worker's to say.
    if (execText !== undefined) {
      throw new UsageError(
        `--exec "${execText}" cannot go through --redis: the workers run a handler module, --module ./handler.ts`,
      );
    }
    if (module === undefined && !help) {
      throw new UsageError(
        `${redisLabel} needs --module ./handler.ts: the handler the workers run (each loads its own copy: ocycle worker --module)`,
      );
    }
    const workers: [string, string | undefined, string][] = [
      ["--mode", modeText, "--mode"],
      ["-j/--pool", poolText, "-j"],
      ["--export", one("--export"), "--export"],
      ["--allow", flags.all("--allow")[0], "--allow"],
    ];
    for (const [flag, value, theirs] of workers) {
      if (value !== undefined) {
        throw new UsageError(
          `${flag} ${value} is for a local --module: with --redis the chunks run on the workers, so give it to them (ocycle worker ${theirs})`,
        );
      }
    }
  }
  if (!help && execText === undefined && module === undefined) {
    throw new UsageError(
      `say what to do with each chunk: --exec "command args" or --module ./handler.ts (see --help)`,
    );
  }
  if (execText !== undefined && module !== undefined) {
    throw new UsageError(
      `give either --exec "${execText}" or --module ${module}, not both`,
    );
  }
  let exec: string[] | undefined;
  if (execText !== undefined) {
    exec = splitCommand(execText);
    if (modeText !== undefined) {
      throw new UsageError(
        `--mode ${modeText} is for --module: --exec always runs a command per chunk`,
      );
    }
  }
  const mode = readMode(modeText);
  return {
    pool: poolText === undefined
      ? navigator.hardwareConcurrency ?? 1
      : toNumber(poolText),
    timeout: readDuration("--timeout", timeoutText),
    exec,
    execText,
    module,
    mode,
    allow: readAllow(flags.all("--allow"), mode, module, typed),
    redis,
  };
}

/**
 * `--redis` (or `--redis-env`, `--redis-file`, or REDIS_URL with `--stream`),
 * `--stream`, `--group` and `--in-flight`, which go together.
 */
function readRedis(
  flags: Flags,
  help: boolean,
  env: Environment,
  typed: Typed,
): [redis: CliRedis, label: string] | undefined {
  const { one } = flags;
  const stream = one("--stream");
  const group = one("--group");
  const inFlightText = one("--in-flight");
  // A REDIS_URL in the environment sends the chunks to a fleet only when
  // the command line names a stream (or a flag names the URL).
  const named = one("--redis") !== undefined ||
    one("--redis-env") !== undefined || one("--redis-file") !== undefined;
  const source = named || stream !== undefined
    ? readRedisUrl(flags, env)
    : undefined;
  if (source === undefined) {
    for (
      const [flag, value] of [
        ["--stream", stream],
        ["--group", group],
        ["--in-flight", inFlightText],
      ] as const
    ) {
      if (value !== undefined) {
        throw new UsageError(
          `${flag} ${value} is for --redis: give the Redis server too, --redis redis://host:6379 (${FROM_ELSEWHERE})`,
        );
      }
    }
    return undefined;
  }
  const { url, label } = source;
  if (stream === undefined && !help) {
    throw new UsageError(
      `${label} needs --stream <name>: the Redis key of the chunk stream the workers read`,
    );
  }
  const texts = { stream, group, inFlight: inFlightText };
  for (const [option, text] of Object.entries(texts)) {
    if (text !== undefined) typed.set(`redis.${option}`, text);
  }
  const inFlight = inFlightText === undefined
    ? undefined
    : toNumber(inFlightText);
  return [{ url, stream: stream ?? "", group, inFlight }, label];
}

/** How a Redis URL is given without showing it to `ps`, for messages. */
const FROM_ELSEWHERE =
  `or, to keep a password off the command line, in the ${REDIS_URL_VARIABLE} environment variable, --redis-env NAME or --redis-file PATH`;

/**
 * The Redis URL from `--redis`, `--redis-env`, `--redis-file` or REDIS_URL,
 * checked; `undefined` if none gives one. Only its redacted form is shown.
 */
function readRedisUrl(flags: Flags, env: Environment) {
  try {
    return readRedisSource({
      "--redis": flags.one("--redis"),
      "--redis-env": flags.one("--redis-env"),
      "--redis-file": flags.one("--redis-file"),
    }, env);
  } catch (error) {
    if (error instanceof RedisSourceError) throw new UsageError(error.message);
    throw error;
  }
}

/** `--retries` and `--retry-delay`, for a handler module, local or on a fleet. */
function readRetries(
  one: One,
  running: Pick<CliOptions, "exec">,
  typed: Typed,
): Pick<CliOptions, "retries" | "retryDelay"> {
  const retriesText = one("--retries");
  const delayText = one("--retry-delay");
  if (retriesText !== undefined) {
    typed.set("retries", retriesText);
    if (running.exec !== undefined) {
      // A command may have done half its work before it was killed.
      throw new UsageError(
        `--retries ${retriesText} is for --module and --redis: a command of --exec is never run twice`,
      );
    }
  }
  if (delayText !== undefined) {
    typed.set("retryDelay", delayText);
    if (retriesText === undefined) {
      throw new UsageError(
        `--retry-delay ${delayText} needs --retries <n>: it is the wait before a retry`,
      );
    }
  }
  return {
    retries: retriesText === undefined ? undefined : toNumber(retriesText),
    retryDelay: readDuration("--retry-delay", delayText),
  };
}

/** A number as typed, for the library to judge; NaN for "" or spaces. */
function toNumber(text: string): number {
  return text.trim() === "" ? NaN : Number(text);
}

function readDuration(flag: string, text: string | undefined) {
  return text === undefined ? undefined : wrap(() => parseDuration(flag, text));
}

/**
 * `--mode`: a local pool's mode. The library's fourth, redis, is asked for
 * with --redis, and `ocycle worker` runs a local pool.
 */
function readMode(text: string | undefined): LocalMode {
  const mode = text ?? "process";
  if (mode !== "process" && mode !== "thread" && mode !== "serial") {
    throw new UsageError(
      `--mode must be process, thread or serial: received "${text}"`,
    );
  }
  return mode;
}

/**
 * The permissions of `--allow read`, `--allow write=/tmp/a,/tmp/b` ..., for
 * a handler module in process mode. Which names are permissions is the
 * library's to say.
 */
function readAllow(
  allowTexts: readonly string[],
  mode: LocalMode,
  module: string | undefined,
  typed: Typed,
): ChildPermissions {
  const allow = new Map<string, true | string[]>();
  for (const text of allowTexts) {
    const eq = text.indexOf("=");
    const name = eq < 0 ? text : text.slice(0, eq);
    typed.set(`permissions.${name}`, text);
    const previous = allow.get(name);
    if (eq < 0) allow.set(name, true);
    else if (previous !== true) {
      const list = text.slice(eq + 1).split(",").filter((s) => s !== "");
      allow.set(name, [...(previous ?? []), ...list]);
    }
  }
  if (allow.size > 0 && (module === undefined || mode !== "process")) {
    throw new UsageError(
      `--allow is for --module with --mode process: Workers and --exec commands run with the permissions of ocycle itself`,
    );
  }
  // fromEntries: a name such as "__proto__" stays a key, for the library to refuse.
  return Object.fromEntries(allow);
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new UsageError(message(error));
  }
}

/**
 * Splits a command string into words as a POSIX shell would, without
 * expanding anything: whitespace separates words, single quotes keep
 * everything, double quotes keep everything but `\"`, `\\`, `\$` and `` \` ``,
 * and a backslash outside quotes keeps the next character (or, last, itself).
 * An unquoted shell operator is an error, since no shell will run the command.
 *
 * @throws {UsageError} On an unclosed quote, an operator or an empty command.
 */
export function splitCommand(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) {
        throw new UsageError(`--exec has an unclosed ' in "${text}"`);
      }
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\" && text[j + 1] === "\n") {
          j++; // A line continuation, as sh reads it: both go.
          continue;
        }
        if (text[j] === "\\" && '"\\$`'.includes(text[j + 1] ?? "")) j++;
        word += text[j];
      }
      if (j >= text.length) {
        throw new UsageError(`--exec has an unclosed " in "${text}"`);
      }
      i = j;
    } else if (c === "\\" && text[i + 1] === "\n") {
      i++; // A line continuation, as sh reads it: both go.
    } else if (c === "\\") {
      // At the end there is nothing to keep: sh then keeps the backslash.
      word += i + 1 < text.length ? text[++i] : c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if ("|&;<>()`$*?".includes(c)) {
      throw new UsageError(
        `--exec runs the command directly, not through a shell, so "${c}" in "${text}" would not do what a shell does: quote it, or ask for a shell: --exec "sh -c '...'"`,
      );
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  if (words.length === 0) {
    throw new UsageError(`--exec needs a command: received "${text}"`);
  }
  return words;
}
