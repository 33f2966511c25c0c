// Copyright the @ocycle/core authors. MIT license.
// `ocycle --exec` as a transport of the emitter's own pool: each slot runs
// the command once per chunk, the chunk on its stdin, and its stdout is the
// chunk's result. So the queue, the order, `--timeout` (the pool's clock kills
// the command) and the error reporting are the emitter's, as for `--module`.
// Each command runs in a process group of its own (pool/_spawn.ts): a
// terminal's Ctrl-C does not reach it, and once it exits, is timed out or
// killed, its whole tree goes (`sh -c 'sleep 40'` leaves no `sleep` behind).

import { concat } from "@std/bytes/concat";
import { spawn, type Spawned } from "../pool/_spawn.ts";
import type {
  Exit,
  Groups,
  Job,
  Transport,
  TransportEvents,
  TransportKind,
} from "../pool/_transport.ts";

/** A command that ran and failed: what it said, for the report. */
export class CommandFailed extends Error {
  override readonly name = "CommandFailed";
  /** What it wrote to stderr (its first MiB). */
  readonly stderr: Uint8Array;

  constructor(why: string, stderr: Uint8Array) {
    super(why);
    this.stderr = stderr;
  }
}

/** The command could not be started at all (not found, not executable). */
export class CommandNotStarted extends Error {
  override readonly name = "CommandNotStarted";
}

const GONE: Exit = { text: "" };

/** The pool's mode for `--exec`: a slot is a place for one command at a time. */
export class ExecKind implements TransportKind<undefined> {
  readonly mode = "process";
  readonly noun = "command";
  readonly nouns = "commands";
  readonly copies = true;
  readonly oneAtATime = true;
  readonly batches = false;
  readonly #argv: readonly string[];
  readonly #text: string;
  readonly #output: OutputOf;

  /**
   * @param argv The command and its arguments.
   * @param text The command as the user wrote it, for messages.
   * @param output Where each chunk's command writes its stdout, as it comes.
   */
  constructor(argv: readonly string[], text: string, output: OutputOf) {
    this.#argv = argv;
    this.#text = text;
    this.#output = output;
  }

  loading(): undefined {
    return undefined;
  }

  prepare(): undefined {
    return undefined;
  }

  takeBack(): void {
    // The bytes are copied into the pipe: the buffer never left.
  }

  start(
    _index: number,
    events: TransportEvents,
    groups: Groups,
  ): Transport<undefined> {
    return new ExecTransport(
      this.#argv,
      this.#text,
      this.#output,
      events,
      groups,
    );
  }
}

/** Where chunk `index`'s command writes its stdout; `write` resolves once it is taken. */
export type OutputOf = (
  index: number,
) => { write(bytes: Uint8Array): Promise<void> };

/** @std/bytes `concat`, typed by assignment (the offline copy has no types). */
const join: (buffers: Uint8Array[]) => Uint8Array = concat;

/** Bytes of a command's stderr kept for its report; past them it passes through as it comes. */
const STDERR_KEEP = 1 << 20;

class ExecTransport implements Transport<undefined> {
  readonly gone: Promise<Exit>;
  readonly #program: string;
  readonly #args: readonly string[];
  readonly #text: string;
  readonly #output: OutputOf;
  readonly #events: TransportEvents;
  readonly #groups: Groups;
  #resolveGone!: (exit: Exit) => void;
  #child: Spawned | undefined;
  /** Resolves once the running command, if any, has been dealt with. */
  #running: Promise<void> = Promise.resolve();
  #over = false;

  constructor(
    argv: readonly string[],
    text: string,
    output: OutputOf,
    events: TransportEvents,
    groups: Groups,
  ) {
    this.#program = argv[0]!;
    this.#args = argv.slice(1);
    this.#text = text;
    this.#output = output;
    this.#events = events;
    this.#groups = groups;
    this.gone = new Promise((resolve) => this.#resolveGone = resolve);
    queueMicrotask(() => {
      if (!this.#over) events.ready();
    });
  }

  send(jobs: readonly Job<undefined>[]): undefined {
    for (const job of jobs) {
      this.#running = this.#running.then(() => this.#run(job)).catch(
        (error) => {
          // Whatever went wrong, the chunk is reported, never left hanging.
          this.#events.settled(job.id, true, error);
          this.#events.flushed();
        },
      );
    }
    return undefined;
  }

  end(): Promise<void> {
    this.#over = true;
    this.#running.then(() => this.#resolveGone(GONE));
    return this.gone.then(() => {});
  }

  kill(): void {
    this.#over = true;
    this.#child?.kill();
    this.#running.then(() => this.#resolveGone(GONE));
  }

  stderr(): string {
    return "";
  }

  async #run(job: Job<undefined>): Promise<void> {
    if (this.#over) return;
    const events = this.#events;
    let child: Spawned;
    try {
      child = this.#child = spawn(this.#program, {
        args: this.#args,
        groups: this.#groups,
        perChunk: true,
      });
    } catch (error) {
      events.settled(
        job.id,
        true,
        new CommandNotStarted(describe(error), { cause: error }),
      );
      return events.flushed();
    }
    const feed = (async () => {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(job.task.chunk as Uint8Array);
        await writer.close();
      } catch (error) {
        // A command that exits without reading all its input (head -c 10)
        // is judged by its exit status, not by the pipe it closed.
        if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      }
    })();
    const output = this.#output(job.task.info.index);
    const [, stderr, status] = await Promise.all([
      (async () => {
        // Streamed: its output never waits whole in memory.
        for await (const bytes of child.stdout) await output.write(bytes);
      })(),
      keepStderr(child.stderr),
      // Once it exits, what it left running in its group goes too
      // (pool/_spawn.ts): nothing then holds its pipes open, and nothing
      // outlives the chunk.
      child.status,
      feed.catch(() => {}),
    ]);
    this.#child = undefined;
    if (this.#over) return;
    if (status.success) {
      // A successful command's stderr passes through, one chunk's at a time.
      if (stderr.length > 0) writeAllSync(Deno.stderr, stderr);
      events.settled(job.id, false, undefined);
    } else {
      const why = status.signal !== null
        ? `"${this.#text}" was killed by ${status.signal}`
        : `"${this.#text}" exited with code ${status.code}`;
      events.settled(job.id, true, new CommandFailed(why, stderr));
    }
    events.flushed();
  }
}

/**
 * A command's stderr, for its report or to pass on once it succeeds: the
 * first STDERR_KEEP bytes are kept, and what comes after passes through at
 * once, so that memory stays bounded.
 */
async function keepStderr(
  stream: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  const kept: Uint8Array[] = [];
  let bytes = 0;
  for await (const piece of stream) {
    if (bytes >= STDERR_KEEP) writeAllSync(Deno.stderr, piece);
    else {
      kept.push(piece);
      bytes += piece.length;
    }
  }
  return join(kept);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function writeAllSync(
  file: { writeSync(p: Uint8Array): number },
  bytes: Uint8Array,
): void {
  for (let at = 0; at < bytes.length;) {
    at += file.writeSync(bytes.subarray(at));
  }
}
