// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode fanout}: one stream of frames written to several emitters.
 *
 * @module
 */

/**
 * The key of an emitter's write for a `t0` that `fanout` read from the wall
 * clock, not one the caller gave: the emitter stamps chunks with it, but its
 * sampler keeps to the monotonic clock, as for a write without `t0`.
 */
export const WALL_T0: unique symbol = Symbol("ocycle.wallT0");

/** Anything `fanout` can write to: every emitter is one. */
export interface FrameWriter<I> {
  /** Writes one frame; returns `false` when the caller should wait for `ready`. */
  write(data: I, t0?: number): boolean;
  /** Resolves when the writer can take more. */
  readonly ready: Promise<void>;
  /** Flushes, drains and closes. */
  close(): Promise<void>;
  /** Stops now. */
  abort(reason?: unknown): Promise<void>;
}

/** Writes each frame to several emitters; returned by {@linkcode fanout}. */
export interface Fanout<I> extends FrameWriter<I> {
  /** The emitters written to. */
  readonly targets: readonly FrameWriter<I>[];
  /**
   * Resolves when every target can take more. Once every target's `ready`
   * has settled, rejects with the error of each that rejected: the error
   * itself for one, an `AggregateError` of them all for several.
   */
  readonly ready: Promise<void>;
  /**
   * A `WritableStream` that writes each frame to every target and waits for
   * the slowest one (backpressure), closes them all on close and aborts them
   * on abort.
   */
  readonly writable: WritableStream<I>;
}

/** An emitter, which can tell a `t0` read from the wall clock from the caller's. */
interface WallWriter<I> {
  [WALL_T0](data: I, t0: number): boolean;
}

async function settleAll(
  targets: readonly FrameWriter<unknown>[],
  run: (t: FrameWriter<unknown>) => Promise<void>,
  what: string,
): Promise<void> {
  const results = await Promise.allSettled(targets.map(run));
  const errors = results.flatMap((r) =>
    r.status === "rejected" ? [r.reason] : []
  );
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) {
    throw new AggregateError(
      errors,
      `${errors.length} fanout targets failed to ${what}`,
    );
  }
}

/**
 * Writes each frame to several emitters, each with its own chunk size, mode
 * and callback: the audio use case of one microphone feeding a level meter,
 * a recorder and a model. Every target sees the same `t0` for a frame (the
 * clock is read once per write when no `t0` is given), and a write to one
 * target that throws does not keep the frame from the others.
 *
 * @typeParam I The frame type.
 * @param targets The emitters.
 * @returns A writer that writes to all of them.
 * @throws {TypeError} If a target is not a writer.
 *
 * @example A level meter every 4 bytes and a recorder every 8
 * ```ts
 * import { BufferEmit, fanout } from "@ocycle/core";
 * import { assertEquals } from "@std/assert";
 *
 * const meter: number[] = [], recorder: number[] = [];
 * const out = fanout(
 *   new BufferEmit((c) => meter.push(c.length), 4),
 *   new BufferEmit((c) => recorder.push(c.length), 8),
 * );
 * await ReadableStream.from([new Uint8Array(2), new Uint8Array(6)])
 *   .pipeTo(out.writable);
 * assertEquals(meter, [8]);
 * assertEquals(recorder, [8]);
 * ```
 */
export function fanout<I>(...targets: FrameWriter<I>[]): Fanout<I> {
  targets.forEach((t, i) => {
    if (
      t === null || typeof t !== "object" || typeof t.write !== "function" ||
      typeof t.close !== "function"
    ) {
      throw new TypeError(
        `Cannot create fanout as target ${i} must be an emitter: received ${
          t === null ? "null" : typeof t
        }`,
      );
    }
  });
  let writable: WritableStream<I> | undefined;
  const out: Fanout<I> = {
    targets,
    write(data: I, t0?: number): boolean {
      const stamp = t0 ?? Date.now();
      let ok = true;
      let failure: unknown[] | undefined;
      for (const target of targets) {
        try {
          const wall = t0 === undefined
            ? (target as Partial<WallWriter<I>>)[WALL_T0]
            : undefined;
          const written = wall === undefined
            ? target.write(data, stamp)
            : wall.call(target, data, stamp);
          if (!written) ok = false;
        } catch (error) {
          (failure ??= []).push(error);
        }
      }
      if (failure !== undefined) {
        throw failure.length === 1 ? failure[0] : new AggregateError(
          failure,
          `${failure.length} fanout targets failed to write`,
        );
      }
      return ok;
    },
    get ready(): Promise<void> {
      // Every target's ready is settled, not the first to reject: a target's
      // ready takes its errors, so one left to Promise.all would be lost.
      return settleAll(
        targets as FrameWriter<unknown>[],
        (t) => t.ready,
        "be ready",
      );
    },
    close(): Promise<void> {
      return settleAll(
        targets as FrameWriter<unknown>[],
        (t) => t.close(),
        "close",
      );
    },
    abort(reason?: unknown): Promise<void> {
      return settleAll(
        targets as FrameWriter<unknown>[],
        (t) => t.abort(reason),
        "abort",
      );
    },
    get writable(): WritableStream<I> {
      return writable ??= new WritableStream<I>({
        write: (frame) => out.write(frame) ? undefined : out.ready,
        close: () => out.close(),
        abort: (reason) => out.abort(reason),
      }, { highWaterMark: 1 });
    },
  };
  return out;
}
