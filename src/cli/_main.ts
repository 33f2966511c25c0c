// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line behind cli.ts: reads standard input, cuts it into
// chunks with BufferEmit, and hands each chunk either to a command (`--exec`,
// the chunk on its stdin, as GNU parallel --pipe does) or to a handler module
// run in the thread or process pool (`--module`). Outputs go to stdout, in
// input order with --keep-order; every failure is reported on stderr and
// makes the exit code non-zero.

import { BufferEmit } from "../buffer_emit.ts";
import type { ChunkInfo, Mode } from "../chunk_info.ts";
import type { ChildPermissions } from "../emitter.ts";
import {
  type AudioFormat,
  bytesPerFrame,
  formatBytes,
  parseDuration,
  parseSize,
} from "./_units.ts";

/** Exit codes, as shells and GNU parallel use them. */
const EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2;
const EXIT_NOT_EXECUTABLE = 126, EXIT_NOT_FOUND = 127;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The usage text of `ocycle --help`. */
export const HELP = `ocycle: cut standard input into chunks and hand each one on

Usage:
  ocycle [options] --exec "<command> [args]"   < input
  ocycle [options] --module ./handler.ts       < input

Each chunk of standard input is either piped to its own run of <command>
(--exec; the chunk is the command's stdin, its stdout is collected), or passed
to the default export of a handler module (--module), which runs in a pool of
Deno subprocesses (--mode process) or Web Workers (--mode thread). Outputs are
written to stdout as each chunk finishes, or in input order with --keep-order.

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
                         (500ms, 30s, 2min); its command is killed.

Output:
  -k, --keep-order       Write outputs in input order (default: as they finish).
  -q, --quiet            No progress or summary on stderr (errors still show).
  -h, --help             This text.

Exit status: 0 if every chunk succeeded, 1 if any chunk failed, 2 for bad
options, 126/127 if the --exec command cannot be run or is not found.

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

const VALUE_FLAGS = new Map<string, string>([
  ["-s", "--size"],
  ["--size", "--size"],
  ["--hop", "--hop"],
  ["--rate", "--rate"],
  ["--format", "--format"],
  ["--channels", "--channels"],
  ["--exec", "--exec"],
  ["--module", "--module"],
  ["--export", "--export"],
  ["--mode", "--mode"],
  ["--allow", "--allow"],
  ["-j", "--pool"],
  ["--pool", "--pool"],
  ["--jobs", "--pool"],
  ["--timeout", "--timeout"],
]);
const BOOLEAN_FLAGS = new Map<string, string>([
  ["--clip", "--clip"],
  ["-k", "--keep-order"],
  ["--keep-order", "--keep-order"],
  ["-q", "--quiet"],
  ["--quiet", "--quiet"],
  ["-h", "--help"],
  ["--help", "--help"],
]);
const PERMISSIONS = [
  "read",
  "write",
  "net",
  "env",
  "run",
  "sys",
  "ffi",
  "import",
] as const;

/**
 * Parses the command line.
 *
 * @throws {UsageError} Naming the flag and the value.
 */
export function parseCliArgs(args: readonly string[]): CliOptions {
  const values = new Map<string, string[]>();
  const flags = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    let arg = args[i]!;
    // -j2 and -s1MiB, as parallel and other tools take them, mean -j=2, -s=1MiB.
    if (
      /^-[a-z][^=]/i.test(arg) && VALUE_FLAGS.has(arg.slice(0, 2))
    ) arg = `${arg.slice(0, 2)}=${arg.slice(2)}`;
    const eq = arg.startsWith("-") ? arg.indexOf("=") : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const canonical = VALUE_FLAGS.get(name);
    if (canonical !== undefined) {
      let value: string;
      if (eq > 0) value = arg.slice(eq + 1);
      else {
        const next = args[i + 1];
        if (next === undefined) {
          throw new UsageError(`${name} needs a value`);
        }
        value = next;
        i++;
      }
      const list = values.get(canonical) ?? [];
      list.push(value);
      values.set(canonical, list);
      continue;
    }
    const boolean = BOOLEAN_FLAGS.get(name);
    if (boolean !== undefined) {
      if (eq > 0) {
        throw new UsageError(`${name} takes no value: received "${arg}"`);
      }
      flags.add(boolean);
      continue;
    }
    if (arg.startsWith("-")) {
      throw new UsageError(`unknown option "${arg}"`);
    }
    throw new UsageError(
      `unexpected argument "${arg}": the command to run goes in one string, --exec "${arg} ..."`,
    );
  }
  const one = (flag: string): string | undefined => {
    const list = values.get(flag);
    if (list !== undefined && list.length > 1 && flag !== "--allow") {
      throw new UsageError(
        `${flag} was given ${list.length} times (${
          list.map((v) => `"${v}"`).join(", ")
        }): give it once`,
      );
    }
    return list?.[0];
  };
  const help = flags.has("--help");

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
  const clip = flags.has("--clip");
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
  const allow: ChildPermissions = {};
  for (const text of values.get("--allow") ?? []) {
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

  return {
    size,
    clip,
    hop,
    pool,
    exec,
    execText,
    module,
    exportName: one("--export") ?? "default",
    mode,
    allow,
    timeout,
    keepOrder: flags.has("--keep-order"),
    quiet: flags.has("--quiet"),
    help,
  };
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new UsageError(
      error instanceof Error ? error.message : String(error),
    );
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

/** A fatal error that stops the run with its own exit code. */
class Fatal extends Error {
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

/**
 * Writes outputs to stdout, in input order or as they come, and bounds how
 * many chunks may be read but not yet written out, so that a slow first
 * chunk under --keep-order cannot make memory grow without limit.
 */
class Sink {
  readonly #keepOrder: boolean;
  readonly #limit: number;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #held = new Map<number, Uint8Array | undefined>();
  #next = 0;
  #admitted = 0;
  #delivered = 0;
  #chain: Promise<void> = Promise.resolve();
  #waiters: (() => void)[] = [];
  #drained: (() => void)[] = [];
  error: unknown;
  outputBytes = 0;

  constructor(
    keepOrder: boolean,
    limit: number,
    writer: WritableStreamDefaultWriter<Uint8Array>,
  ) {
    this.#keepOrder = keepOrder;
    this.#limit = limit;
    this.#writer = writer;
  }

  /** Counts a chunk handed on; resolve `room` before handing on more. */
  admit(): void {
    this.#admitted++;
  }

  /** Resolves when fewer than `limit` chunks wait to be written out. */
  get room(): Promise<void> {
    if (this.#admitted - this.#delivered < this.#limit) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Takes chunk `index`'s output (`undefined` for none). */
  deliver(index: number, output: Uint8Array | undefined): void {
    this.#delivered++;
    if (!this.#keepOrder) this.#write(output);
    else {
      this.#held.set(index, output);
      while (this.#held.has(this.#next)) {
        const next = this.#held.get(this.#next);
        this.#held.delete(this.#next++);
        this.#write(next);
      }
    }
    if (this.#admitted - this.#delivered < this.#limit) {
      for (const resolve of this.#waiters.splice(0)) resolve();
    }
    if (this.#admitted === this.#delivered) {
      for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  /** Resolves once every admitted chunk is delivered and written. */
  async drain(): Promise<void> {
    if (this.#admitted !== this.#delivered) {
      await new Promise<void>((resolve) => this.#drained.push(resolve));
    }
    await this.#chain;
  }

  #write(output: Uint8Array | undefined): void {
    if (output === undefined || output.length === 0) return;
    this.#chain = this.#chain.then(async () => {
      if (this.error !== undefined) return;
      try {
        await this.#writer.write(output);
        this.outputBytes += output.length;
      } catch (error) {
        this.error = error;
      }
    });
  }
}

interface Counts {
  read: number;
  chunks: number;
  done: number;
  failed: number;
}

/** Runs `--exec` for each chunk, at most `pool` at a time. */
class ExecRunner {
  readonly #argv: string[];
  readonly #text: string;
  readonly #pool: number;
  readonly #timeout: number | undefined;
  readonly #sink: Sink;
  readonly #counts: Counts;
  readonly #report: (text: string) => void;
  readonly #queue: { chunk: Uint8Array; info: ChunkInfo }[] = [];
  #running = 0;
  fatal: Fatal | undefined;

  constructor(
    options: CliOptions,
    sink: Sink,
    counts: Counts,
    report: (text: string) => void,
  ) {
    this.#argv = options.exec!;
    this.#text = options.execText!;
    this.#pool = options.pool;
    this.#timeout = options.timeout;
    this.#sink = sink;
    this.#counts = counts;
    this.#report = report;
  }

  submit(chunk: Uint8Array, info: ChunkInfo): void {
    if (this.#running < this.#pool) this.#start(chunk, info);
    else this.#queue.push({ chunk, info });
  }

  #start(chunk: Uint8Array, info: ChunkInfo): void {
    this.#running++;
    this.#run(chunk, info).catch((error) => {
      // Whatever went wrong, the chunk is reported, never left hanging.
      this.#fail(info, undefined, `ocycle could not run it: ${message(error)}`);
    }).finally(() => {
      this.#running--;
      const next = this.#queue.shift();
      if (next !== undefined) this.#start(next.chunk, next.info);
    });
  }

  async #run(chunk: Uint8Array, info: ChunkInfo): Promise<void> {
    if (this.fatal !== undefined) {
      this.#fail(info, undefined, "not run after an earlier fatal error");
      return;
    }
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(this.#argv[0]!, {
        args: this.#argv.slice(1),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      const notFound = error instanceof Deno.errors.NotFound;
      this.fatal ??= new Fatal(
        `--exec "${this.#text}": ${
          notFound
            ? `command not found: ${this.#argv[0]}`
            : `cannot run ${this.#argv[0]}: ${message(error)}`
        }`,
        notFound ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE,
      );
      this.#fail(info, undefined, "its command could not be started");
      return;
    }
    let timedOut = false;
    const timer = this.#timeout === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGKILL");
      } catch { /* it has just exited */ }
    }, this.#timeout);
    const feed = (async () => {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(chunk);
        await writer.close();
      } catch (error) {
        // A command that exits without reading all its input (head -c 10)
        // is judged by its exit status, not by the pipe it closed.
        if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      }
    })();
    const [stdout, stderr, status] = await Promise.all([
      new Response(child.stdout).bytes(),
      new Response(child.stderr).bytes(),
      child.status,
      feed.catch(() => {}),
    ]);
    if (timer !== undefined) clearTimeout(timer);
    if (status.success && !timedOut) {
      // A successful command's stderr passes through, one chunk's at a time.
      if (stderr.length > 0) writeAllSync(Deno.stderr, stderr);
      this.#counts.done++;
      this.#sink.deliver(info.index, stdout);
      return;
    }
    const why = timedOut
      ? `"${this.#text}" took longer than --timeout ${this.#timeout} ms and was killed`
      : status.signal !== null
      ? `"${this.#text}" was killed by ${status.signal}`
      : `"${this.#text}" exited with code ${status.code}`;
    this.#fail(info, stdout, why, stderr);
  }

  #fail(
    info: ChunkInfo,
    stdout: Uint8Array | undefined,
    why: string,
    stderr?: Uint8Array,
  ): void {
    this.#counts.failed++;
    const tail = stderr === undefined || stderr.length === 0
      ? ""
      : "\n" + lastLines(decoder.decode(stderr), 10).replace(/^/gm, "  | ");
    this.#report(`${describeChunk(info)} failed: ${why}${tail}`);
    // Whatever the command wrote is still its output: keep it.
    this.#sink.deliver(info.index, stdout);
  }
}

