// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line's arguments, for its two commands (`ocycle`, which
// cuts stdin into chunks, and `ocycle worker`, which runs a fleet's chunks
// from Redis): the --help texts, the options they come to, and the checks
// that refuse a bad command line with a message that names the flag and the
// value.

// 1.0.28 or later (deno.json): before it parseArgs read an empty value,
// `--size=`, as an unknown option named "size=".
import { parseArgs } from "@std/cli";
import { PERMISSIONS } from "../run/_process_args.ts";
import type { ChildPermissions } from "../emitter.ts";
import { redactUrl } from "../redis/_url.ts";
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

/** The usage text of `ocycle --help`. */
export const HELP = `ocycle: cut standard input into chunks and hand each one on

Usage:
  ocycle [options] --exec "<command> [args]"   < input
  ocycle [options] --module ./handler.ts       < input
  ocycle [options] --redis <url> --stream <name> --module ./handler.ts < input
  ocycle worker --redis <url> --stream <name> --module ./handler.ts [options]

Each chunk of standard input is either piped to its own run of <command>
(--exec; the chunk is the command's stdin, its stdout is the output), or
passed to the default export of a handler module (--module), which runs in a
pool of Deno subprocesses (--mode process) or Web Workers (--mode thread), or,
with --redis, on a fleet of "ocycle worker" processes on any machines that
reach the Redis server ("ocycle worker --help" tells how to run them).
Outputs never interleave: each goes to stdout whole once its chunk has
succeeded (held until then in memory up to 1 MiB, then in a file of $TMPDIR),
as the chunks finish, or in input order with --keep-order. A failed chunk
writes nothing to stdout: its line on stderr says so, and the summary counts
the bytes its command wrote (--keep-failed writes them all the same).

Chunking:
  -s, --size <size>      Chunk size (default 1MiB). Bytes: 65536, 64K, 64KiB,
                         64kB (=64000), 1M, 1MiB, 1MB, 1G. Or a duration of
                         audio (250ms, 2s, 1min) with --rate and --format.
      --clip             Cut exact chunks of --size, carrying the rest into the
                         next chunk. Without it a chunk is everything buffered
                         once --size is reached (at least --size bytes).
      --hop <size>       With --clip: start a chunk every <size> bytes, so that
                         chunks overlap (hop < size) or skip (hop > size).
      --rate <hz>        Frames per second, for sizes given as durations.
      --format <fmt>     Sample format: u8, s8, s16le (default), s16be, s24le,
                         s32le, f32le, f64le, ...
      --channels <n>     Interleaved channels per frame (default 1).
  Chunks are cut at byte counts, never at line ends: a text record can be split
  between two chunks.

Running:
      --exec "<cmd>"     Run <cmd> once per chunk, the chunk on its stdin. The
                         string is split into words like a shell does (quotes
                         and backslashes work) but no shell runs it: for pipes,
                         redirections or globs, say so: --exec "sh -c 'tr a b | wc -c'".
                         A command that exits non-zero fails its chunk.
      --module <path>    A module whose default export (or --export) is called
                         as handler(chunk: Uint8Array, t0: number, info). Its
                         result is written to stdout: bytes as they are, a
                         string as UTF-8, null/undefined as nothing, anything
                         else as one line of JSON.
      --export <name>    The handler's export name (default "default").
      --mode <mode>      For --module: process (default), thread or serial.
      --allow <perm>     For --mode process: a permission the handler's
                         subprocess gets, as read, write=/tmp/out, net=host,
                         env=HOME, run=wc... (repeatable). By default it may only
                         read its own file: a handler that imports modules
                         beside it needs --allow read=<their folder>.
  -j, --pool <n>         Commands, Workers or subprocesses running at once
                         (default: the number of CPUs, ${navigator.hardwareConcurrency}).
      --timeout <time>   Fail a chunk whose command or handler takes longer
                         than <time>: 30 (seconds), 500ms, 2s, 1.5min; its
                         command is killed, with whatever it started. With
                         --redis: from the chunk's submission to its result.
      --retries <n>      For --module and --redis: run a chunk again, up to
                         <n> times, when its subprocess or Worker crashed or
                         it timed out (never when the handler threw).
      --retry-delay <t>  Before the first retry (default 100ms); doubled for
                         each next one, up to 10s.
  A duration without a unit is seconds, as in GNU parallel and timeout(1):
  --timeout 5 is 5 s. Units: ms, s (or sec), min.

Several machines (Redis Streams):
      --redis <url>      Send the chunks through this Redis server to the
                         "ocycle worker" processes reading --stream, and write
                         their results as with a local --module:
                         redis://[user:password@]host[:port][/db], rediss://
                         for TLS. Needs --stream and --module (the workers
                         run their own copy of it; the producer runs nothing).
                         A URL with a password is better given as one of:
      --redis-env <name> The URL is in this environment variable.
      --redis-file <path> The URL is the first line of this file.
                         With none of the three, --stream takes the URL from
                         the REDIS_URL environment variable.
      --stream <name>    The Redis key of the chunk stream.
      --group <name>     The consumer group of the workers (default ocycle).
      --in-flight <n>    Chunks in flight across the fleet at most (default
                         64): more wait, and stdin is read no further.

Output:
  -k, --keep-order       Write outputs in input order (default: as they come).
      --keep-failed      For --exec: write a failed command's output too, in
                         its place, and stream each output to stdout as it
                         comes rather than once its command has exited 0.
  -q, --quiet            No progress or summary on stderr (errors still show).
  -h, --help             This text.

A failed chunk is one line on stderr (then the last lines of its stderr):
  ocycle: chunk 3 (bytes 3145728..4194304, t0 12:30:05.250) failed: <why>
where t0 is the local time its first byte was read.

Ctrl-C or SIGTERM stops the reading: the chunks read so far still run and are
written, then the summary; a second one aborts them. Commands and handlers do
not get the terminal's Ctrl-C, and end if ocycle is killed.

Exit status: 0 if every chunk succeeded, 1 if any chunk failed, 2 for bad
options, 126/127 if the --exec command cannot be run or is not found, 130/143
if SIGINT/SIGTERM stopped the input.

Examples:
  # bytes per 1 MiB chunk, 2 at a time
  ocycle --size 1MiB -j 2 --exec "wc -c" < big.bin
  # compress 64 MiB pieces in parallel, output in order (a valid .gz stream)
  ocycle -s 64MiB -k --exec "gzip -c" < big.tar > big.tar.gz
  # 2 s of 16 kHz mono 16-bit audio per chunk, half-overlapping, to a handler
  arecord -f S16_LE -r 16000 -c 1 | ocycle --size 2s --hop 1s --clip \\
    --rate 16000 --format s16le --module ./analyze.ts --mode thread
  # the same chunks, in order, through Redis to workers on other machines
  # (the URL and its password in REDIS_URL, never on a command line)
  export REDIS_URL="$(cat /run/secrets/redis_url)"
  ocycle worker --stream audio --module ./analyze.ts
  arecord ... | ocycle -s 2s --rate 16000 -k --stream audio \\
    --module ./analyze.ts
`;

