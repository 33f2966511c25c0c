// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line behind cli.ts: reads standard input, cuts it into
// chunks with BufferEmit, and hands each chunk either to a command (`--exec`,
// the chunk on its stdin, as GNU parallel --pipe does) or to a handler module
// run in the thread or process pool (`--module`). Outputs go to stdout, in
// input order with --keep-order; every failure is reported on stderr and
// makes the exit code non-zero. SIGINT and SIGTERM stop the reading; what was
// read is still run, written and summed up (a second signal aborts). With
// --redis the chunks go through Redis to a fleet of `ocycle worker`s
// (_worker.ts), and come back as from a local pool. The parts: _args.ts (the
// command line; its syntax in _flags.ts, its texts in _help.ts), _check.ts
// (the library's checks of the options, told by flag), _exec.ts (--exec),
// _sink.ts (stdout), _units.ts (sizes and durations), _worker.ts (`ocycle
// worker`).

import { BufferEmit } from "../buffer_emit.ts";
import type { ChunkError } from "../chunk_error.ts";
import type { ChunkInfo } from "../chunk_info.ts";
import { closeOnSignals } from "../close_on_signals.ts";
import { defaultConcurrency } from "../core/_options.ts";
import { toModuleUrl } from "../run/_module_url.ts";
import { type CliOptions, parseCliArgs, UsageError } from "./_args.ts";
import { emitterPlan } from "./_check.ts";
import { HELP } from "./_help.ts";
import {
  type Counts,
  describeChunk,
  EXIT_FAILED,
  EXIT_NOT_EXECUTABLE,
  EXIT_NOT_FOUND,
  EXIT_OK,
  EXIT_SIGNAL,
  EXIT_USAGE,
  Fatal,
  findModule,
  message,
  report,
  say,
  stderrTail,
} from "./_common.ts";
import { CommandFailed, CommandNotStarted, ExecKind } from "./_exec.ts";
import { Sink } from "./_sink.ts";
import { runWorkerCli } from "./_worker.ts";
import { formatBytes } from "./_units.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The chunks in flight across a fleet when --in-flight is not given: the emitter's default. */
const REDIS_IN_FLIGHT = 64;

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
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

/**
 * Runs the command line and resolves to the exit code. Reads `Deno.stdin`,
 * writes outputs to `Deno.stdout`, progress and errors to `Deno.stderr`.
 */
export async function runCli(args: readonly string[]): Promise<number> {
  if (args[0] === "worker") return await runWorkerCli(args.slice(1));
  let options: CliOptions;
  try {
    options = parseCliArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    say(`ocycle: ${error.message}\nRun "ocycle --help" for the options.`);
    return EXIT_USAGE;
  }
  if (options.help) {
    Deno.stdout.writeSync(encoder.encode(HELP));
    return EXIT_OK;
  }
  let moduleUrl: URL | undefined;
  if (options.redis !== undefined) {
    // The workers load the handler, each its own copy, maybe on other
    // machines: the producer has no need of the file.
    moduleUrl = toModuleUrl(options.module!);
  } else if (options.module !== undefined) {
    moduleUrl = await findModule(options.module);
    if (moduleUrl === undefined) return EXIT_USAGE;
  }
  const run = new CliRun(options);
  try {
    run.start(moduleUrl);
  } catch (error) {
    report(startError(error, options));
    return EXIT_USAGE;
  }
  return await run.finish();
}

/**
 * Why the emitter could not be made, in the command line's terms: the
 * library checked every option in parseCliArgs, so a RangeError about 'size'
 * here means that a buffer of --size bytes cannot be allocated.
 */
function startError(error: unknown, options: CliOptions): string {
  if (error instanceof RangeError && error.message.includes("'size'")) {
    const why = error.cause instanceof Error ? error.cause.message : message(
      error,
    );
    return `--size ${
      formatBytes(options.size)
    } (${options.size} bytes) cannot be allocated: ${why}. Use a smaller --size`;
  }
  return message(error);
}

/** One run of the command line: the emitter, stdout, and what happened. */
class CliRun {
  readonly #options: CliOptions;
  readonly #counts: Counts = { read: 0, chunks: 0, done: 0, failed: 0 };
  readonly #stdout = Deno.stdout.writable.getWriter();
  readonly #sink: Sink;
  readonly #started = performance.now();
  #emitter!: BufferEmit<unknown>;
  #fatal: Fatal | undefined;
  /** Standard input, while it is read. */
  #input: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** The signal that stopped the reading, if one did. */
  #stoppedBy: Deno.Signal | undefined;

