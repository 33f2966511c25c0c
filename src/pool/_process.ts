// Copyright the @ocycle/core authors. MIT license.
// Process mode: the transport to one Deno subprocess running
// pool/_child_entry.ts, fed frames (wire/_framing.ts) over stdin and answering
// over stdout. A child runs its chunks one at a time, so when it dies only the
// oldest chunk it holds goes with it. Everything a child can do wrong on its
// pipes (bytes that are not frames, a frame that stalls, an exit with its
// pipes held open, a broken pipe) becomes one fault for the pool. A child
// runs in a process group of its own (pool/_spawn.ts): a terminal's Ctrl-C
// does not reach it, and killing it kills whatever it started too.

import type * as V8 from "node:v8";
import { concat } from "@std/bytes/concat";
import { TextLineStream } from "@std/streams/text-line-stream";
import { ChunkError } from "../chunk_error.ts";
import {
  CHILD_FRAME_TYPES,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_FRAME_BYTES,
  ProtocolError,
  STDERR_SYNC,
} from "../wire/_framing.ts";
import {
  fromWireError,
  type InitMessage,
  type WireError,
} from "../wire/_messages.ts";
import {
  decodeValue,
  encodeTaskHead,
  encodeTaskMeta,
} from "../wire/_values.ts";
import {
  childArgs,
  type ChildEnv,
  childEnv,
  type ProcessSettings,
} from "./_process_args.ts";
import { loadFailure } from "../run/_faults.ts";
import { describe, type Task } from "../run/_runner.ts";
import { spawn, type Spawned } from "./_spawn.ts";
import type {
  Exit,
  Groups,
  Job,
  Transport,
  TransportEvents,
  TransportKind,
} from "./_transport.ts";

/** Knobs with sane defaults; tests turn them down. */
export interface ProcessTuning {
  /** Milliseconds a frame may stay half-received before the child is deemed broken. */
  stallTimeout: number;
  /** Milliseconds `close()` waits for a child to exit after its stdin ends, before killing it. */
  closeGrace: number;
  /** Lines of a child's stderr kept for errors. */
  stderrLines: number;
  /** Characters of a stderr line after which it is forwarded in pieces. */
  stderrPiece: number;
  /** Largest frame body sent to or accepted from a child, in bytes. */
  maxFrameBytes: number;
  /** Test knob: the child writes its frames this many bytes at a time. */
  writePiece: number | undefined;
}

const DEFAULT_TUNING: ProcessTuning = {
  stallTimeout: 10_000,
  closeGrace: 10_000,
  stderrLines: 20,
  stderrPiece: 4096,
  maxFrameBytes: MAX_FRAME_BYTES,
  writePiece: undefined,
};

// @std/bytes `concat` and @std/streams `TextLineStream` as used here;
// assigning them checks this against their own types wherever those are
// present (the offline copy has none).
const join: (buffers: Uint8Array[]) => Uint8Array = concat;
const Lines: new (
  options?: { allowCR?: boolean },
) => TransformStream<string, string> = TextLineStream;

/** Milliseconds an error waits for the child's stderr to catch up (see STDERR_SYNC). */
const STDERR_WAIT = 1000;

/** Raw bytes in one write up to which the task head and the chunk are joined. */
const JOIN_BELOW = 4096;

/** A task ready for the pipe: its meta, and its raw bytes for bytes and samples. */
export interface Encoded {
  readonly meta: Uint8Array;
  readonly raw: Uint8Array | undefined;
}

/**
 * Never called: it puts the child's entry in this package's module graph, so
 * that `deno cache` and `deno install` fetch it with the rest, and a child
 * starts with no network.
 */
export const childEntry = (): Promise<unknown> => import("./_child_entry.ts");

/** The process mode of the pool. */
export class ProcessKind implements TransportKind<Encoded> {
  readonly mode = "process";
  readonly noun = "child";
  readonly nouns = "children";
  readonly copies = true;
  readonly oneAtATime = true;
  readonly batches = false;
  readonly #settings: ProcessSettings;
  readonly #tuning: ProcessTuning;
  readonly #args: string[];
  readonly #env: ChildEnv;
  readonly #raw: boolean;
  #init: Uint8Array | undefined;

  /**
   * @throws {TypeError} If the module's path cannot be granted to a child.
   */
  constructor(settings: ProcessSettings, tuning: Partial<ProcessTuning> = {}) {
    this.#settings = settings;
    this.#tuning = { ...DEFAULT_TUNING, ...tuning };
    this.#args = childArgs(settings, this.#tuning.writePiece);
    this.#env = childEnv(settings.env, settings.permissionFlags);
    const kind = settings.layout.kind;
    this.#raw = kind === "bytes" || kind === "samples";
    loadCodec();
  }

