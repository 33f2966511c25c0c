// Copyright the @ocycle/core authors. MIT license.
// How an option is checked, written once for every public entry that takes
// options (the emitters, runWorker): a rule is a test, what the value must be,
// and the error class; a table of rules is checked in one loop, and each
// refusal names the option and the value it received. Last, the check of
// what a sampler gives the write path: its pause.

import { describeValue } from "./_kinds.ts";

/** One option's rule: a test, what the value must be, and the error class. */
export type Rule = readonly [
  test: (value: unknown) => boolean,
  must: string,
  error: typeof TypeError | typeof RangeError,
];

/** Whether `value` is a safe integer above 0. */
export function isPositiveInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

/** A positive integer: sizes, pools, counts. */
export const POSITIVE: Rule = [
  isPositiveInteger,
  "a positive integer",
  RangeError,
];
/** A duration that may be Infinity (no limit). */
export const MILLISECONDS: Rule = [
  (v) => typeof v === "number" && v > 0,
  "a number of milliseconds > 0",
  RangeError,
];
/** A duration that must end. */
export const FINITE_MILLISECONDS: Rule = [
  (v) => typeof v === "number" && v > 0 && v < Infinity,
  "a finite number of milliseconds > 0",
  RangeError,
];
/** A non-empty string: names, streams, exports. */
export const TEXT: Rule = [
  (v) => typeof v === "string" && v !== "",
  "a non-empty string",
  TypeError,
];
/** A callback. */
export const FUNCTION: Rule = [
  (v) => typeof v === "function",
  "a function",
  TypeError,
];
/** An abort signal. */
export const SIGNAL: Rule = [
  (v) => v instanceof AbortSignal,
  "an AbortSignal",
  TypeError,
];

/**
 * Checks each value against its rule; `undefined` passes unless its name is
 * in `required`.
 *
 * @throws {TypeError} If a value has the wrong type, per its rule.
 * @throws {RangeError} If a value is out of range, per its rule.
 */
export function checkRules(
  owner: string,
  rules: Readonly<Record<string, Rule>>,
  values: Readonly<Record<string, unknown>>,
  required: readonly string[] = [],
): void {
  for (const [name, value] of Object.entries(values)) {
    const [test, must, ErrorClass] = rules[name]!;
    if ((value !== undefined || required.includes(name)) && !test(value)) {
      throw new ErrorClass(
        `Cannot create ${owner} as '${name}' must be ${must}: received ${
          describeValue(value)
        }`,
      );
    }
  }
}

/**
 * A pause the sampler returned, checked.
 *
 * @throws {RangeError} If it is not a finite number of milliseconds >= 0.
 */
export function checkPause(pause: unknown, owner: string): number {
  if (!(typeof pause === "number" && pause >= 0 && pause < Infinity)) {
    throw new RangeError(
      `Cannot pause ${owner} as 'sampler' must return a finite number of milliseconds >= 0: received ${
        describeValue(pause)
      }`,
    );
  }
  return pause;
}
