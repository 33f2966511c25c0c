// Copyright the @ocycle/core authors. MIT license.
// Waiting at most so long, written once over @std/async's `deadline`: serial
// mode's `timeout`, and the bounded waits of Redis mode's producer and workers
// on a server that may be gone.

import { deadline } from "@std/async/deadline";

/**
 * `deadline` of @std/async: `promise`, or a rejection with a `TimeoutError`
 * DOMException after `ms` (never with `Infinity`). Assigning it checks this
 * against @std/async's own types wherever those are present (the offline copy
 * has none).
 */
export const race: <T>(promise: Promise<T>, ms: number) => Promise<T> =
  deadline;

/**
 * What `promise` resolves to, or `undefined` if it has not settled within
 * `ms`; its rejection passes through (one after the time is up is ignored).
 */
export async function within<T>(
  promise: Promise<T>,
  ms: number,
): Promise<T | undefined> {
  try {
    return await race(promise, Math.max(0, ms));
  } catch (error) {
    if (!(error instanceof DOMException && error.name === "TimeoutError")) {
      throw error;
    }
    promise.catch(() => {});
    return undefined;
  }
}

/**
 * `op()` if it settles before `at` (a `performance.now()` time; `Infinity`
 * for no limit), else `undefined`; `op` is not started once `at` has passed.
 */
export function before<T>(
  op: () => Promise<T>,
  at: number,
): Promise<T | undefined> {
  // No limit: the operation as it is (a race with no timer still costs
  // signals and listeners, on every command of a fleet worker).
  if (at === Infinity) return op();
  const left = at - performance.now();
  return left > 0 ? within(op(), left) : Promise.resolve(undefined);
}