/** The usage text of `ocycle worker --help`. */
export const WORKER_HELP =
  `ocycle worker: run the chunks of a Redis stream, for "ocycle --redis" producers

Usage:
  ocycle worker --redis <url> --stream <name> --module ./handler.ts [options]
  ocycle worker --redis-env <name> | --redis-file <path> --stream <name> ...
  REDIS_URL=<url> ocycle worker --stream <name> --module ./handler.ts ...

Takes chunks from the Redis stream <name>, as one consumer of its group, runs
each in a local pool with the default export of the handler module (as
"ocycle --module" would), and sends each result back to the producer that
sent the chunk. Start as many workers as you like, on any machines that reach
the Redis server: each takes only what its pool has room for, and the chunks
of a worker that dies or stalls are taken over by the others within seconds.
A worker runs only the module it was started with: a chunk never names code.

Options:
      --redis <url>      The Redis server: redis://[user:password@]host[:port][/db],
                         rediss:// for TLS. Without it, the URL is read from
                         the REDIS_URL environment variable, or from:
      --redis-env <name> this environment variable, or
      --redis-file <path> the first line of this file; these keep a password
                         out of ps and shell history (--redis does not).
      --stream <name>    The Redis key of the chunk stream (the producer's --stream).
      --module <path>    The handler module: handler(chunk: Uint8Array, t0, info).
      --export <name>    The handler's export name (default "default").
      --group <name>     The consumer group (default ocycle; the producer's --group).
      --name <name>      This worker's consumer name (default host-pid-random).
      --mode <mode>      The local pool: process (default), thread or serial.
  -j, --pool <n>         Subprocesses or Workers in the local pool (default: the
                         number of CPUs, ${navigator.hardwareConcurrency}).
      --allow <perm>     For --mode process: a permission the handler's
                         subprocess gets, as read, write=/tmp/out, net=host,
                         env=HOME... (repeatable).
      --timeout <time>   Fail a chunk whose handler runs longer: 30 (seconds),
                         500ms, 2s, 1.5min; the producer's --retries decide
                         whether it runs again.
  -q, --quiet            No start line or summary on stderr (errors still show).
  -h, --help             This text.

Ctrl-C or SIGTERM: the worker takes no more chunks, finishes the ones running,
hands the others back to the group for other workers, then prints a summary;
a second one hands back everything at once (and stops within 5 s even if
Redis cannot be reached: what it held then goes to the others once stale).
Exit status: 130 after SIGINT, 143 after SIGTERM, 1 if the worker stopped on
an error, 2 for bad options.

Example:
  REDIS_URL="$(cat /run/secrets/redis_url)" ocycle worker --stream audio \\
    --module ./analyze.ts -j 4 --allow read=./models --timeout 30s
`;

