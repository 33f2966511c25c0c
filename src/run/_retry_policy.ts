// Copyright the @ocycle/core authors. MIT license.
// Every retry rule, in one place (docs/fleet.md, "Budgets"): which failures
// of a chunk are worth another attempt, the one backoff (doubling from a
// base, capped, with equal jitter) that the local pool's retries, the Redis
// producer, the fleet worker and the Redis client's reconnection all use, and
// the defaults of the fleet's budgets. Nothing here keeps state.

import type { ChunkErrorKind } from "../chunk_error.ts";
import { delay } from "@std/async/delay";

/** The longest delay before a chunk's retry, in milliseconds, however many attempts. */
export const MAX_RETRY_DELAY = 10_000;

/**
 * What is worth a second attempt: a crash or a timeout may be the machine's
 * or the moment's doing. A throw of the callback is deterministic; start-up,
 * an abort and a chunk over the frame limit would fail the same way again; a
 * protocol break means the module writes where it must not (process mode's
 * stdout), which it would do again.
 */
export function isRetryable(kind: ChunkErrorKind): boolean {
  return kind === "crash" || kind === "timeout";
}

/**
 * Milliseconds to wait after `attempt` failed attempts: `base` doubled per
 * attempt, capped at `cap`, of which a random half is taken off ("equal
 * jitter"), so that what failed together does not all come back at once.
 *
 * @param base The delay after the first attempt, before jitter.
 * @param attempt The attempts made so far, from 1.
 * @param cap The longest delay, before jitter.
 * @param random A number in [0, 1).
 */
export function backoff(
  base: number,
  attempt: number,
  cap: number,
  random: number = Math.random(),
): number {
  const full = Math.min(cap, base * 2 ** Math.min(attempt - 1, 30));
  return full / 2 + random * full / 2;
}

/**
 * Milliseconds before a chunk's attempt `attempt + 1` under `retries`:
 * {@linkcode backoff} from `retryDelay`, capped at {@linkcode MAX_RETRY_DELAY}.
 */
export function retryDelay(
  base: number,
  attempt: number,
  random: number = Math.random(),
): number {
  return backoff(base, attempt, MAX_RETRY_DELAY, random);
}

/** The backoff between tries of a Redis operation that failed (a worker's, the producer's), in ms. */
export const REDIS_RETRY = { base: 100, cap: 2000 } as const;

/** Milliseconds before Redis operation try `failures + 1`. */
export function redisDelay(failures: number): number {
  return backoff(REDIS_RETRY.base, failures, REDIS_RETRY.cap);
}

/**
 * How many workers may start a chunk and vanish (die, freeze) without ending
 * it before the next worker dead-letters it as poison, rather than run it.
 */
export const MAX_STALLS = 3;

/**
 * How many times a chunk's entry may be lost (Redis restarted without its
 * data, the stream trimmed) and be added again without spending `retries`:
 * a loss is the broker's fault, not the chunk's; a chunk lost more often
 * than this fails, so that something deleting entries cannot loop forever.
 */
export const MAX_LOSSES = 5;

/** Milliseconds a Redis command may go unanswered (past its BLOCK) before its connection is torn down. */
export const COMMAND_TIMEOUT = 5000;

/** Milliseconds the producer's result reader may fail in a row before every chunk in flight spends an attempt. */
export const UNREACHABLE_AFTER = 30_000;

/** Waits `ms`; resolves early (never rejects) when `signal` aborts. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, signal === undefined ? {} : { signal });
  } catch {
    // aborted: the caller looks at why
  }
}
