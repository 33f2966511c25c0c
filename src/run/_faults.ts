// Copyright the @ocycle/core authors. MIT license.
// How the pool words what went wrong with a thread or child, once it is gone:
// the errors of the chunks it had started, and the start-up error that ends
// the pool's retries; and what each of its clocks running out means. Kept
// apart from the pool's rules, which decide when.

import type { ChunkErrorKind, ChunkErrorOptions } from "../chunk_error.ts";
import type { Exit } from "../pool/_transport.ts";

/** Why a thread or child failed to start. */
export type StartFailure = "load" | "died" | "hung";

/** What broke a thread or child, as the pool saw it. */
export interface Fault {
  readonly kind: "crash" | "protocol" | "timeout" | "startup";
  readonly detail: string;
  readonly cause: unknown;
}

/** The names of a thread or child in messages, and the timeout in force. */
export interface Names {
  readonly noun: string;
  readonly nouns: string;
  readonly timeout: number;
}

/**
 * The error of the `i`th chunk a thread or child had started (the oldest
 * first) when `fault` broke it; `culprit` is the index of the oldest.
 */
export function startedError(
  fault: Fault,
  exit: Exit,
  names: Names,
  i: number,
  culprit: number,
): { kind: ChunkErrorKind; detail: string } {
  const { noun, timeout } = names;
  if (fault.kind === "timeout" && i > 0) {
    return {
      kind: "crash",
      detail:
        `its ${noun} was ended because chunk ${culprit} on the same ${noun} timed out after ${timeout} ms; the chunk had already been sent to that ${noun} and went with it${exit.text}`,
    };
  }
  return {
    kind: fault.kind,
    detail: fault.kind === "crash"
      ? `${fault.detail}; the chunk was in that ${noun}, which will be replaced${exit.text}`
      : `${fault.detail}${exit.text}`,
  };
}

/**
 * The error every chunk gets once `n` threads or children in a row failed to
 * start.
 */
export function startupDetail(
  failure: StartFailure,
  n: number,
  names: Names,
  last: string,
): string {
  const { nouns } = names;
  return failure === "load"
    ? `the callback module could not be started in ${n} ${nouns} in a row: ${last}`
    : failure === "died"
    ? `${n} ${nouns} in a row exited before they were ready; the last: ${last}`
    : `${n} ${nouns} in a row did not become ready; the last: ${last}`;
}

/** A thread or child that did not say it was ready within `ms`. */
export function hungDetail(names: Names, ms: number): string {
  return `the ${names.noun} did not load the callback module and say it was ready within ${ms} ms`;
}

/** A chunk that ran past its timeout: its thread or child is ended. */
export function timeoutDetail(names: Names): string {
  return `the callback did not settle within ${names.timeout} ms of its start; its ${names.noun} was ended and will be replaced`;
}

/**
 * The error of a chunk that waited in the backlog until its clock ran out:
 * its timeout, or the start-up deadline if that is shorter.
 */
export function waitedError(
  names: Names,
  startDeadline: number,
): { kind: ChunkErrorKind; detail: string } {
  const timedOut = names.timeout <= startDeadline;
  const ms = timedOut ? names.timeout : startDeadline;
  return {
    kind: timedOut ? "timeout" : "startup",
    detail: `no ${names.noun} was ready to take the chunk within ${ms} ms${
      timedOut ? "" : ", the start-up deadline"
    } (the callback module's top-level code may still be running)`,
  };
}

/** What a ChunkError carries of the end of a thread or child. */
export function exitOptions(
  exit: Exit,
  stderr: string,
  cause: unknown,
): ChunkErrorOptions {
  const options: ChunkErrorOptions = { stderr };
  if (exit.exitCode !== undefined) options.exitCode = exit.exitCode;
  if (exit.signal !== undefined) options.signal = exit.signal;
  if (cause !== undefined) options.cause = cause;
  return options;
}

/** Terminal escape sequences, which Deno puts in its errors when it writes to a terminal. */
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/**
 * Says that the callback module failed to load, naming it, with the first
 * line of Deno's error and where it points (its "at" line): not the hints
 * meant for a terminal, nor their escape codes.
 */
export function loadFailure(url: string, message: string): string {
  const lines = message.replace(ANSI, "").split("\n").map((l) => l.trim());
  const first = lines.find((line) => line !== "") ?? "no reason given";
  const at = lines.find((line) => line.startsWith("at "));
  return `the callback module ${url} could not be loaded: ${first}${
    at === undefined ? "" : ` (${at})`
  }`;
}