/** Where a local pool runs the handler: `--mode`. */
export type LocalMode = "process" | "thread" | "serial";

/** `--redis` and its companions: the fleet a producer sends its chunks to. */
export interface CliRedis {
  url: string;
  stream: string;
  group: string | undefined;
  inFlight: number | undefined;
}

/** Everything the command line said. */
export interface CliOptions {
  size: number;
  clip: boolean;
  hop: number | undefined;
  pool: number;
  exec: string[] | undefined;
  execText: string | undefined;
  module: string | undefined;
  exportName: string;
  mode: LocalMode;
  allow: ChildPermissions;
  timeout: number | undefined;
  retries: number | undefined;
  retryDelay: number | undefined;
  /** With `--redis`: the chunks go to a fleet of workers, nothing runs here. */
  redis: CliRedis | undefined;
  keepOrder: boolean;
  /** `--keep-failed`: a failed command's output is written all the same. */
  keepFailed: boolean;
  quiet: boolean;
  help: boolean;
}

/** Everything `ocycle worker` was told. */
export interface WorkerCliOptions {
  url: string;
  stream: string;
  group: string | undefined;
  module: string;
  exportName: string;
  name: string | undefined;
  mode: LocalMode;
  /** `undefined`: runWorker's default, the CPUs. */
  pool: number | undefined;
  allow: ChildPermissions;
  timeout: number | undefined;
  quiet: boolean;
  help: boolean;
}

/** A bad command line; its message names the flag and the value. */
export class UsageError extends Error {
  /** The error's name. */
  override readonly name = "UsageError";
}

/** The flags that take a value, by their long names, as parseArgs knows them. */
const VALUE_NAMES = [
  "size",
  "hop",
  "rate",
  "format",
  "channels",
  "exec",
  "module",
  "export",
  "mode",
  "allow",
  "pool",
  "timeout",
  "retries",
  "retry-delay",
  "redis",
  "redis-env",
  "redis-file",
  "stream",
  "group",
  "in-flight",
  "name",
] as const;
/** The flags that take no value. */
const BOOLEAN_NAMES = [
  "clip",
  "keep-order",
  "keep-failed",
  "quiet",
  "help",
] as const;
type ValueName = typeof VALUE_NAMES[number];
type BooleanName = typeof BOOLEAN_NAMES[number];

