// Copyright the @ocycle/core authors. MIT license.
// The child entry, what a process-mode child runs (`deno run ...
// _child_entry.ts`). It reads an InitMessage frame from stdin, imports the callback module once, says ready
// (or why it could not start), then runs the task frames it reads one at a
// time, in order, and writes one result or error frame per task to stdout.
// Tasks run one at a time so that the parent always knows which chunk was
// running when a child dies: the oldest it sent. Only relative files and node:
// built-ins are imported here, so a child needs no network and no config.

import { deserialize, serialize } from "node:v8";
import type { Callback } from "../chunk_info.ts";
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  type FrameTypeValue,
  PARENT_FRAME_TYPES,
  STDERR_SYNC,
} from "../wire/_framing.ts";
import { type InitMessage, toWireError } from "../wire/_messages.ts";
import {
  decodeTaskBody,
  decodeTaskMeta,
  encodeValue,
} from "../wire/_values.ts";
import { layoutType } from "../wire/_layout.ts";
import { loadCallback } from "../run/_load_callback.ts";

// First of all: nothing user code prints through `console` may reach stdout,
// which carries the protocol. Every console method that prints to stdout is
// sent to stderr instead.
redirectConsole();

type Fn = Callback<unknown, unknown>;

/** Test knob: write frames in pieces of this many bytes, one macrotask apart. */
const writePiece = pieceArg(Deno.args);

const stdout = Deno.stdout;
let writing: Promise<void> = Promise.resolve();
/** Frames not yet written: results are written in batches, see `flush`. */
let outbox: Uint8Array[] = [];
let outboxBytes = 0;

function send(type: FrameTypeValue, id: number, body?: Uint8Array): void {
  const frame = encodeFrame(type, id, body);
  outbox.push(frame);
  outboxBytes += frame.length;
  if (outboxBytes >= 1 << 16) flush();
}

/**
 * Writes the frames sent so far in one write. Called, and awaited, before
 * every callback runs, so that a result never waits behind another chunk's
 * callback (which may hang, run past its own deadline, or kill the child).
 */
function flush(): void {
  if (outbox.length === 0) return;
  let bytes: Uint8Array;
  if (outbox.length === 1) bytes = outbox[0]!;
  else {
    bytes = new Uint8Array(outboxBytes);
    let at = 0;
    for (const frame of outbox) {
      bytes.set(frame, at);
      at += frame.length;
    }
  }
  outbox = [];
  outboxBytes = 0;
  writing = writing.then(() => writeAll(bytes));
}

