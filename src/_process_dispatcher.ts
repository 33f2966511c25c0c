// Copyright the @ocycle/core authors. MIT license.
// Process mode: a pool of Deno subprocesses, each running `_child.ts`, fed
// framed messages over stdin and answering over stdout (see the framing in
// _protocol.ts). Children start on the first chunk, are reused, are replaced
// when they die, and are all ended by close(). Everything that can go wrong
// with a child (a crash, a timeout, a broken pipe, bytes that are not frames,
// a frame that stalls) ends in one place, `#fail`, which kills the child,
// fails the chunk it was running and hands the chunks queued behind it to
// another child.

import type * as V8 from "node:v8";
import { ChunkError, type ChunkErrorKind } from "./chunk_error.ts";
import type { ChunkInfo } from "./chunk_info.ts";
import type {
  Dispatcher,
  DispatcherContext,
  DispatcherCounts,
  Task,
} from "./_dispatcher.ts";
import {
  CHILD_FRAME_TYPES,
  decodeValue,
  encodeFrame,
  encodeTaskHead,
  encodeTaskMeta,
  type Frame,
  FrameDecoder,
  FrameType,
  fromWireError,
  type InitMessage,
  MAX_FRAME_BYTES,
  ProtocolError,
  type WireError,
} from "./_protocol.ts";

/** Knobs with sane defaults; tests turn them down. */
export interface ProcessTuning {
  /** Milliseconds a frame may stay half-received before the child is deemed broken. */
  stallTimeout: number;
  /** Children that may die before they are ready, in a row, before start-up fails for good. */
  startAttempts: number;
  /** Milliseconds a child may take to load the callback module and say it is ready. */
  startTimeout: number;
  /** Milliseconds `close()` waits for a child to exit after its stdin ends, before killing it. */
  closeGrace: number;
  /** Lines of a child's stderr kept for errors. */
  stderrLines: number;
  /** Largest frame body accepted from a child, in bytes. */
  maxFrameBytes: number;
  /** Test knob: the child writes its frames this many bytes at a time. */
  writePiece: number | undefined;
}

const DEFAULT_TUNING: ProcessTuning = {
  stallTimeout: 10_000,
  startAttempts: 3,
  startTimeout: 30_000,
  closeGrace: 10_000,
  stderrLines: 20,
  maxFrameBytes: MAX_FRAME_BYTES,
  writePiece: undefined,
};

/** Raw bytes in one write up to which the task head and the chunk are joined. */
const JOIN_BELOW = 4096;

interface Pending<R> {
  readonly id: number;
  readonly info: ChunkInfo;
  readonly meta: Uint8Array;
  readonly raw: Uint8Array | undefined;
  readonly resolve: (value: R) => void;
  readonly reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  child: Child | undefined;
  done: boolean;
}

type ChildState = "starting" | "ready" | "closing" | "dead";

interface Child {
  readonly slot: number;
  readonly process: Deno.ChildProcess;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly decoder: FrameDecoder;
  readonly tail: string[];
  /** Tasks sent to the child, oldest (running) first. */
  readonly tasks: Pending<unknown>[];
  state: ChildState;
  status: Deno.CommandStatus | undefined;
  stall: ReturnType<typeof setTimeout> | undefined;
  /** Resolves once the process has exited and both pipes are drained. */
  ended: Promise<void>;
  /** Why it died, set by `#fail`; reported once its exit status is known. */
  failure: Failure | undefined;
  /** What the parent saw before the child exited, such as a broken pipe. */
  note: string | undefined;
}

interface Failure {
  readonly kind: ChunkErrorKind;
  readonly detail: string;
  readonly failed: Pending<unknown> | undefined;
  readonly wasStarting: boolean;
}

/**
 * Runs chunks in a pool of Deno child processes. `slots` is
 * `pool * concurrency`: each child holds up to `concurrency` chunks, runs
 * the oldest and reads the next while it does.
 */