/** The flags of one command: `ocycle` or `ocycle worker`. */
interface Command {
  /** How its messages name it. */
  name: string;
  values: readonly ValueName[];
  booleans: readonly BooleanName[];
}

const OCYCLE: Command = {
  name: "ocycle",
  values: VALUE_NAMES.filter((name) => name !== "name"),
  booleans: BOOLEAN_NAMES,
};

const WORKER: Command = {
  name: "ocycle worker",
  values: [
    "redis",
    "redis-env",
    "redis-file",
    "stream",
    "group",
    "name",
    "module",
    "export",
    "mode",
    "pool",
    "allow",
    "timeout",
  ],
  booleans: ["quiet", "help"],
};

/** The short and other names of flags, and the long name each stands for. */
const ALIASES: readonly (readonly [string, ValueName | BooleanName])[] = [
  ["-s", "size"],
  ["-j", "pool"],
  ["--jobs", "pool"],
  ["-k", "keep-order"],
  ["-q", "quiet"],
  ["-h", "help"],
];

/** Every name a flag of either command answers to, with or without "=value". */
const ANY_FLAG = new Set(
  [OCYCLE, WORKER].flatMap((command) => {
    const { valueFlags, booleanFlags } = flagNames(command);
    return [...valueFlags.keys(), ...booleanFlags.keys()];
  }),
);
/** The short flags that take a value, which may come attached: -j4. */
const SHORT_VALUE_FLAG = new Set(
  [OCYCLE, WORKER].flatMap((command) =>
    [...flagNames(command).valueFlags.keys()].filter((name) =>
      /^-[a-z]$/i.test(name)
    )
  ),
);

/**
 * `parseArgs` as parseCliArgs calls it, typed here since the offline copy of
 * the standard library has no types; assigning @std/cli's own `parseArgs` to
 * it checks this against @std/cli's types wherever those are present.
 */
type ParseArgs = (
  args: string[],
  options: {
    string: readonly ValueName[];
    collect: readonly ValueName[];
    boolean: readonly BooleanName[];
    unknown: (arg: string) => unknown;
  },
) => { [Name in ValueName]?: string[] } & { [Name in BooleanName]?: boolean };
const parse: ParseArgs = parseArgs;

/** A command line read by its command's flags. */
interface Flags {
  /** A value flag's value, if given; given twice is an error (but --allow). */
  one(flag: `--${ValueName}`): string | undefined;
  /** Every value of a flag given many times. */
  all(flag: `--${ValueName}`): string[];
  /** Whether a flag that takes no value was given. */
  has(flag: BooleanName): boolean;
}

/**
 * Reads a command line by the flags of `command`: any other flag is unknown
 * to it.
 *
 * @throws {UsageError} Naming the flag and the value.
 */
function readFlags(args: readonly string[], command: Command): Flags {
  const { spelled, error } = spell(args, command);
  // Each flag parseArgs is given is one it knows, with its value after "=":
  // what is left for it to judge is an unknown option or a bare argument,
  // refused here in the order they come.
  const parsed = parse(spelled, {
    string: command.values,
    collect: command.values,
    boolean: command.booleans,
    unknown: (arg) => {
      throw notAnOption(arg, command);
    },
  });
  // What spell() refused comes after all that parseArgs has just accepted.
  if (error !== undefined) throw error;
  const all = (flag: `--${ValueName}`) =>
    parsed[flag.slice(2) as ValueName] ?? [];
  return {
    all,
    one: (flag) => {
      const list = all(flag);
      if (list.length > 1 && flag !== "--allow") {
        throw new UsageError(
          `${flag} was given ${list.length} times (${
            list.map((v) => `"${flag === "--redis" ? redactUrl(v) : v}"`)
              .join(", ")
          }): give it once`,
        );
      }
      return list[0];
    },
    has: (flag) => parsed[flag] ?? false,
  };
}

/**
 * Parses the command line of `ocycle` (not `ocycle worker`: see
 * parseWorkerArgs).
 *
 * @throws {UsageError} Naming the flag and the value.
 */