  constructor(options: CliOptions) {
    this.#options = options;
    // Room for as many finished outputs as there are chunks in flight.
    const inFlight = options.redis !== undefined
      ? options.redis.inFlight ?? REDIS_IN_FLIGHT
      : options.exec !== undefined
      ? options.pool
      : options.mode === "serial"
      ? 1
      : options.pool * defaultConcurrency(options.mode);
    this.#sink = new Sink(
      options.keepOrder,
      inFlight * 2,
      this.#stdout,
      options.keepFailed,
    );
  }

  /**
   * Makes the emitter: a handler module in its mode, on a fleet through
   * Redis, or `--exec` commands as a transport of the pool.
   *
   * @throws {TypeError} If the emitter refuses an option.
   */
  start(moduleUrl: URL | undefined): void {
    const options = this.#options;
    const commands = options.exec === undefined ? undefined : new ExecKind(
      options.exec,
      options.execText!,
      (index) => this.#sink.output(index),
    );
    // The plan parseCliArgs had the library check.
    const plan = emitterPlan(options, moduleUrl, commands);
    this.#emitter = new BufferEmit<unknown>(plan.callback, plan.size, {
      ...plan.options,
      onDone: (result, info) => {
        this.#counts.done++;
        this.#sink.deliver(info.index, toBytes(result));
      },
      onError: (error, info) => this.#onError(error, info),
    });
  }

  /**
   * Reads stdin to the end (or to a SIGINT or SIGTERM), drains the emitter
   * and stdout; resolves to the exit code.
   */
  async finish(): Promise<number> {
    const stopProgress = this.#progress();
    // The first signal stops the reading only: the run then ends as at the
    // end of the input. A second one (not the copy of the first that
    // `deno task` forwards) aborts what is left.
    using _signals = closeOnSignals({
      close: () => {
        this.#input?.cancel().catch(() => {});
        return Promise.resolve();
      },
      abort: (reason) => {
        this.#fatal ??= new Fatal(
          message(reason),
          EXIT_SIGNAL[this.#stoppedBy!] ?? EXIT_FAILED,
        );
        return this.#emitter.abort(this.#fatal);
      },
    }, {
      onSignal: (signal, action) => {
        this.#stoppedBy ??= signal;
        this.#interrupt(
          action === "close"
            ? `${signal}: reading no more input; finishing the chunks read so far (a second ${signal} aborts them)`
            : `${signal} again: aborting`,
        );
      },
    });
    try {
      await this.#feed();
      const before = this.#emitter.stats.emitted;
      // After a fatal error, what was not run yet is reported as such.
      if (this.#fatal !== undefined) await this.#emitter.abort(this.#fatal);
      else {
        await this.#emitter.close().catch((error) => {
          // An abort by a signal is said once, in the summary.
          if (error !== this.#fatal) report(message(error));
        });
      }
      this.#admit(this.#emitter.stats.emitted - before);
      await this.#sink.drain();
    } catch (error) {
      this.#fatal = new Fatal(message(error), EXIT_FAILED);
      await this.#emitter.abort(error).catch(() => {});
    } finally {
      stopProgress();
    }
    if (this.#sink.error !== undefined) {
      this.#fatal ??= new Fatal(
        `cannot write to stdout: ${message(this.#sink.error)}`,
        EXIT_FAILED,
      );
    }
    await this.#stdout.close().catch(() => {});
    return this.#summary();
  }

  /** Writes stdin to the emitter, as fast as stdout takes the outputs. */
  async #feed(): Promise<void> {
    const reader = this.#input = Deno.stdin.readable.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#counts.read += value.length;
        const before = this.#emitter.stats.emitted;
        this.#emitter.write(value);
        this.#admit(this.#emitter.stats.emitted - before);
        if (this.#fatal !== undefined) break;
        await this.#sink.room;
        if (this.#sink.error !== undefined) break;
      }
    } finally {
      this.#input = undefined;
      await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
  }

  /** Says what a signal did, on a line of its own: not after the progress line or the terminal's ^C. */
  #interrupt(text: string): void {
    if (Deno.stderr.isTerminal()) {
      Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
    }
    report(text);
  }

  /** Counts `n` chunks handed on, each of which will have an output. */
  #admit(n: number): void {
    for (let i = 0; i < n; i++) this.#sink.admit();
    this.#counts.chunks += n;
  }

  /**
   * Says that a chunk failed, in the one form of every failed-chunk line
   * (describeChunk), and ends its output: dropped, unless --keep-failed.
   */
  #onError(error: ChunkError, info: ChunkInfo): void {
    this.#counts.failed++;
    const wrote = this.#sink.fail(info.index);
    if (this.#options.exec === undefined) {
      const worker = error.worker === undefined
        ? ""
        : ` (worker ${error.worker})`;
      report(
        `${describeChunk(info)} failed: ${error.detail}${worker}${
          stderrTail(error.stderr)
        }`,
      );
      return;
    }
    const [why, stderr] = this.#execFailure(error);
    const dropped = wrote > 0 && !this.#options.keepFailed
      ? `; its ${plural(wrote, "byte")} of output are not written`
      : "";
    report(`${describeChunk(info)} failed: ${why}${dropped}${stderr}`);
  }

  /** How a failed `--exec` chunk reads: why, and the tail of its stderr. */
  #execFailure(error: ChunkError): [string, string] {
    const options = this.#options;
    const cause = error.cause;
    if (cause instanceof CommandNotStarted) {
      const notFound = cause.cause instanceof Deno.errors.NotFound;
      const command = options.exec![0];
      this.#fatal ??= new Fatal(
        `--exec "${options.execText}": ${
          notFound
            ? `command not found: ${command}`
            : `cannot run ${command}: ${cause.message}`
        }`,
        notFound ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE,
      );
      return ["its command could not be started", ""];
    }
    if (cause instanceof CommandFailed) {
      return [cause.message, stderrTail(decoder.decode(cause.stderr))];
    }
    if (error.kind === "timeout") {
      return [
        `"${options.execText}" took longer than --timeout ${options.timeout} ms and was killed`,
        "",
      ];
    }
    if (error.kind === "aborted" && this.#fatal !== undefined) {
      return [
        this.#stoppedBy === undefined
          ? "not run after an earlier fatal error"
          : `aborted by a second ${this.#stoppedBy}`,
        "",
      ];
    }
    return [`ocycle could not run it: ${error.detail}`, ""];
  }

  /** Shows progress on stderr until the returned function is called. */
  #progress(): () => void {
    if (this.#options.quiet) return () => {};
    const isTerminal = Deno.stderr.isTerminal();
    const timer = setInterval(() => {
      if (isTerminal) {
        Deno.stderr.writeSync(
          encoder.encode(`\rocycle: ${this.#line()}\x1b[K`),
        );
      } else report(this.#line());
    }, isTerminal ? 250 : 5000);
    return () => {
      clearInterval(timer);
      if (isTerminal) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
    };
  }

  #line(): string {
    const counts = this.#counts;
    const seconds = (performance.now() - this.#started) / 1000;
    return `${formatBytes(counts.read)} in, ${
      plural(counts.chunks, "chunk")
    }: ${counts.done} done, ${counts.failed} failed; ${
      formatBytes(this.#sink.outputBytes)
    } out; ${
      (counts.read / 1e6 / Math.max(seconds, 1e-3)).toFixed(1)
    } MB/s over ${seconds.toFixed(1)} s`;
  }

  /** Says how it went; the exit code. */
  #summary(): number {
    const counts = this.#counts;
    const fatal = this.#fatal;
    if (fatal !== undefined) report(fatal.message);
    const stoppedBy = this.#stoppedBy;
    if (!this.#options.quiet || counts.failed > 0 || stoppedBy !== undefined) {
      report(
        `${this.#line()}${
          stoppedBy === undefined ? "" : `; input stopped by ${stoppedBy}`
        }`,
      );
    }
    if (counts.failed > 0) {
      const discarded = this.#sink.discarded;
      report(
        `${counts.failed} of ${counts.chunks} chunks failed (see the messages above)${
          discarded === 0
            ? ""
            : `; ${plural(discarded, "byte")} of their output were not written${
              this.#options.keepFailed ? "" : " (--keep-failed writes them)"
            }`
        }`,
      );
    }
    if (fatal !== undefined) return fatal.code;
    if (counts.failed > 0) return EXIT_FAILED;
    return stoppedBy === undefined
      ? EXIT_OK
      : EXIT_SIGNAL[stoppedBy] ?? EXIT_FAILED;
  }
}
