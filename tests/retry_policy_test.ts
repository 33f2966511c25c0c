// Copyright the @ocycle/core authors. MIT license.
// The retry rules (run/_retry_policy.ts) and the bounded waits
// (run/_deadline.ts) as pure functions: what each returns at its bounds,
// never how long anything took.

import { assertEquals, assertRejects, assertStrictEquals } from "@std/assert";
import { deadline } from "@std/async/deadline";
import {
  backoff,
  MAX_RETRY_DELAY,
  pause,
  REDIS_RETRY,
  redisDelay,
  retryDelay,
} from "../src/run/_retry_policy.ts";
import { before, within } from "../src/run/_deadline.ts";

Deno.test("backoff() stays a number of milliseconds however many attempts, also from a base of 0", () => {
  // 2 ** attempts overflows to Infinity past 1024, and 0 * Infinity is NaN:
  // the exponent is capped before it gets there.
  for (const attempt of [1, 31, 1025, 5000, Number.MAX_SAFE_INTEGER]) {
    assertEquals(backoff(0, attempt, 1000, 0.5), 0, `attempt ${attempt}`);
    assertEquals(retryDelay(0, attempt, 0.99), 0, `attempt ${attempt}`);
  }
  assertEquals(backoff(50, 5000, 2000, 0), 1000);
  assertEquals(retryDelay(100, 5000, 0.5), MAX_RETRY_DELAY * 3 / 4);
});

Deno.test("redisDelay() waits half its base to its base after the first failure, twice that after the second, less than its cap after many", () => {
  const { base, cap } = REDIS_RETRY;
  // Its jitter is Math.random(): only bounds, over many draws.
  for (let i = 0; i < 200; i++) {
    const first = redisDelay(1);
    assertEquals(first >= base / 2 && first < base, true, `${first}`);
    const second = redisDelay(2);
    assertEquals(second >= base && second < 2 * base, true, `${second}`);
    const late = redisDelay(40);
    assertEquals(late >= cap / 2 && late < cap, true, `${late}`);
  }
});

Deno.test("pause() resolves, never rejects, once its signal aborts", async (t) => {
  await t.step("aborted before", async () => {
    const signal = AbortSignal.abort(new Error("stop"));
    // A pause that ignored the signal would wait its whole minute.
    assertStrictEquals(await deadline(pause(60_000, signal), 5_000), undefined);
  });
  await t.step("aborted during", async () => {
    const controller = new AbortController();
    const paused = pause(60_000, controller.signal);
    controller.abort(new Error("stop"));
    assertStrictEquals(await deadline(paused, 5_000), undefined);
  });
});

Deno.test("within() gives the value, undefined once the time is up, and passes a rejection on", async (t) => {
  await t.step("settled in time", async () => {
    assertEquals(await within(Promise.resolve(7), 5_000), 7);
  });
  await t.step("not settled in time", async () => {
    assertEquals(await within(new Promise<number>(() => {}), 1), undefined);
  });
  await t.step("a time already past is no time", async () => {
    assertEquals(await within(new Promise<number>(() => {}), -5), undefined);
  });
  await t.step("a rejection after the time is up is ignored", async () => {
    let reject!: (error: Error) => void;
    const late = new Promise<number>((_, no) => reject = no);
    assertEquals(await within(late, 1), undefined);
    // Left unhandled, it would fail the test (and a program).
    reject(new Error("too late"));
    await new Promise((resolve) => setTimeout(resolve, 0));
  });
  await t.step("a rejection is not a timeout", async () => {
    await assertRejects(
      () => within(Promise.reject(new RangeError("refused")), 5_000),
      RangeError,
      "refused",
    );
  });
});

Deno.test("before() does not start an operation whose deadline has passed", async () => {
  let started = 0;
  const op = () => {
    started++;
    return Promise.resolve("done");
  };
  assertEquals(await before(op, performance.now() - 1), undefined);
  assertEquals(started, 0);
  assertEquals(await before(op, performance.now() + 60_000), "done");
  assertEquals(await before(op, Infinity), "done");
  assertEquals(started, 2);
});