export class ProcessDispatcher<C, R> implements Dispatcher<C, R> {
  readonly slots: number;
  readonly copies = true;
  readonly #context: DispatcherContext<C, R>;
  readonly #tuning: ProcessTuning;
  readonly #args: string[];
  #init: Uint8Array | undefined;
  readonly #children: (Child | undefined)[];
  readonly #all = new Set<Child>();
  readonly #waiting: Pending<R>[] = [];
  #nextId = 0;
  #started = false;
  #state: "open" | "closing" | "aborted" = "open";
  #replaced = 0;
  #failedStarts = 0;
  #broken: ChunkErrorFactory | undefined;

  constructor(
    context: DispatcherContext<C, R>,
    tuning: Partial<ProcessTuning> = {},
  ) {
    this.#context = context;
    this.#tuning = { ...DEFAULT_TUNING, ...tuning };
    this.slots = context.pool * context.concurrency;
    this.#children = new Array(context.pool).fill(undefined);
    const url = context.callback;
    if (!(url instanceof URL)) {
      throw new TypeError(
        `Cannot create ${context.owner} in process mode as a function cannot cross into a child process: pass the URL of a module that exports the callback`,
      );
    }
    this.#args = childArgs(context, url, this.#tuning);
    loadCodec();
  }

  run(task: Task<C>): Promise<R> {
    // The codec is loaded once, on the first process-mode emitter: until it
    // is there, chunks wait for it.
    const info = task.info;
    if (v8 === undefined) {
      return loadCodec().then(() => {
        if (v8 !== undefined) return this.run(task);
        throw new ChunkError(
          "startup",
          info,
          "process",
          `process mode needs node:v8, which could not be imported: ${
            describe(codecError)
          }`,
          { cause: codecError },
        );
      });
    }
    if (this.#broken !== undefined) {
      return Promise.reject(this.#broken(info));
    }
    if (this.#state !== "open") {
      return Promise.reject(
        new ChunkError(
          "aborted",
          info,
          "process",
          "the process pool is closed",
        ),
      );
    }
    const format = this.#context.format;
    let raw: Uint8Array | undefined;
    let meta: Uint8Array;
    if (format.kind === "bytes" || format.kind === "samples") {
      const view = task.chunk as unknown as ArrayBufferView;
      raw = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      meta = encodeTaskMeta(info, undefined, true, clone);
    } else {
      meta = encodeTaskMeta(info, task.chunk, false, clone);
    }
    const bytes = meta.length + (raw?.length ?? 0) + 16;
    if (bytes > MAX_FRAME_BYTES) {
      return Promise.reject(
        new RangeError(
          `Cannot send chunk ${info.index} to a child process as it takes ${bytes} bytes, over the frame limit of ${MAX_FRAME_BYTES} bytes: use a smaller 'size'`,
        ),
      );
    }
    return new Promise<R>((resolve, reject) => {
      const pending: Pending<R> = {
        id: this.#nextId = (this.#nextId % 0xfffffffe) + 1,
        info,
        meta,
        raw,
        resolve,
        reject,
        timer: undefined,
        child: undefined,
        done: false,
      };
      this.#waiting.push(pending);
      if (!this.#started) {
        this.#started = true;
        for (let slot = 0; slot < this.#children.length; slot++) {
          this.#spawn(slot);
        }
      }
      this.#assign();
    });
  }

  async close(): Promise<void> {
    if (this.#state === "open") this.#state = "closing";
    for (const child of this.#all) {
      if (child.state === "ready" || child.state === "starting") {
        child.state = "closing";
        child.writer.close().catch(() => {});
        const grace = setTimeout(() => kill(child), this.#tuning.closeGrace);
        child.ended.finally(() => clearTimeout(grace));
      }
    }
    while (this.#all.size > 0) {
      await Promise.all([...this.#all].map((child) => child.ended));
    }
  }

  async abort(reason: unknown): Promise<void> {
    this.#state = "aborted";
    const error = (info: ChunkInfo) =>
      new ChunkError(
        "aborted",
        info,
        "process",
        `the emitter was aborted: ${describe(reason)}`,
        { cause: reason },
      );
    for (const pending of this.#waiting.splice(0)) {
      this.#settle(pending, error(pending.info));
    }
    for (const child of this.#all) {
      for (const pending of child.tasks.splice(0)) {
        this.#settle(pending, error(pending.info));
      }
      if (child.state !== "dead") {
        child.state = "dead";
        kill(child);
      }
    }
    await this.close();
  }

  counts(): DispatcherCounts {
    let workers = 0;
    for (const child of this.#all) if (child.state !== "dead") workers++;
    return { workers, replaced: this.#replaced };
  }

  // ---- children ----

  #encodeInit(): Uint8Array {
    const init: InitMessage = {
      type: "init",
      url: (this.#context.callback as URL).href,
      exportName: this.#context.exportName,
      format: this.#context.format,
      borrow: false,
    };
    return encodeFrame(FrameType.init, 0, clone(init));
  }

  #spawn(slot: number): void {
    let process: Deno.ChildProcess;
    try {
      process = new Deno.Command(Deno.execPath(), {
        args: this.#args,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        clearEnv: true,
        env: this.#context.env ?? {},
      }).spawn();
    } catch (error) {
      // Most often: the parent lacks --allow-run for the Deno executable.
      this.#breakPool(
        `a child process could not be started: ${describe(error)}`,
        { cause: error },
      );
      return;
    }
    const child: Child = {
      slot,
      process,
      writer: process.stdin.getWriter(),
      decoder: new FrameDecoder(CHILD_FRAME_TYPES, this.#tuning.maxFrameBytes),
      tail: [],
      tasks: [],
      state: "starting",
      status: undefined,
      stall: undefined,
      ended: Promise.resolve(),
      failure: undefined,
      note: undefined,
    };
    this.#children[slot] = child;
    this.#all.add(child);
    const ms = this.#tuning.startTimeout;
    const startTimer = setTimeout(() => {
      if (child.state === "starting") {
        this.#fail(
          child,
          "startup",
          `the child did not load the callback module and say it was ready within ${ms} ms`,
        );
      }
    }, ms);
    const stdout = process.stdout.getReader();
    const stderr = process.stderr.getReader();
    const pipes = Promise.all([
      this.#readStdout(child, stdout),
      this.#readStderr(child, stderr),
    ]);
    child.ended = (async () => {
      child.status = await process.status;
      clearTimeout(startTimer);
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
        this.#fail(
          child,
          "crash",
          "the child exited but its pipes stayed open",
        );
        await Promise.all([stdout.cancel(), stderr.cancel()]).catch(() => {});
        await pipes;
      }
      if (child.state === "closing") child.state = "dead";
      else {
        this.#fail(
          child,
          "crash",
          child.note ?? "the child exited unexpectedly",
        );
      }
      // Whatever happened, the stdin pipe is ours to close.
      await child.writer.abort().catch(() => {});
      this.#settleDeath(child);
      this.#all.delete(child);
    })();
    this.#write(child, this.#init ??= this.#encodeInit());
  }

  async #readStdout(
    child: Child,
    reader: ReadableStreamDefaultReader<Uint8Array>,
  ): Promise<void> {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        if (child.state === "dead") continue;
        let frames: Frame[];
        try {
          frames = child.decoder.push(value);
        } catch (error) {
          this.#fail(
            child,
            "protocol",
            `the child broke the stdio protocol: ${describe(error)}`,
          );
          continue;
        }
        this.#armStall(child);
        for (const frame of frames) {
          if ((child.state as ChildState) === "dead") break;
          this.#onFrame(child, frame);
        }
      }
      if (child.state !== "dead") {
        try {
          child.decoder.end();
        } catch (error) {
          this.#fail(child, "protocol", describe(error));
        }
      }
    } catch (error) {
      this.#fail(
        child,
        "crash",
        `reading its stdout failed: ${describe(error)}`,
      );
      await reader.cancel().catch(() => {});
    } finally {
      if (child.stall !== undefined) clearTimeout(child.stall);
      reader.releaseLock();
    }
  }

  async #readStderr(
    child: Child,
    reader: ReadableStreamDefaultReader<Uint8Array>,
  ): Promise<void> {
    const prefix = `[ocycle child ${child.slot}] `;
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    const keep = this.#tuning.stderrLines;
    let partial = "";
    const line = (text: string) => {
      child.tail.push(text.length > 2000 ? text.slice(0, 2000) + "…" : text);
      if (child.tail.length > keep) child.tail.shift();
      try {
        Deno.stderr.writeSync(encoder.encode(prefix + text + "\n"));
      } catch {
        // The parent's stderr is gone; the tail is still kept for errors.
      }
    };
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        const lines = (partial + decoder.decode(value, { stream: true }))
          .split("\n");
        partial = lines.pop()!;
        for (const text of lines) line(text);
      }
    } catch {
      await reader.cancel().catch(() => {});
    } finally {
      partial += decoder.decode();
      if (partial !== "") line(partial);
      reader.releaseLock();
    }
  }

  #armStall(child: Child): void {
    if (child.stall !== undefined) clearTimeout(child.stall);
    child.stall = undefined;
    const partial = child.decoder.partial;
    if (partial === undefined) return;
    const ms = this.#tuning.stallTimeout;
    child.stall = setTimeout(() => {
      child.stall = undefined;
      const now = child.decoder.partial ?? partial;
      this.#fail(
        child,
        "protocol",
        `a frame stalled: ${now.received} of ${now.expected} bytes arrived and nothing more for ${ms} ms`,
      );
    }, ms);
  }

  #onFrame(child: Child, frame: Frame): void {
    switch (frame.type) {
      case FrameType.ready:
        if (child.state === "closing") return;
        if (child.state !== "starting") {
          return this.#fail(child, "protocol", "an unexpected ready frame");
        }
        child.state = "ready";
        this.#failedStarts = 0;
        this.#assign();
        return;
      case FrameType.startupError: {
        if (child.state !== "starting") {
          return this.#fail(child, "protocol", "an unexpected start-up error");
        }
        const error = fromWireError(decodeWireError(frame));
        this.#breakPool(
          `the callback module could not be loaded: ${error.message}`,
          { cause: error, stderr: child.tail.join("\n") },
        );
        child.state = "dead";
        kill(child);
        return;
      }
      case FrameType.result:
      case FrameType.error: {
        const at = child.tasks.findIndex((p) => p.id === frame.id);
        if (at === -1 || frame.id === 0) {
          return this.#fail(
            child,
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
            : v8!.deserialize(frame.body);
        } catch (error) {
          return this.#fail(
            child,
            "protocol",
            `the child broke the stdio protocol: a frame body could not be decoded: ${
              describe(error)
            }`,
          );
        }
        const pending = child.tasks.splice(at, 1)[0]!;
        const next = child.tasks[0];
        if (at === 0 && next !== undefined) {
          this.#startClock(next as Pending<R>);
        }
        if (frame.type === FrameType.result) {
          this.#settle(pending, undefined, value);
        } else {
          const cause = fromWireError(value as WireError);
          this.#settle(
            pending,
            new ChunkError(
              "callback",
              pending.info,
              "process",
              `the callback threw: ${cause.message}`,
              { cause, stderr: child.tail.join("\n") },
            ),
          );
        }
        this.#assign();
        return;
      }
      default:
        return this.#fail(
          child,
          "protocol",
          `the child sent a frame of type ${frame.type} meant for children`,
        );
    }
  }

  /** Hands waiting chunks to ready children, the least busy first. */
  #assign(): void {
    const limit = this.#context.concurrency;
    while (this.#waiting.length > 0) {
      let best: Child | undefined;
      for (const child of this.#children) {
        if (
          child !== undefined && child.state === "ready" &&
          child.tasks.length < limit &&
          (best === undefined || child.tasks.length < best.tasks.length)
        ) best = child;
      }
      if (best === undefined) return;
      const pending = this.#waiting.shift()!;
      pending.child = best;
      best.tasks.push(pending as Pending<unknown>);
      if (best.tasks.length === 1) this.#startClock(pending);
      const head = encodeTaskHead(
        pending.id,
        pending.meta,
        pending.raw?.length ?? 0,
      );
      const raw = pending.raw;
      if (raw === undefined || raw.length === 0) this.#write(best, head);
      else if (raw.length < JOIN_BELOW) {
        const joined = new Uint8Array(head.length + raw.length);
        joined.set(head);
        joined.set(raw, head.length);
        this.#write(best, joined);
      } else {
        this.#write(best, head);
        this.#write(best, raw);
      }
    }
  }

  /** Writes to a child's stdin; the writer queues writes in order and waits on the pipe. */
  #write(child: Child, bytes: Uint8Array): void {
    child.writer.write(bytes).catch((error) => {
      if (child.state === "dead" || child.state === "closing") return;
      // The child is gone or going: end it, and let its exit be the fault,
      // once the results it wrote before it died have been read.
      child.note ??= error instanceof Deno.errors.BrokenPipe
        ? "its stdin is closed (broken pipe): the child is gone"
        : `writing to its stdin failed: ${describe(error)}`;
      kill(child);
    });
  }

  /**
   * A child runs its chunks one at a time, so a chunk's time starts when it
   * becomes the oldest its child holds: a chunk sent ahead while another runs
   * is not charged for the wait, nor for a respawn after a fault.
   */
  #startClock(pending: Pending<R>): void {
    const timeout = this.#context.timeout;
    if (timeout === Infinity || pending.timer !== undefined) return;
    pending.timer = setTimeout(() => this.#timedOut(pending), timeout);
  }

  #timedOut(pending: Pending<R>): void {
    pending.timer = undefined;
    if (pending.done) return;
    const child = pending.child;
    const detail =
      `the callback did not settle within ${this.#context.timeout} ms`;
    if (child === undefined) {
      const at = this.#waiting.indexOf(pending);
      if (at !== -1) this.#waiting.splice(at, 1);
      this.#settle(
        pending,
        new ChunkError("timeout", pending.info, "process", detail),
      );
      return;
    }
    this.#fail(child, "timeout", detail, pending as Pending<unknown>);
  }

  /**
   * The one place a child ends badly: it is marked dead and killed; the chunk
   * it was running (the oldest it holds, or `culprit`) fails once its exit
   * status is known; the chunks behind it go back to the front of the queue.
   */
  #fail(
    child: Child,
    kind: ChunkErrorKind,
    detail: string,
    culprit?: Pending<unknown>,
  ): void {
    if (child.state === "dead") return;
    const wasStarting = child.state === "starting";
    child.state = "dead";
    if (this.#children[child.slot] === child) {
      this.#children[child.slot] = undefined;
    }
    if (child.stall !== undefined) clearTimeout(child.stall);
    kill(child);
    child.writer.abort().catch(() => {});
    const tasks = child.tasks.splice(0);
    const failed = culprit ?? tasks[0];
    const requeue = tasks.filter((p) => p !== failed);
    for (let i = requeue.length - 1; i >= 0; i--) {
      const pending = requeue[i]!;
      pending.child = undefined;
      if (pending.timer !== undefined) clearTimeout(pending.timer);
      pending.timer = undefined;
      if (this.#state === "aborted") continue;
      this.#waiting.unshift(pending as Pending<R>);
    }
    child.failure = { kind, detail, failed, wasStarting };
  }

  /** Once the child's exit status is known: report, then replace it. */
  #settleDeath(child: Child): void {
    const failure = child.failure;
    const status = child.status;
    const exit = exitText(status);
    const options = {
      exitCode: status?.code ?? null,
      signal: status?.signal ?? null,
      stderr: child.tail.join("\n"),
    };
    if (failure === undefined) return;
    const { kind, detail, failed, wasStarting } = failure;
    const text = `${detail} (child ${child.slot}, ${exit})${
      stderrHint(child.tail)
    }`;
    if (failed !== undefined && !failed.done) {
      this.#settle(
        failed as Pending<R>,
        new ChunkError(
          kind,
          failed.info,
          "process",
          text,
          options,
        ),
      );
    } else if (kind !== "crash" || !wasStarting) {
      // Nothing to blame it on: still say what happened.
      warn(child, `replaced after a fault while idle: ${text}`);
    }
    if (this.#state !== "open" || this.#broken !== undefined) {
      this.#failWaitingIfStuck();
      return;
    }
    if (wasStarting) {
      this.#failedStarts++;
      if (this.#failedStarts >= this.#tuning.startAttempts) {
        this.#breakPool(
          `${this.#failedStarts} children in a row exited before they were ready; the last: ${detail} (${exit})${
            stderrHint(child.tail)
          }`,
          options,
        );
        return;
      }
    }
    this.#replaced++;
    this.#spawn(child.slot);
    this.#assign();
  }

  /** After close or abort, nothing waiting can run any more. */
  #failWaitingIfStuck(): void {
    if (this.#state === "open" && this.#broken === undefined) return;
    for (const pending of this.#waiting.splice(0)) {
      this.#settle(
        pending,
        this.#broken?.(pending.info) ??
          new ChunkError(
            "aborted",
            pending.info,
            "process",
            "the process pool was stopped before the chunk ran",
          ),
      );
    }
  }

  /** Start-up failed for good: every chunk waiting, and every later one, fails with this. */
  #breakPool(
    detail: string,
    options: {
      cause?: unknown;
      exitCode?: number | null;
      signal?: string | null;
      stderr?: string;
    },
  ): void {
    if (this.#broken !== undefined) return;
    this.#broken = (info) =>
      new ChunkError(
        "startup",
        info,
        "process",
        `the process pool could not start: ${detail}`,
        options,
      );
    this.#failWaitingIfStuck();
    for (const child of this.#all) {
      if (child.state === "starting") {
        child.state = "dead";
        kill(child);
        child.writer.abort().catch(() => {});
      }
    }
  }

  #settle(pending: Pending<R>, error: unknown, value?: unknown): void {
    if (pending.done) return;
    pending.done = true;
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    pending.timer = undefined;
    if (error === undefined) pending.resolve(value as R);
    else pending.reject(error);
  }
}