  loading(): Promise<void> | undefined {
    return v8 === undefined && codecError === undefined
      ? loadCodec()
      : undefined;
  }

  prepare(task: Task<unknown>): Encoded {
    const info = task.info;
    if (v8 === undefined) {
      throw new ChunkError(
        "startup",
        info,
        "process",
        `process mode needs node:v8, which could not be imported: ${
          describe(codecError)
        }`,
        { cause: codecError },
      );
    }
    let raw: Uint8Array | undefined;
    let meta: Uint8Array;
    if (this.#raw) {
      const view = task.chunk as ArrayBufferView;
      raw = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      meta = encodeTaskMeta(info, undefined);
    } else meta = encodeTaskMeta(info, clone(task.chunk));
    const bytes = meta.length + (raw?.length ?? 0) + 16;
    const limit = this.#tuning.maxFrameBytes;
    if (bytes > limit) {
      // The chunk never reached a child: the callback is not to blame.
      throw new ChunkError(
        "oversize",
        info,
        "process",
        `the chunk takes ${bytes} bytes on the pipe to a child process, over process mode's frame limit of ${limit} bytes: use a smaller 'size'`,
      );
    }
    return { meta, raw };
  }

  takeBack(): void {
    // The bytes are copied into the pipe: the buffer never left.
  }

  start(
    index: number,
    events: TransportEvents,
    groups: Groups,
  ): Transport<Encoded> {
    const process = spawn(Deno.execPath(), {
      args: this.#args,
      clearEnv: !this.#env.inherit,
      env: this.#env.env,
      groups,
    });
    this.#init ??= encodeFrame(
      FrameType.init,
      0,
      clone(
        {
          type: "init",
          url: this.#settings.url.href,
          exportName: this.#settings.exportName,
          layout: this.#settings.layout,
          borrow: false,
          hideEnv: this.#env.hide,
          ...(this.#env.keep === undefined ? {} : { keepEnv: this.#env.keep }),
        } satisfies InitMessage,
      ),
    );
    return new ProcessTransport(
      index,
      this.#settings.url.href,
      process,
      this.#init,
      this.#tuning,
      events,
    );
  }
}