export function parseCliArgs(
  args: readonly string[],
  env: Environment = PROCESS_ENV,
): CliOptions {
  const flags = readFlags(args, OCYCLE);
  const help = flags.has("help");
  const running = readRunning(flags, help, env);
  const keepFailed = flags.has("keep-failed");
  if (keepFailed && running.exec === undefined && !help) {
    throw new UsageError(
      `--keep-failed is for --exec: a failed handler has no output to keep`,
    );
  }
  return {
    ...readChunking(flags.one, flags.has("clip")),
    ...running,
    ...readRetries(flags.one, running),
    exportName: flags.one("--export") ?? "default",
    keepOrder: flags.has("keep-order"),
    keepFailed,
    quiet: flags.has("quiet"),
    help,
  };
}

/**
 * Parses the command line of `ocycle worker`, the arguments after `worker`.
 *
 * @throws {UsageError} Naming the flag and the value.
 */
export function parseWorkerArgs(
  args: readonly string[],
  env: Environment = PROCESS_ENV,
): WorkerCliOptions {
  const flags = readFlags(args, WORKER);
  const { one } = flags;
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
  const group = one("--group");
  const name = one("--name");
  for (
    const [flag, value] of [["--stream", stream], ["--group", group], [
      "--name",
      name,
    ]] as const
  ) {
    if (value === "" && !help) {
      throw new UsageError(`${flag} must not be empty: received ""`);
    }
  }
  const mode = readMode(one("--mode"));
  const poolText = one("--pool");
  return {
    url,
    stream,
    group,
    module,
    exportName: one("--export") ?? "default",
    name,
    mode,
    pool: poolText === undefined ? undefined : readPool(poolText),
    allow: readAllow(flags.all("--allow"), mode, module),
    timeout: readDuration("--timeout", one("--timeout")),
    quiet: flags.has("quiet"),
    help,
  };
}

/** Reads one value flag: its value, if given once. */
type One = Flags["one"];

/**
 * How stdin is cut: --size, --hop, --clip, and the audio format that turns
 * durations into bytes.
 */
function readChunking(
  one: One,
  clip: boolean,
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
  const size = wrap(() => parseSize("--size", one("--size") ?? "1MiB", audio));
  const hopText = one("--hop");
  const hop = hopText === undefined
    ? undefined
    : wrap(() => parseSize("--hop", hopText, audio));
  if (hop !== undefined && !clip) {
    throw new UsageError(
      `--hop ${hopText} needs --clip: overlapping or skipping windows are cut at exact sizes`,
    );
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
  const pool = poolText === undefined
    ? navigator.hardwareConcurrency ?? 1
    : readPool(poolText);
  const timeout = readDuration("--timeout", one("--timeout"));

  const execText = one("--exec");
  const module = one("--module");
  const modeText = one("--mode");
  const [redis, redisLabel] = readRedis(flags, help, env) ?? [];
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
  const allow = readAllow(flags.all("--allow"), mode, module);
  return { pool, timeout, exec, execText, module, mode, allow, redis };
}

/**
 * `--redis` (or `--redis-env`, `--redis-file`, or REDIS_URL with `--stream`),
 * `--stream`, `--group` and `--in-flight`, which go together.
 */
function readRedis(
  flags: Flags,
  help: boolean,
  env: Environment,
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
  for (const [flag, value] of [["--stream", stream], ["--group", group]]) {
    if (value === "") {
      throw new UsageError(`${flag} must not be empty: received ""`);
    }
  }
  let inFlight: number | undefined;
  if (inFlightText !== undefined) {
    inFlight = Number(inFlightText);
    if (!Number.isSafeInteger(inFlight) || inFlight < 1) {
      throw new UsageError(
        `--in-flight must be a positive integer: received "${inFlightText}"`,
      );
    }
  }
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
): Pick<CliOptions, "retries" | "retryDelay"> {
  const retriesText = one("--retries");
  const delayText = one("--retry-delay");
  let retries: number | undefined;
  if (retriesText !== undefined) {
    retries = Number(retriesText);
    if (
      retriesText.trim() === "" || !Number.isSafeInteger(retries) || retries < 0
    ) {
      throw new UsageError(
        `--retries must be an integer >= 0: received "${retriesText}"`,
      );
    }
    if (running.exec !== undefined) {
      // A command may have done half its work before it was killed.
      throw new UsageError(
        `--retries ${retriesText} is for --module and --redis: a command of --exec is never run twice`,
      );
    }
  }
  if (delayText !== undefined && retriesText === undefined) {
    throw new UsageError(
      `--retry-delay ${delayText} needs --retries <n>: it is the wait before a retry`,
    );
  }
  // 0 is a valid delay: retry at once.
  const retryDelay =
    delayText === undefined || /^0+(\.0*)?(ms|s|min)?$/.test(delayText)
      ? (delayText === undefined ? undefined : 0)
      : readDuration("--retry-delay", delayText);
  return { retries, retryDelay };
}

function readPool(text: string): number {
  const pool = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(pool) || pool < 1) {
    throw new UsageError(
      `--pool must be a positive integer: received "${text}"`,
    );
  }
  return pool;
}