function writeAllSync(
  file: { writeSync(p: Uint8Array): number },
  bytes: Uint8Array,
): void {
  for (let at = 0; at < bytes.length;) {
    at += file.writeSync(bytes.subarray(at));
  }
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

function describeChunk(info: ChunkInfo): string {
  return `chunk ${info.index} (bytes ${info.offset}..${
    info.offset + info.length
  })`;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Turns a handler's result into the bytes written to stdout. */
function toBytes(result: unknown): Uint8Array | undefined {
  if (result === undefined || result === null) return undefined;
  if (result instanceof Uint8Array) return result;
  if (result instanceof ArrayBuffer) return new Uint8Array(result);
  if (ArrayBuffer.isView(result)) {
    return new Uint8Array(
      result.buffer,
      result.byteOffset,
      result.byteLength,
    );
  }
  if (typeof result === "string") return encoder.encode(result);
  return encoder.encode(JSON.stringify(result) + "\n");
}

function toModuleUrl(path: string): URL {
  if (/^[a-z][a-z0-9+.-]+:/i.test(path)) return new URL(path);
  const cwd = Deno.cwd();
  return new URL(path, `file://${cwd.endsWith("/") ? cwd : cwd + "/"}`);
}

/**
 * Runs the command line and resolves to the exit code. Reads `Deno.stdin`,
 * writes outputs to `Deno.stdout`, progress and errors to `Deno.stderr`.
 */
export async function runCli(args: readonly string[]): Promise<number> {
  const stderr = (text: string) => {
    Deno.stderr.writeSync(encoder.encode(text + "\n"));
  };
  let options: CliOptions;
  try {
    options = parseCliArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    stderr(`ocycle: ${error.message}\nRun "ocycle --help" for the options.`);
    return EXIT_USAGE;
  }
  if (options.help) {
    Deno.stdout.writeSync(encoder.encode(HELP));
    return EXIT_OK;
  }
  const report = (text: string) => stderr(`ocycle: ${text}`);

  let moduleUrl: URL | undefined;
  if (options.module !== undefined) {
    moduleUrl = toModuleUrl(options.module);
    if (moduleUrl.protocol === "file:") {
      try {
        const info = await Deno.stat(moduleUrl);
        if (!info.isFile) throw new Error("it is a directory");
      } catch (error) {
        const why = error instanceof Deno.errors.NotFound
          ? "no such file"
          : message(error);
        report(
          `--module ${options.module}: ${why} (looked for ${
            decodeURIComponent(moduleUrl.pathname)
          })`,
        );
        return EXIT_USAGE;
      }
    }
  }

  const counts: Counts = { read: 0, chunks: 0, done: 0, failed: 0 };
  const slots = options.module !== undefined && options.mode !== "serial"
    ? options.pool * 2
    : options.pool;
  const stdoutWriter = Deno.stdout.writable.getWriter();
  const sink = new Sink(options.keepOrder, slots * 2, stdoutWriter);
  const started = performance.now();

  let exec: ExecRunner | undefined;
  let emitter: BufferEmit<unknown>;
  const chunking = options.hop === undefined
    ? { clip: options.clip }
    : { clip: options.clip, hop: options.hop };
  try {
    if (moduleUrl !== undefined) {
      emitter = new BufferEmit<unknown>(moduleUrl, options.size, {
        ...chunking,
        mode: options.mode,
        pool: options.pool,
        exportName: options.exportName,
        maxPending: Infinity,
        ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
        ...(options.mode === "process" ? { permissions: options.allow } : {}),
        onDone: (result, info) => {
          counts.done++;
          sink.deliver(info.index, toBytes(result));
        },
        onError: (error, info) => {
          counts.failed++;
          // The ChunkError message already names the chunk, its offset and mode.
          const tail = error.stderr === ""
            ? ""
            : "\n" + lastLines(error.stderr, 10).replace(/^/gm, "  | ");
          report(`${error.message}${tail}`);
          sink.deliver(info.index, undefined);
        },
      });
    } else {
      exec = new ExecRunner(options, sink, counts, report);
      const runner = exec;
      emitter = new BufferEmit<unknown>(
        (chunk, _t0, info) => {
          runner.submit(chunk, info);
        },
        options.size,
        chunking,
      );
    }
  } catch (error) {
    report(message(error));
    return EXIT_USAGE;
  }
  let progress: ReturnType<typeof setInterval> | undefined;
  const isTerminal = Deno.stderr.isTerminal();
  const line = () => {
    const seconds = (performance.now() - started) / 1000;
    return `${formatBytes(counts.read)} in, ${
      plural(counts.chunks, "chunk")
    }: ${counts.done} done, ${counts.failed} failed; ${
      formatBytes(sink.outputBytes)
    } out; ${
      (counts.read / 1e6 / Math.max(seconds, 1e-3)).toFixed(1)
    } MB/s over ${seconds.toFixed(1)} s`;
  };
  if (!options.quiet) {
    progress = setInterval(() => {
      if (isTerminal) {
        Deno.stderr.writeSync(encoder.encode(`\rocycle: ${line()}\x1b[K`));
      } else report(line());
    }, isTerminal ? 250 : 5000);
  }

  let fatal: Fatal | undefined;
  try {
    const reader = Deno.stdin.readable.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        counts.read += value.length;
        const before = emitter.stats.emitted;
        emitter.write(value);
        const emitted = emitter.stats.emitted - before;
        for (let i = 0; i < emitted; i++) sink.admit();
        counts.chunks += emitted;
        if (exec?.fatal !== undefined) break;
        await sink.room;
        if (sink.error !== undefined) break;
      }
    } finally {
      await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
    const before = emitter.stats.emitted;
    await emitter.close().catch((error) => {
      report(message(error));
    });
    const emitted = emitter.stats.emitted - before;
    for (let i = 0; i < emitted; i++) sink.admit();
    counts.chunks += emitted;
    await sink.drain();
  } catch (error) {
    fatal = new Fatal(message(error), EXIT_FAILED);
    await emitter.abort(error).catch(() => {});
  } finally {
    if (progress !== undefined) {
      clearInterval(progress);
      if (isTerminal) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
    }
  }
  fatal ??= exec?.fatal;
  if (sink.error !== undefined && fatal === undefined) {
    fatal = new Fatal(
      `cannot write to stdout: ${message(sink.error)}`,
      EXIT_FAILED,
    );
  }
  await stdoutWriter.close().catch(() => {});

  if (fatal !== undefined) report(fatal.message);
  if (!options.quiet || counts.failed > 0) {
    report(
      line(),
    );
  }
  if (counts.failed > 0) {
    report(
      `${counts.failed} of ${counts.chunks} chunks failed (see the messages above)`,
    );
  }
  if (fatal !== undefined) return fatal.code;
  return counts.failed > 0 ? EXIT_FAILED : EXIT_OK;
}
