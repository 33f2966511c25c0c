// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line's arguments: the --help text, the options they
// come to, and the checks that refuse a bad command line with a message that
// names the flag and the value.

// 1.0.28 or later (deno.json): before it parseArgs read an empty value,
// `--size=`, as an unknown option named "size=".
import { parseArgs } from "@std/cli";
import { PERMISSIONS } from "../run/_process_args.ts";
import type { Mode } from "../chunk_info.ts";
import type { ChildPermissions } from "../emitter.ts";
import { message } from "./_common.ts";
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

Each chunk of standard input is either piped to its own run of <command>
(--exec; the chunk is the command's stdin, its stdout is the output), or
passed to the default export of a handler module (--module), which runs in a
pool of Deno subprocesses (--mode process) or Web Workers (--mode thread).
Outputs never interleave: one chunk's output streams to stdout while the others
wait, in memory up to 1 MiB each, then in a file of $TMPDIR, and go next as
they finish, or in input order with --keep-order.

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
                         (500ms, 30s, 2min); its command is killed, with
                         whatever it started.

Output:
  -k, --keep-order       Write outputs in input order (default: as they come).
  -q, --quiet            No progress or summary on stderr (errors still show).
  -h, --help             This text.

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
`;

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
  mode: Mode;
  allow: ChildPermissions;
  timeout: number | undefined;
  keepOrder: boolean;
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
] as const;
/** The flags that take no value. */
const BOOLEAN_NAMES = ["clip", "keep-order", "quiet", "help"] as const;
type ValueName = typeof VALUE_NAMES[number];
type BooleanName = typeof BOOLEAN_NAMES[number];

/** Every name a flag that takes a value answers to, and its long form. */
const VALUE_FLAGS = new Map<string, `--${ValueName}`>([
  ...VALUE_NAMES.map((name) => [`--${name}`, `--${name}`] as const),
  ["-s", "--size"],
  ["-j", "--pool"],
  ["--jobs", "--pool"],
]);
/** Every name a flag that takes no value answers to, and its long form. */
const BOOLEAN_FLAGS = new Map<string, `--${BooleanName}`>([
  ...BOOLEAN_NAMES.map((name) => [`--${name}`, `--${name}`] as const),
  ["-k", "--keep-order"],
  ["-q", "--quiet"],
  ["-h", "--help"],
]);

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
) => { [Name in ValueName]: string[] } & { [Name in BooleanName]: boolean };
const parse: ParseArgs = parseArgs;

/**
 * Parses the command line.
 *
 * @throws {UsageError} Naming the flag and the value.
 */
export function parseCliArgs(args: readonly string[]): CliOptions {
  const { spelled, error } = spell(args);
  // Each flag parseArgs is given is one it knows, with its value after "=":
  // what is left for it to judge is an unknown option or a bare argument,
  // refused here in the order they come.
  const parsed = parse(spelled, {
    string: VALUE_NAMES,
    collect: VALUE_NAMES,
    boolean: BOOLEAN_NAMES,
    unknown: (arg) => {
      throw notAnOption(arg);
    },
  });
  // What spell() refused comes after all that parseArgs has just accepted.
  if (error !== undefined) throw error;
  const one: One = (flag) => {
    const list = parsed[flag.slice(2) as ValueName];
    if (list.length > 1 && flag !== "--allow") {
      throw new UsageError(
        `${flag} was given ${list.length} times (${
          list.map((v) => `"${v}"`).join(", ")
        }): give it once`,
      );
    }
    return list[0];
  };
  const help = parsed.help;
  return {
    ...readChunking(one, parsed.clip),
    ...readRunning(one, parsed.allow, help),
    exportName: one("--export") ?? "default",
    keepOrder: parsed["keep-order"],
    quiet: parsed.quiet,
    help,
  };
}

/** Reads one value flag: its value, if given once. */
type One = (flag: `--${ValueName}`) => string | undefined;

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

/** What runs each chunk, how many at once, and with which permissions. */
function readRunning(
  one: One,
  allowTexts: readonly string[],
  help: boolean,
): Pick<
  CliOptions,
  "pool" | "timeout" | "exec" | "execText" | "module" | "mode" | "allow"
> {
  const poolText = one("--pool");
  const pool = poolText === undefined
    ? navigator.hardwareConcurrency ?? 1
    : Number(poolText);
  if (!Number.isSafeInteger(pool) || pool < 1) {
    throw new UsageError(
      `--pool must be a positive integer: received "${poolText}"`,
    );
  }
  const timeoutText = one("--timeout");
  const timeout = timeoutText === undefined
    ? undefined
    : wrap(() => parseDuration("--timeout", timeoutText));

  const execText = one("--exec");
  const module = one("--module");
  const modeText = one("--mode");
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
  const mode = modeText ?? "process";
  if (mode !== "process" && mode !== "thread" && mode !== "serial") {
    throw new UsageError(
      `--mode must be process, thread or serial: received "${modeText}"`,
    );
  }
  const allow = readAllow(allowTexts);
  if (
    Object.keys(allow).length > 0 &&
    (module === undefined || mode !== "process")
  ) {
    throw new UsageError(
      `--allow is for --module with --mode process: Workers and --exec commands run with the permissions of ocycle itself`,
    );
  }

  return { pool, timeout, exec, execText, module, mode, allow };
}

/** The permissions of `--allow read`, `--allow write=/tmp/a,/tmp/b` ... */
function readAllow(allowTexts: readonly string[]): ChildPermissions {
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
): { spelled: string[]; error: UsageError | undefined } {
  const spelled: string[] = [];
  for (let i = 0; i < args.length; i++) {
    let arg = args[i]!;
    // -j2 and -s1MiB, as parallel and other tools take them, mean -j=2, -s=1MiB.
    if (
      /^-[a-z][^=]/i.test(arg) && VALUE_FLAGS.has(arg.slice(0, 2))
    ) arg = `${arg.slice(0, 2)}=${arg.slice(2)}`;
    const eq = arg.startsWith("-") ? arg.indexOf("=") : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const valueFlag = VALUE_FLAGS.get(flag);
    if (valueFlag !== undefined) {
      if (eq < 0 && i + 1 === args.length) {
        return { spelled, error: new UsageError(`${flag} needs a value`) };
      }
      spelled.push(`${valueFlag}=${eq > 0 ? arg.slice(eq + 1) : args[++i]}`);
      continue;
    }
    const booleanFlag = BOOLEAN_FLAGS.get(flag);
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
      return { spelled, error: notAnOption(arg) };
    }
    spelled.push(arg);
  }
  return { spelled, error: undefined };
}

/** The error for an argument that is no flag ocycle knows. */
function notAnOption(arg: string): UsageError {
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