type ChunkErrorFactory = (info: ChunkInfo) => ChunkError;

/** The arguments of `deno` for a child: least privilege, no prompt, no shell. */
function childArgs<C, R>(
  context: DispatcherContext<C, R>,
  url: URL,
  tuning: ProcessTuning,
): string[] {
  const args = ["run", "--no-prompt"];
  const readsAll = context.permissionFlags.includes("--allow-read");
  if (url.protocol === "file:" && !readsAll) {
    const path = decodeURIComponent(url.pathname);
    if (path.includes(",")) {
      throw new TypeError(
        `Cannot create ${context.owner} in process mode as the path of its callback module has a comma, which Deno's --allow-read list cannot express: move or rename ${path}, or grant permissions.read: true`,
      );
    }
    args.push(`--allow-read=${path}`);
  } else if (url.protocol === "http:" || url.protocol === "https:") {
    args.push(`--allow-import=${url.host}`);
  }
  args.push(...context.permissionFlags);
  if (context.v8Flags.length > 0) {
    args.push(`--v8-flags=${context.v8Flags.join(",")}`);
  }
  args.push(new URL("./_child.ts", import.meta.url).href);
  if (tuning.writePiece !== undefined) {
    args.push(`--write-piece=${tuning.writePiece}`);
  }
  return args;
}

function kill(child: Child): void {
  if (child.status !== undefined) return;
  try {
    child.process.kill("SIGKILL");
  } catch {
    // Already gone.
  }
}

function exitText(status: Deno.CommandStatus | undefined): string {
  if (status === undefined) return "exit status unknown";
  return status.signal !== null
    ? `killed by ${status.signal}`
    : `exit code ${status.code}`;
}

function stderrHint(tail: string[]): string {
  const last = tail.filter((line) => line.trim() !== "").slice(-3);
  return last.length === 0 ? "" : `; its stderr ends: ${last.join(" | ")}`;
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

function warn(child: Child, text: string): void {
  try {
    Deno.stderr.writeSync(
      new TextEncoder().encode(`[ocycle child ${child.slot}] ${text}\n`),
    );
  } catch {
    // The parent's stderr is gone.
  }
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

function describe(value: unknown): string {
  if (value instanceof ProtocolError) return value.message;
  return value instanceof Error
    ? `${value.name}: ${value.message}`
    : String(value);
}