function readDuration(flag: string, text: string | undefined) {
  return text === undefined ? undefined : wrap(() => parseDuration(flag, text));
}

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
 * a handler module in process mode.
 */
function readAllow(
  allowTexts: readonly string[],
  mode: LocalMode,
  module: string | undefined,
): ChildPermissions {
  const allow: ChildPermissions = {};
  for (const text of allowTexts) {
    const eq = text.indexOf("=");
    const name = (eq < 0 ? text : text.slice(0, eq)) as typeof PERMISSIONS[
      number
    ];
    if (!PERMISSIONS.includes(name)) {
      throw new UsageError(
        `--allow must be one of ${
          PERMISSIONS.join(", ")
        }, optionally with =list: received "${text}"`,
      );
    }
    if (eq < 0) allow[name] = true;
    else {
      const list = text.slice(eq + 1).split(",").filter((s) => s !== "");
      const previous = allow[name];
      if (previous !== true) allow[name] = [...(previous || []), ...list];
    }
  }
  if (
    Object.keys(allow).length > 0 &&
    (module === undefined || mode !== "process")
  ) {
    throw new UsageError(
      `--allow is for --module with --mode process: Workers and --exec commands run with the permissions of ocycle itself`,
    );
  }
  return allow;
}

/**
 * Spells every flag of the command line `--name=value`, the one form in which
 * parseArgs takes a value exactly as given, whatever it looks like: `-j2`,
 * `-j=2`, `-j 2`, `--jobs 2` and `--pool 2` all become `--pool=2`, and a flag
 * that takes no value becomes `--name=true`. Left to itself parseArgs would
 * read `--size -3` as an empty --size and an option -3, `--clip true` as
 * --clip given "true", and `-s1MiB` as -s and four more short flags; and with
 * `alias` for the short names it would also take `--s`, `--k` and `-kq`.
 * Other arguments pass through for parseArgs to refuse, except two that it
 * would misread: "--" (it parses nothing after it) and `--no-x=y` (read as
 * `--x=y`).
 *
 * Stops at the first argument it refuses and returns that error with the
 * arguments before it, which parseArgs then judges first.
 */
