// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line behind cli.ts: reads standard input, cuts it into
// chunks with BufferEmit, and hands each chunk either to a command (`--exec`,
// the chunk on its stdin, as GNU parallel --pipe does) or to a handler module
// run in the thread or process pool (`--module`). Outputs go to stdout, in
// input order with --keep-order; every failure is reported on stderr and
// makes the exit code non-zero. The parts: _args.ts (the command line),
// _exec.ts (--exec), _sink.ts (stdout), _units.ts (sizes and durations).

import { BufferEmit } from "../buffer_emit.ts";
import type { ChunkError } from "../chunk_error.ts";
import type { ChunkInfo } from "../chunk_info.ts";
import { defaultConcurrency, TRANSPORT } from "../core/_options.ts";
import type { BufferEmitOptions } from "../buffer_emit.ts";
import { toModuleUrl } from "../run/_module_url.ts";
import { type CliOptions, HELP, parseCliArgs, UsageError } from "./_args.ts";
import {
  type Counts,
  EXIT_FAILED,
  EXIT_NOT_EXECUTABLE,
  EXIT_NOT_FOUND,
  EXIT_OK,
  EXIT_USAGE,
  Fatal,
  message,
  stderrTail,
} from "./_common.ts";
import {
  CommandFailed,
  CommandNotStarted,
  describeChunk,
  ExecKind,
} from "./_exec.ts";
import { Sink } from "./_sink.ts";
import { formatBytes } from "./_units.ts";

const encoder = new TextEncoder();

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
  // Room for as many finished outputs as there are chunks in flight.
  const inFlight = options.exec !== undefined
    ? options.pool
    : options.mode === "serial"
    ? 1
    : options.pool * defaultConcurrency(options.mode);
  const stdoutWriter = Deno.stdout.writable.getWriter();
  const sink = new Sink(options.keepOrder, inFlight * 2, stdoutWriter);
  const started = performance.now();

  let fatal: Fatal | undefined;
  const decoder = new TextDecoder();
  /** How a failed `--exec` chunk reads, and what it still wrote to stdout. */
  const execFailure = (error: ChunkError) => {
    const cause = error.cause;
    if (cause instanceof CommandNotStarted) {
      const notFound = cause.cause instanceof Deno.errors.NotFound;
      const command = options.exec![0];
      fatal ??= new Fatal(
        `--exec "${options.execText}": ${
          notFound
            ? `command not found: ${command}`
            : `cannot run ${command}: ${cause.message}`
        }`,
        notFound ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE,
      );
      return { why: "its command could not be started", stdout: undefined };
    }
    if (cause instanceof CommandFailed) {
      return {
        why: `${cause.message}${stderrTail(decoder.decode(cause.stderr))}`,
        stdout: cause.stdout,
      };
    }
    const why = error.kind === "timeout"
      ? `"${options.execText}" took longer than --timeout ${options.timeout} ms and was killed`
      : error.kind === "aborted" && fatal !== undefined
      ? "not run after an earlier fatal error"
      : `ocycle could not run it: ${error.message}`;
    return { why, stdout: undefined };
  };
  const onDone = (result: unknown, info: ChunkInfo) => {
    counts.done++;
    sink.deliver(info.index, toBytes(result));
  };
  const onError = (error: ChunkError, info: ChunkInfo) => {
    counts.failed++;
    if (options.exec === undefined) {
      // The ChunkError message already names the chunk, its offset and mode.
      report(`${error.message}${stderrTail(error.stderr)}`);
      return sink.deliver(info.index, undefined);
    }
    const { why, stdout } = execFailure(error);
    report(`${describeChunk(info)} failed: ${why}`);
    // Whatever the command wrote is still its output: keep it.
    sink.deliver(info.index, stdout);
  };
  const common: BufferEmitOptions<unknown> = {
    clip: options.clip,
    ...(options.hop === undefined ? {} : { hop: options.hop }),
    pool: options.pool,
    maxPending: Infinity,
    ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
    onDone,
    onError,
  };
  let emitter: BufferEmit<unknown>;
  try {
    emitter = moduleUrl !== undefined
      ? new BufferEmit<unknown>(moduleUrl, options.size, {
        ...common,
        mode: options.mode,
        exportName: options.exportName,
        ...(options.mode === "process" ? { permissions: options.allow } : {}),
      })
      : new BufferEmit<unknown>(() => {}, options.size, {
        ...common,
        mode: "process",
        concurrency: 1,
        [TRANSPORT]: new ExecKind(options.exec!, options.execText!),
      } as BufferEmitOptions<unknown>);
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
        if (fatal !== undefined) break;
        await sink.room;
        if (sink.error !== undefined) break;
      }
    } finally {
      await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
    const before = emitter.stats.emitted;
    // After a fatal error, what was not run yet is reported as such.
    if (fatal !== undefined) await emitter.abort(fatal);
    else {
      await emitter.close().catch((error) => {
        report(message(error));
      });
    }
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
