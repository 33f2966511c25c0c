// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line behind cli.ts: reads standard input, cuts it into
// chunks with BufferEmit, and hands each chunk either to a command (`--exec`,
// the chunk on its stdin, as GNU parallel --pipe does) or to a handler module
// run in the thread or process pool (`--module`). Outputs go to stdout, in
// input order with --keep-order; every failure is reported on stderr and
// makes the exit code non-zero. The parts: _args.ts (the command line),
// _exec.ts (--exec), _sink.ts (stdout), _units.ts (sizes and durations).

import { BufferEmit } from "../buffer_emit.ts";
import { type CliOptions, HELP, parseCliArgs, UsageError } from "./_args.ts";
import {
  type Counts,
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  Fatal,
  message,
  stderrTail,
} from "./_common.ts";
import { ExecRunner } from "./_exec.ts";
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
          report(`${error.message}${stderrTail(error.stderr)}`);
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