async function writeAll(bytes: Uint8Array): Promise<void> {
  let pos = 0;
  while (pos < bytes.length) {
    const end = writePiece === undefined
      ? bytes.length
      : Math.min(bytes.length, pos + writePiece);
    pos += await stdout.write(bytes.subarray(pos, end));
    if (writePiece !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}

const stderrSync = new TextEncoder().encode(STDERR_SYNC + "\n");

/** Sends an error frame, after marking in stderr how far the parent must read first. */
function sendError(id: number, body: Uint8Array): void {
  try {
    Deno.stderr.writeSync(stderrSync);
  } catch {
    // stderr is gone: the parent stops waiting for it at its end.
  }
  send(FrameType.error, id, body);
}

function encode(message: unknown): Uint8Array {
  return new Uint8Array(serialize(message));
}

function parse(bytes: Uint8Array): unknown {
  return deserialize(bytes);
}

function die(detail: string, code: number): never {
  console.error(`ocycle child: ${detail}`);
  Deno.exit(code);
}

const decoder = new FrameDecoder(PARENT_FRAME_TYPES);
const tasks: Frame[] = [];
let wake: (() => void) | undefined;
let ended = false;
let fn: Fn | undefined;
let build: ((raw: Uint8Array) => unknown) | undefined;

async function readLoop(): Promise<void> {
  const buffer = new Uint8Array(1 << 18);
  while (true) {
    // A big body is read straight into place; headers and small bodies
    // through the buffer.
    const missing = decoder.missingBody();
    const direct = missing !== undefined && missing.length >= buffer.length;
    let n: number | null;
    try {
      n = await Deno.stdin.read(direct ? missing : buffer);
    } catch {
      // stdin was closed under us (by user code): treat it as the end.
      n = null;
    }
    if (n === null) break;
    let frames: Frame[];
    try {
      frames = direct ? decoder.filled(n) : decoder.push(buffer.subarray(0, n));
    } catch (error) {
      die(`the parent broke the protocol: ${String(error)}`, 70);
    }
    for (const frame of frames) tasks.push(frame);
    wake?.();
  }
  ended = true;
  wake?.();
}

async function next(): Promise<Frame | undefined> {
  if (tasks.length === 0) flush();
  while (tasks.length === 0) {
    if (ended) return undefined;
    await new Promise<void>((resolve) => wake = resolve);
    wake = undefined;
  }
  return tasks.shift();
}

async function start(frame: Frame): Promise<boolean> {
  if (frame.type !== FrameType.init) {
    die(`the first frame must be init: received type ${frame.type}`, 70);
  }
  try {
    const init = deserialize(frame.body) as InitMessage;
    hideEnv(init.hideEnv ?? [], init.keepEnv);
    const type = layoutType(init.layout);
    if (type === Uint8Array) build = (raw) => raw;
    else if (type !== undefined) {
      build = (raw) =>
        new type(
          raw.buffer,
          raw.byteOffset,
          raw.byteLength / type.BYTES_PER_ELEMENT,
        );
    }
    fn = await loadCallback(init.url, init.exportName);
  } catch (error) {
    send(FrameType.startupError, 0, encode(toWireError(error)));
    return false;
  }
  send(FrameType.ready, 0);
  return true;
}

/**
 * Deletes `hide`, and with `keep` every variable but those that it may list:
 * what the callback cannot read (no --allow-env for it) it cannot see anyway.
 */
function hideEnv(hide: string[], keep: string[] | undefined): void {
  let names = hide;
  if (keep !== undefined) {
    try {
      const kept = new Set(keep);
      names = Object.keys(Deno.env.toObject()).filter((n) => !kept.has(n));
    } catch {
      // Not every variable may be read: only `hide`, those it may.
    }
  }
  for (const name of names) {
    try {
      Deno.env.delete(name);
    } catch {
      // Without --allow-env for it, the callback cannot read it either.
    }
  }
}

async function runTask(frame: Frame): Promise<void> {
  if (frame.type !== FrameType.task) {
    die(`expected a task frame: received type ${frame.type}`, 70);
  }
  // Every earlier result is in the pipe before this callback runs: if it
  // kills the child, the parent reads them all and blames only this chunk.
  flush();
  await writing;
  let value: unknown;
  try {
    const { meta, raw } = decodeTaskBody(frame.body);
    const { info, chunk } = decodeTaskMeta(meta, parse);
    const input = build === undefined ? chunk : build(raw);
    value = await fn!(input, info.t0, info);
  } catch (error) {
    sendError(frame.id, encode(toWireError(error)));
    return;
  }
  let body: Uint8Array;
  try {
    body = encodeValue(value, encode);
  } catch (error) {
    const wire = toWireError(error);
    wire.message = `the callback's result cannot be cloned: ${wire.message}`;
    sendError(frame.id, encode(wire));
    return;
  }
  send(FrameType.result, frame.id, body);
}

async function main(): Promise<void> {
  const reading = readLoop();
  const first = await next();
  if (first === undefined) Deno.exit(0);
  const ok = await start(first);
  if (ok) {
    for (let frame = await next(); frame; frame = await next()) {
      await runTask(frame);
    }
  }
  flush();
  await writing;
  await reading.catch(() => {});
  // Timers or handles left by user code must not keep a finished child alive.
  Deno.exit(0);
}

function pieceArg(args: string[]): number | undefined {
  const arg = args.find((a) => a.startsWith("--write-piece="));
  if (arg === undefined) return undefined;
  const n = Number(arg.slice("--write-piece=".length));
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function redirectConsole(): void {
  const c = globalThis.console;
  const error = c.error.bind(c);
  const counts = new Map<string, number>();
  const timers = new Map<string, number>();
  const stdoutMethods = {
    log: error,
    info: error,
    debug: error,
    dirxml: error,
    dir: (item: unknown, options?: Deno.InspectOptions) =>
      error(Deno.inspect(item, options)),
    table: (data: unknown) => error(Deno.inspect(data)),
    group: error,
    groupCollapsed: error,
    count: (label = "default") => {
      const n = (counts.get(label) ?? 0) + 1;
      counts.set(label, n);
      error(`${label}: ${n}`);
    },
    countReset: (label = "default") => void counts.delete(label),
    time: (label = "default") => void timers.set(label, performance.now()),
    timeLog: (label = "default", ...data: unknown[]) => {
      const start = timers.get(label);
      if (start !== undefined) {
        error(`${label}: ${(performance.now() - start).toFixed(3)}ms`, ...data);
      }
    },
    timeEnd: (label = "default") => {
      const start = timers.get(label);
      timers.delete(label);
      if (start !== undefined) {
        error(`${label}: ${(performance.now() - start).toFixed(3)}ms`);
      }
    },
  };
  Object.assign(c, stdoutMethods);
}

await main();