class ProcessTransport implements Transport<Encoded> {
  readonly gone: Promise<Exit>;
  readonly #index: number;
  /** The callback module's URL, for messages. */
  readonly #url: string;
  readonly #process: Spawned;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #decoder: FrameDecoder;
  readonly #tuning: ProcessTuning;
  readonly #events: TransportEvents;
  readonly #tail: string[] = [];
  /** The ids of the tasks it was sent and has not answered. */
  readonly #ids = new Set<number>();
  #status: Deno.CommandStatus | undefined;
  #stall: ReturnType<typeof setTimeout> | undefined;
  /** Set once it is killed or told to end: what it does then is no fault. */
  #over = false;
  /** What the parent saw before the child exited, such as a broken pipe. */
  #note: string | undefined;
  /** Error frames read from its stdout, and STDERR_SYNC lines from its stderr. */
  #errors = 0;
  #synced = 0;
  /** Errors read before stderr caught up with them: the n-th error, and how to report it. */
  #held: {
    n: number;
    report: () => void;
    timer: ReturnType<typeof setTimeout>;
  }[] = [];

  constructor(
    index: number,
    url: string,
    process: Spawned,
    init: Uint8Array,
    tuning: ProcessTuning,
    events: TransportEvents,
  ) {
    this.#index = index;
    this.#url = url;
    this.#process = process;
    this.#tuning = tuning;
    this.#events = events;
    this.#writer = process.stdin.getWriter();
    this.#decoder = new FrameDecoder(CHILD_FRAME_TYPES, tuning.maxFrameBytes);
    this.gone = this.#watch();
    this.#write(init);
  }

  send(jobs: readonly Job<Encoded>[]): undefined {
    for (const { id, payload: { meta, raw } } of jobs) {
      this.#ids.add(id);
      const head = encodeTaskHead(id, meta, raw?.length ?? 0);
      if (raw === undefined || raw.length === 0) this.#write(head);
      else if (raw.length < JOIN_BELOW) this.#write(join([head, raw]));
      else {
        this.#write(head);
        this.#write(raw);
      }
    }
    return undefined;
  }

  end(): Promise<void> {
    if (!this.#over) {
      this.#over = true;
      this.#writer.close().catch(() => {});
      const grace = setTimeout(() => this.kill(), this.#tuning.closeGrace);
      this.gone.finally(() => clearTimeout(grace));
    }
    return this.gone.then(() => {});
  }

  kill(): void {
    this.#over = true;
    if (this.#status === undefined) this.#process.kill();
    this.#writer.abort().catch(() => {});
  }

  stderr(): string {
    return this.#tail.join("\n");
  }

  /** Reads both pipes until the child is gone; says why it went if it should not have. */
  async #watch(): Promise<Exit> {
    const stdout = this.#process.stdout.getReader();
    const stderr = this.#process.stderr
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(pieces(this.#tuning.stderrPiece))
      .pipeThrough(new Lines({ allowCR: true }))
      .getReader();
    const pipes = Promise.all([
      this.#readStdout(stdout),
      this.#readStderr(stderr),
    ]);
    // Once it exits, whatever it started dies with it (pool/_spawn.ts), and
    // lets go of its pipes.
    const status = this.#status = await this.#process.status;
    // A grandchild may still hold a pipe after the child exits: give the
    // pipes a moment, then stop waiting for them.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      pipes.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), 1000);
      }),
    ]);
    clearTimeout(timer);
    if (late) {
      this.#fault("crash", "the child exited but its pipes stayed open");
      await Promise.all([stdout.cancel(), stderr.cancel()]).catch(() => {});
      await pipes;
    }
    this.#fault("crash", this.#note ?? "the child exited unexpectedly");
    // Whatever happened, the stdin pipe is ours to close.
    await this.#writer.abort().catch(() => {});
    const exit = status.signal !== null
      ? `killed by ${status.signal}`
      : `exit code ${status.code}`;
    const last = this.#tail.filter((line) => line.trim() !== "").slice(-3);
    return {
      text: ` (child ${this.#index}, ${exit})${
        last.length === 0 ? "" : `; its stderr ends: ${last.join(" | ")}`
      }`,
      exitCode: status.code,
      signal: status.signal,
    };
  }

  #fault(kind: "crash" | "protocol", detail: string): void {
    if (this.#over) return;
    this.#over = true;
    this.#events.fault(kind, detail);
  }

  async #readStdout(reader: ReadableStreamDefaultReader<Uint8Array>) {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        if (this.#over) continue;
        let frames: Frame[];
        try {
          frames = this.#decoder.push(value);
        } catch (error) {
          this.#fault(
            "protocol",
            `the child broke the stdio protocol: ${describeFrameError(error)}`,
          );
          continue;
        }
        this.#armStall();
        for (const frame of frames) {
          if (this.#over) break;
          this.#onFrame(frame);
        }
        if (!this.#over) this.#events.flushed();
      }
      if (!this.#over) {
        try {
          this.#decoder.end();
        } catch (error) {
          this.#fault("protocol", describeFrameError(error));
        }
      }
    } catch (error) {
      this.#fault("crash", `reading its stdout failed: ${describe(error)}`);
      await reader.cancel().catch(() => {});
    } finally {
      clearTimeout(this.#stall);
      reader.releaseLock();
    }
  }

  /** Forwards each line (or `\r`-ended piece) of its stderr, and keeps the last ones. */
  async #readStderr(reader: ReadableStreamDefaultReader<string>) {
    const prefix = `[ocycle child ${this.#index}] `;
    const encoder = new TextEncoder();
    const keep = this.#tuning.stderrLines;
    const tail = this.#tail;
    try {
      while (true) {
        const { value: text, done } = await reader.read();
        if (done) break;
        if (text === STDERR_SYNC) {
          this.#release(++this.#synced);
          continue;
        }
        tail.push(text.length > 2000 ? text.slice(0, 2000) + "…" : text);
        if (tail.length > keep) tail.shift();
        try {
          Deno.stderr.writeSync(encoder.encode(prefix + text + "\n"));
        } catch {
          // The parent's stderr is gone; the tail is still kept for errors.
        }
      }
    } catch {
      await reader.cancel().catch(() => {});
    } finally {
      reader.releaseLock();
      this.#release(Infinity);
    }
  }

  /** Reports the held errors up to the n-th, in order. */
  #release(n: number): void {
    const held = this.#held;
    if (held.length === 0 || held[0]!.n > n) return;
    while (held.length > 0 && held[0]!.n <= n) {
      const { report, timer } = held.shift()!;
      clearTimeout(timer);
      if (!this.#over) report();
    }
    if (!this.#over) this.#events.flushed();
  }

  #armStall(): void {
    clearTimeout(this.#stall);
    this.#stall = undefined;
    const partial = this.#decoder.partial;
    if (partial === undefined) return;
    const ms = this.#tuning.stallTimeout;
    this.#stall = setTimeout(() => {
      this.#stall = undefined;
      const now = this.#decoder.partial ?? partial;
      this.#fault(
        "protocol",
        `a frame stalled: ${now.received} of ${now.expected} bytes arrived and nothing more for ${ms} ms`,
      );
    }, ms);
  }

  #onFrame(frame: Frame): void {
    const events = this.#events;
    switch (frame.type) {
      case FrameType.ready:
        return events.ready();
      case FrameType.startupError: {
        const error = fromWireError(decodeWireError(frame));
        this.#over = true;
        return events.fault(
          "load",
          loadFailure(this.#url, error.message),
          error,
        );
      }
      case FrameType.result:
      case FrameType.error: {
        if (!this.#ids.delete(frame.id)) {
          return this.#fault(
            "protocol",
            `the child broke the stdio protocol: a ${
              frame.type === FrameType.result ? "result" : "error"
            } for unknown task id ${frame.id}`,
          );
        }
        let value: unknown;
        try {
          value = frame.type === FrameType.result
            ? decodeValue(frame.body, v8!.deserialize)
            : fromWireError(v8!.deserialize(frame.body) as WireError);
        } catch (error) {
          return this.#fault(
            "protocol",
            `the child broke the stdio protocol: a frame body could not be decoded: ${
              describeFrameError(error)
            }`,
          );
        }
        if (frame.type === FrameType.result) {
          return events.settled(frame.id, false, value);
        }
        const n = ++this.#errors;
        const report = () => events.settled(frame.id, true, value);
        if (n <= this.#synced) return report();
        // Its stderr is not read that far yet: report it once it is.
        this.#held.push({
          n,
          report,
          timer: setTimeout(() => this.#release(n), STDERR_WAIT),
        });
        return;
      }
      default:
        return this.#fault(
          "protocol",
          `the child sent a frame of type ${frame.type} meant for children`,
        );
    }
  }

  /** Writes to its stdin; the writer queues writes in order and waits on the pipe. */
  #write(bytes: Uint8Array): void {
    this.#writer.write(bytes).catch((error) => {
      if (this.#over) return;
      // The child is gone or going: end it, and let its exit be the fault,
      // once the results it wrote before it died have been read.
      this.#note ??= error instanceof Deno.errors.BrokenPipe
        ? "its stdin is closed (broken pipe): the child is gone"
        : `writing to its stdin failed: ${describe(error)}`;
      this.#process.kill();
    });
  }
}

