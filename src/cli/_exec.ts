// Copyright the @ocycle/core authors. MIT license.
// `ocycle --exec`: runs the command once per chunk, the chunk on its stdin,
// and collects its stdout.

import type { ChunkInfo } from "../chunk_info.ts";
import type { CliOptions } from "./_args.ts";
import {
  type Counts,
  EXIT_NOT_EXECUTABLE,
  EXIT_NOT_FOUND,
  Fatal,
  message,
  stderrTail,
} from "./_common.ts";
import type { Sink } from "./_sink.ts";

const decoder = new TextDecoder();

/** Runs `--exec` for each chunk, at most `pool` at a time. */
export class ExecRunner {
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
    const tail = stderr === undefined ? "" : stderrTail(decoder.decode(stderr));
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

function describeChunk(info: ChunkInfo): string {
  return `chunk ${info.index} (bytes ${info.offset}..${
    info.offset + info.length
  })`;
}