function spell(
  args: readonly string[],
  command: Command,
): { spelled: string[]; error: UsageError | undefined } {
  const { valueFlags, booleanFlags } = flagNames(command);
  const spelled: string[] = [];
  for (let i = 0; i < args.length; i++) {
    let arg = args[i]!;
    // -j2 and -s1MiB, as parallel and other tools take them, mean -j=2, -s=1MiB.
    if (
      /^-[a-z][^=]/i.test(arg) && valueFlags.has(arg.slice(0, 2))
    ) arg = `${arg.slice(0, 2)}=${arg.slice(2)}`;
    const eq = arg.startsWith("-") ? arg.indexOf("=") : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const valueFlag = valueFlags.get(flag);
    if (valueFlag !== undefined) {
      if (eq < 0 && i + 1 === args.length) {
        return { spelled, error: new UsageError(`${flag} needs a value`) };
      }
      // `--size --exec cat`: the value was forgotten, and the flag after it
      // is not the value. A value that only looks like a flag (-3) is judged
      // as a value; one that is a flag's name can be given as --size=--exec.
      const next = args[i + 1]!;
      if (eq < 0 && isFlag(next)) {
        const error = new UsageError(
          `${flag} needs a value: the next argument, "${next}", is an option`,
        );
        return { spelled, error };
      }
      spelled.push(`${valueFlag}=${eq > 0 ? arg.slice(eq + 1) : args[++i]}`);
      continue;
    }
    const booleanFlag = booleanFlags.get(flag);
    if (booleanFlag !== undefined) {
      if (eq > 0) {
        const error = new UsageError(
          `${flag} takes no value: received "${arg}"`,
        );
        return { spelled, error };
      }
      spelled.push(`${booleanFlag}=true`);
      continue;
    }
    if (arg === "--" || /^--no-.*=/s.test(arg)) {
      return { spelled, error: notAnOption(arg, command) };
    }
    spelled.push(arg);
  }
  return { spelled, error: undefined };
}

/**
 * Every name each flag of `command` answers to, with the `--long` form
 * parseArgs is given: the flags that take a value, and those that do not.
 */
function flagNames(command: Command): {
  valueFlags: Map<string, `--${ValueName}`>;
  booleanFlags: Map<string, `--${BooleanName}`>;
} {
  const valueFlags = new Map<string, `--${ValueName}`>();
  const booleanFlags = new Map<string, `--${BooleanName}`>();
  for (const name of command.values) valueFlags.set(`--${name}`, `--${name}`);
  for (const name of command.booleans) {
    booleanFlags.set(`--${name}`, `--${name}`);
  }
  for (const [alias, name] of ALIASES) {
    if ((command.values as readonly string[]).includes(name)) {
      valueFlags.set(alias, `--${name as ValueName}`);
    } else if ((command.booleans as readonly string[]).includes(name)) {
      booleanFlags.set(alias, `--${name as BooleanName}`);
    }
  }
  return { valueFlags, booleanFlags };
}

/** Whether `arg` is a flag of either command (`--exec`, `-j4`, `--pool=2`). */
function isFlag(arg: string): boolean {
  if (!arg.startsWith("-")) return false;
  const eq = arg.indexOf("=");
  if (ANY_FLAG.has(eq > 0 ? arg.slice(0, eq) : arg)) return true;
  // -j4, -s1MiB: a short value flag with its value attached.
  return /^-[a-z]./i.test(arg) && SHORT_VALUE_FLAG.has(arg.slice(0, 2));
}

/** The error for an argument that is no flag of `command`. */
function notAnOption(arg: string, command: Command): UsageError {
  if (command === WORKER) {
    return new UsageError(
      arg.startsWith("-")
        ? `unknown option "${arg}" for ocycle worker${
          OCYCLE.values.includes(arg.replace(/^--|=.*$/gs, "") as ValueName) ||
            OCYCLE.booleans.includes(arg.slice(2) as BooleanName) ||
            arg === "-s" || arg === "-k"
            ? ": it is the producer's (ocycle --redis ...), which cuts the chunks"
            : ""
        }`
        : `unexpected argument "${arg}"`,
    );
  }
  return new UsageError(
    arg.startsWith("-")
      ? `unknown option "${arg}"`
      : `unexpected argument "${arg}": the command to run goes in one string, --exec "${arg} ..."`,
  );
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
 * and a backslash outside quotes keeps the next character. An unquoted shell
 * operator is an error, since no shell will run the command.
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
        if (text[j] === "\\" && '"\\$`'.includes(text[j + 1] ?? "")) j++;
        word += text[j];
      }
      if (j >= text.length) {
        throw new UsageError(`--exec has an unclosed " in "${text}"`);
      }
      i = j;
    } else if (c === "\\") {
      if (i + 1 < text.length) word += text[++i];
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