/**
 * Ends a line at most every `max` characters, so that a child that writes
 * without newlines (a progress bar redrawn with `\r` is split by
 * TextLineStream already) is forwarded in pieces and held in bounded memory.
 */
export function pieces(max: number): TransformStream<string, string> {
  /** Characters since the last line end. */
  let run = 0;
  return new TransformStream({
    transform(text, controller) {
      let from = 0;
      let out = "";
      let end = nextLineEnd(text, 0);
      while (from < text.length) {
        if (end !== -1 && end < from) end = nextLineEnd(text, from);
        const room = max - run;
        if (end !== -1 && end - from < room) {
          out += text.slice(from, end + 1);
          from = end + 1;
          run = 0;
        } else if (text.length - from <= room) {
          run += text.length - from;
          break;
        } else {
          out += text.slice(from, from + room) + "\n";
          from += room;
          run = 0;
        }
      }
      controller.enqueue(out + text.slice(from));
    },
  });
}

function nextLineEnd(text: string, from: number): number {
  const n = text.indexOf("\n", from);
  const r = text.indexOf("\r", from);
  return n === -1 ? r : r === -1 ? n : Math.min(n, r);
}

/**
 * `node:v8`, the structured-clone codec of frame bodies. Imported only by
 * process mode, on first use, so that serial and thread modes never load
 * Node compatibility (which edge runtimes may lack).
 */
let v8: typeof V8 | undefined;
let codecError: unknown;
let loadingCodec: Promise<void> | undefined;

/** Loads `node:v8`; never rejects: a failure is kept in `codecError`. */
function loadCodec(): Promise<void> {
  return loadingCodec ??= import("node:v8").then(
    (module) => {
      v8 = module;
    },
    (error) => {
      codecError = error;
    },
  );
}

function clone(value: unknown): Uint8Array {
  return new Uint8Array(v8!.serialize(value));
}

function decodeWireError(frame: Frame): WireError {
  try {
    const wire = v8!.deserialize(frame.body) as WireError;
    if (typeof wire?.message === "string") return wire;
    return { name: "Error", message: String(wire) };
  } catch (error) {
    return { name: "Error", message: describe(error) };
  }
}

function describeFrameError(value: unknown): string {
  return value instanceof ProtocolError ? value.message : describe(value);
}
