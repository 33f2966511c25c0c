/**
 * The one error class a caller of an emitter needs to catch.
 *
 * @module
 */

import type { ChunkInfo, Mode } from "./chunk_info.ts";

/** What went wrong with a chunk. */
export type ChunkErrorKind =
  /** The callback threw or its promise rejected. */
  | "callback"
  /** `onDone` threw while handling the chunk's result. */
  | "onDone"
  /** The callback did not settle within `timeout` milliseconds. */
  | "timeout"
  /** The Worker or child process running the chunk died, or (redis mode) its entry was lost. */
  | "crash"
  /** A child process broke the stdio protocol. */
  | "protocol"
  /** The emitter was aborted before the chunk finished. */
  | "aborted"
  /** The callback module, Worker or child could not be started. */
  | "startup"
  /**
   * The chunk is too large to be sent to a child process (process mode's
   * frame limit is 1 GiB); it never reached the callback.
   */
  | "oversize";

/** Options of {@linkcode ChunkError}. */
export interface ChunkErrorOptions {
  /**
   * The underlying error, if any. From a thread, a child process or a fleet
   * worker it is a copy: an `Error` with the original's name, message and
   * stack; its class, its own `cause` and its other properties stay behind.
   */
  cause?: unknown;
  /** A child process's exit code, in process mode. */
  exitCode?: number | null;
  /** The signal that ended a child process, in process mode. */
  signal?: string | null;
  /** The last lines a child process wrote to stderr, in process mode. */
  stderr?: string;
  /** The fleet worker that ran the chunk, in redis mode. */
  worker?: string;
}

/**
 * A chunk failed. Carries the chunk's {@linkcode ChunkInfo}, the mode it ran
 * in, and what went wrong.
 *
 * @example Catching a failed chunk
 * ```ts
 * import { BufferEmit, ChunkError } from "@ocycle/core";
 * import { assert, assertEquals } from "@std/assert";
 *
 * const errors: ChunkError[] = [];
 * const emitter = new BufferEmit(() => {
 *   throw new Error("boom");
 * }, 4, { onError: (error) => errors.push(error) });
 * emitter.write(new Uint8Array(4));
 * await emitter.close();
 * assert(errors[0] instanceof ChunkError);
 * assertEquals(errors[0]?.info.index, 0);
 * assertEquals(errors[0]?.kind, "callback");
 * ```
 */
export class ChunkError extends Error {
  /** The error's name. */
  override readonly name = "ChunkError";
  /** The chunk that failed. */
  readonly info: ChunkInfo;
  /** The mode the chunk ran in. */
  readonly mode: Mode;
  /** What went wrong. */
  readonly kind: ChunkErrorKind;
  /** A child process's exit code, in process mode; otherwise `undefined`. */
  readonly exitCode: number | null | undefined;
  /** The signal that ended a child process, in process mode; otherwise `undefined`. */
  readonly signal: string | null | undefined;
  /** The tail of a child process's stderr, in process mode; otherwise `""`. */
  readonly stderr: string;
  /** The fleet worker that ran the chunk, in redis mode; otherwise `undefined`. */
  readonly worker: string | undefined;
  /**
   * What happened, as the message says it after naming the chunk and its
   * mode: for a program that names the chunk its own way.
   */
  readonly detail: string;

  /**
   * Constructs a new instance. The package makes them; users catch them.
   *
   * @ignore
   * @param kind What went wrong.
   * @param info The chunk that failed.
   * @param mode The mode the chunk ran in.
   * @param detail A sentence saying what happened.
   * @param options The cause and, in process mode, the child's exit status.
   */
  constructor(
    kind: ChunkErrorKind,
    info: ChunkInfo,
    mode: Mode,
    detail: string,
    options: ChunkErrorOptions = {},
  ) {
    super(
      `Chunk ${info.index} (offset ${info.offset}, t0 ${info.t0}) failed in ${mode} mode: ${detail}${
        options.worker === undefined ? "" : ` (worker ${options.worker})`
      }`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.info = info;
    this.mode = mode;
    this.kind = kind;
    this.exitCode = options.exitCode;
    this.signal = options.signal;
    this.stderr = options.stderr ?? "";
    this.worker = options.worker;
    this.detail = detail;
  }
}
