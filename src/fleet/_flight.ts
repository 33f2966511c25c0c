// Copyright the @ocycle/core authors. MIT license.
// A chunk in flight on the fleet, as Redis mode's producer (fleet/_producer.ts)
// keeps it, and the errors that settle one: what a failed result says, and
// how every failure of the producer's own is worded.

import { ChunkError, type ChunkErrorKind } from "../chunk_error.ts";
import type { ResultEntry } from "../wire/_entries.ts";
import { fromWireError } from "../wire/_messages.ts";
import type { Task } from "../run/_runner.ts";

/** A chunk from `run()` until it settles. */
export interface Flight {
  readonly key: string;
  readonly task: Task<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  /** The task entry's id, once added. */
  entry: string | undefined;
  /** Attempts under `retries` (from 1 once added). */
  attempts: number;
  /** Adds made, each with a key of its own (`key.adds`). */
  adds: number;
  /** Times its entry was lost (the broker's doing): re-added free, up to MAX_LOSSES. */
  losses: number;
  /**
   * Once a check found its entry gone: the result stream's last id then, and
   * the read under way then. Once the reader has read through that id, or
   * a whole read begun later came back short, its result would have come:
   * it is lost.
   */
  gone: { fence: string; round: number } | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** A chunk just given to `run()`, not added yet. */
export function newFlight(
  key: string,
  task: Task<unknown>,
  resolve: (value: unknown) => void,
  reject: (error: unknown) => void,
): Flight {
  return {
    key,
    task,
    resolve,
    reject,
    entry: undefined,
    attempts: 0,
    adds: 0,
    losses: 0,
    gone: undefined,
    timer: undefined,
  };
}

/** The error a chunk of Redis mode fails with. */
export function flightError(
  kind: ChunkErrorKind,
  task: Task<unknown>,
  detail: string,
  cause?: unknown,
  worker?: string,
): ChunkError {
  return new ChunkError(kind, task.info, "redis", detail, {
    ...(cause === undefined ? {} : { cause }),
    ...(worker === undefined ? {} : { worker }),
  });
}

/**
 * The error of a result that says its chunk failed on a worker: the
 * callback threw, or the fleet gave up on it (crashes, timeouts).
 */
export function resultError(
  decoded: Extract<ResultEntry, { error: unknown }>,
  task: Task<unknown>,
): ChunkError {
  const cause = fromWireError(decoded.error);
  const kind = decoded.kind ?? "callback";
  const attempts = (decoded.attempts ?? 1) > 1
    ? ` (after ${decoded.attempts} attempts)`
    : "";
  return flightError(
    kind,
    task,
    `${
      kind === "callback" ? "the callback threw " : ""
    }${cause.name}: ${cause.message}${attempts}`,
    cause,
    decoded.worker,
  );
}
