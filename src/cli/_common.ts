// Copyright the @ocycle/core authors. MIT license.
// What the parts of the `ocycle` command line share: exit codes, the fatal
// error that carries one, the chunk counts, how an error, a failed chunk and
// a command's stderr are shown, and how --module is found.

import type { ChunkInfo } from "../chunk_info.ts";
import { toModuleUrl } from "../run/_module_url.ts";

const encoder = new TextEncoder();

/** Exit codes, as shells and GNU parallel use them. */
export const EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2;
export const EXIT_NOT_EXECUTABLE = 126, EXIT_NOT_FOUND = 127;

/** Stopped by a signal, input unread: 128 + its number, as a shell reports a filter it ended. */
export const EXIT_SIGNAL: Readonly<Record<string, number>> = {
  SIGINT: 130,
  SIGTERM: 143,
  SIGBREAK: 149,
};

/** A fatal error that stops the run with its own exit code. */
export class Fatal extends Error {
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

/** Chunks read in, cut, done and failed, for the progress line and summary. */
export interface Counts {
  read: number;
  chunks: number;
  done: number;
  failed: number;
}

/** An error's message, or whatever was thrown as a string. */
export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The last 10 lines of a failed chunk's stderr, each marked `  | `, to follow
 * the line that reports the failure; "" when there was none.
 */
export function stderrTail(stderr: string): string {
  return stderr === ""
    ? ""
    : "\n" + lastLines(stderr, 10).replace(/^/gm, "  | ");
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

/**
 * A chunk as every failed-chunk line names it: its index, its byte range and
 * its t0 (the time its first byte was read) as a local time of day,
 * `chunk 3 (bytes 3072..4096, t0 12:30:05.250)`.
 */
export function describeChunk(info: ChunkInfo): string {
  return `chunk ${info.index} (bytes ${info.offset}..${
    info.offset + info.length
  }, t0 ${timeOfDay(info.t0)})`;
}

/** Milliseconds since the epoch as a local time of day: `12:30:05.250`. */
export function timeOfDay(ms: number): string {
  const date = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${
    two(date.getSeconds())
  }.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

/** Writes a line to stderr. */
export function say(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text + "\n"));
}

/** Writes a line of ocycle's own (or of `command`'s) to stderr. */
export function report(text: string, command = "ocycle"): void {
  say(`${command}: ${text}`);
}

/** The URL of `--module`, or `undefined` after saying why there is none. */
export async function findModule(
  path: string,
  command = "ocycle",
): Promise<URL | undefined> {
  const url = toModuleUrl(path);
  if (url.protocol !== "file:") return url;
  try {
    const info = await Deno.stat(url);
    if (!info.isFile) throw new Error("it is a directory");
    return url;
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "no such file"
      : message(error);
    report(
      `--module ${path}: ${why} (looked for ${
        decodeURIComponent(url.pathname)
      })`,
      command,
    );
    return undefined;
  }
}
