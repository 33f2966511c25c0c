// Copyright the @ocycle/core authors. MIT license.
// Redis mode, the producer side: a runner (run/_runner.ts) of its own, since
// there is nothing to start here: the workers are elsewhere (run_worker.ts,
// `ocycle worker`). Each chunk is XADDed to the chunk stream as a task entry
// (wire/_entries.ts) naming this producer's result stream; one loop reads the
// results back and settles each chunk once, whatever else comes (a late or
// repeated result of a settled chunk is counted and dropped). At most
// `inFlight` chunks are in the stream at once: the emitter's slots are the
// fleet's backpressure.
//
// Nothing hangs: a chunk has its `timeout` from when it was added; an entry
// that vanished without a result (Redis came back empty, someone trimmed the
// stream) is found by a check every few seconds and after every reconnection,
// then added again under `retries` or failed, as is a chunk that could not be
// added at all. `retries` for crashes and timeouts of the callback itself is
// the fleet's: it travels in the entry and the workers apply it.

import { ChunkError, type ChunkErrorKind } from "../chunk_error.ts";
import type { Mode } from "../chunk_info.ts";
import { FleetProducer, type FleetResult } from "../redis/_fleet_producer.ts";
import { hostName } from "../redis/_host.ts";
import { type Codec, loadCodec } from "../wire/_codec.ts";
import { decodeResultEntry, encodeTaskEntry } from "../wire/_entries.ts";
import type { ChunkLayout } from "../wire/_layout.ts";
import { fromWireError } from "../wire/_messages.ts";
import { within } from "./_deadline.ts";
import { retryDelay } from "./_retry.ts";
import {
  describe,
  message,
  type Runner,
  type RunnerCounts,
  type Task,
  warn,
} from "./_runner.ts";

/** The checked `redis` option, with defaults; `undefined` outside redis mode. */
export interface RedisSettingsOption {
  readonly url: string;
  readonly stream: string;
  readonly group: string;
  readonly inFlight: number;
}

/** What the producer of Redis mode is made from. */
export interface RedisSettings {
  /** The emitter's class name, for messages. */
  readonly owner: string;
  /** `redis://` or `rediss://` URL of the server. */
  readonly url: string;
  /** The chunk stream's key. */
  readonly stream: string;
  /** Chunks in flight across the fleet. */
  readonly inFlight: number;
  /** How chunks are rebuilt by the workers. */
  readonly layout: ChunkLayout;
  /** Milliseconds a chunk's result may take from when it was added; Infinity for no limit. */
  readonly timeout: number;
  /** Attempts after the first for a chunk that crashed, timed out or was lost. */
  readonly retries: number;
  /** Milliseconds before the first retry, doubled for each next one. */
  readonly retryDelay: number;
  /** The consumer group the workers read in, to tell when none does. */
  readonly group: string;
  /** Says what no chunk can carry; by default on stderr. */
  readonly log?: (line: string) => void;
  /** Milliseconds without a result, chunks waiting, before the group is looked at. @default {10000} */
  readonly quietAfter?: number;
  /** Milliseconds Redis may stay unreachable before chunks in flight are added again under `retries` or failed. @default {30000} */
  readonly unreachableAfter?: number;
}

/** How often chunks in flight are checked for entries that vanished, in ms. */
export const LOST_CHECK_EVERY = 2000;
/** Milliseconds without a result, chunks waiting, before the producer asks whether any worker reads. */
export const QUIET_AFTER = 10_000;
/** Milliseconds Redis may stay unreachable before the chunks in flight are given up on (or added again under `retries`). */
export const UNREACHABLE_AFTER = 30_000;
/** A consumer idle longer than this (ms) is not counted as a live worker. */
const LIVE_WITHIN = 30_000;
/** How long one read of the result stream blocks, in ms. */
const READ_BLOCK = 1000;

const MODE: Mode = "redis";

interface Flight {
  readonly key: string;
  readonly task: Task<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  /** The task entry's id, once added. */
  entry: string | undefined;
  /** Times it was added (or tried). */
  attempts: number;
  /**
   * The reader's round when a check first found its entry gone, else
   * `undefined`: gone again after a whole read of results since, it is lost.
   */
  suspect: number | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** Runs chunks on a fleet of workers through a Redis stream. */
export class RedisRunner implements Runner<unknown, unknown> {
  readonly capacity: number;
  /** The bytes are copied into the entry: the buffer stays here. */
  readonly copies = true;
  readonly #settings: RedisSettings;
  readonly #producer: FleetProducer;
  readonly #flights = new Map<string, Flight>();
  #codec: Codec | undefined;
  #next = 0;
  #state: "open" | "closing" | "closed" = "open";
  #reading: Promise<void> | undefined;
  #checker: ReturnType<typeof setInterval> | undefined;
  #checking: Promise<void> = Promise.resolve();
  /** Whether a check waits to run behind the one running. */
  #checkQueued = false;
  #connections = 1;
  /** Reads of the result stream that succeeded. */
  #rounds = 0;
  /** When the result reader last began failing, for as long as it fails. */
  #outageSince: number | undefined;
  #retried = 0;
  /** Results of chunks already settled (late, repeated): dropped. */
  #late = 0;
  readonly #log: (line: string) => void;
  /** When a result last came, or the first chunk was added after a quiet spell. */
  #heard = performance.now();
  #warnedIdle = false;

  constructor(settings: RedisSettings) {
    this.#settings = settings;
    this.capacity = settings.inFlight;
    this.#log = settings.log ?? ((line) => warn("redis", line));
    this.#producer = new FleetProducer(
      settings.url,
      settings.stream,
      producerName(),
    );
  }

  run(task: Task<unknown>): Promise<unknown> {
    if (this.#state !== "open") {
      return Promise.reject(
        this.#error("aborted", task, "the emitter is closed"),
      );
    }
    return new Promise((resolve, reject) => {
      const key = String(++this.#next);
      const flight: Flight = {
        key,
        task,
        resolve,
        reject,
        entry: undefined,
        attempts: 0,
        suspect: undefined,
        timer: undefined,
      };
      if (this.#flights.size === 0) this.#heard = performance.now();
      this.#flights.set(key, flight);
      const { timeout } = this.#settings;
      if (timeout !== Infinity) {
        flight.timer = setTimeout(() => this.#timedOut(flight), timeout);
      }
      this.#start();
      void this.#add(flight);
    });
  }

  /** Starts the result loop and the lost-entry check with the first chunk. */
  #start(): void {
    this.#reading ??= this.#read();
    this.#checker ??= setInterval(() => this.#check(), LOST_CHECK_EVERY);
  }

  /** Adds the task entry of `flight`; on failure, tries again under `retries` or fails it. */
  async #add(flight: Flight): Promise<void> {
    flight.attempts++;
    flight.entry = undefined;
    flight.suspect = undefined;
    let entry: string;
    try {
      this.#codec ??= await loadCodec();
      // Settled meanwhile (aborted, timed out): no entry for it.
      if (this.#flights.get(flight.key) !== flight) return;
      const { task } = flight;
      const { layout, retries, retryDelay } = this.#settings;
      const fields = encodeTaskEntry(
        flight.key,
        task.info,
        layout,
        task.chunk,
        this.#codec.clone,
        { retries, retryDelay },
      );
      entry = await this.#producer.submit(fields);
    } catch (error) {
      if (this.#flights.get(flight.key) !== flight) return;
      this.#again(
        flight,
        "crash",
        `it could not be added to the stream '${this.#settings.stream}' at ${this.#producer.url}: ${
          describe(error)
        }`,
        error,
      );
      return;
    }
    if (this.#flights.get(flight.key) !== flight) {
      // Settled while it was being added (timed out, aborted): take it back.
      await this.#producer.remove([entry]).catch(() => {});
      return;
    }
    flight.entry = entry;
  }

  /** Runs `flight` again after a delay if `retries` allows, or fails it. */
  #again(
    flight: Flight,
    kind: ChunkErrorKind,
    detail: string,
    cause?: unknown,
  ): void {
    if (this.#state === "closed" || flight.attempts > this.#settings.retries) {
      const attempts = flight.attempts > 1
        ? ` (after ${flight.attempts} attempts)`
        : "";
      this.#settle(
        flight,
        this.#error(kind, flight.task, detail + attempts, cause),
        true,
      );
      return;
    }
    this.#retried++;
    const wait = retryDelay(this.#settings.retryDelay, flight.attempts);
    clearTimeout(flight.timer);
    flight.timer = setTimeout(() => {
      flight.timer = undefined;
      if (this.#flights.get(flight.key) !== flight) return;
      const { timeout } = this.#settings;
      if (timeout !== Infinity) {
        flight.timer = setTimeout(() => this.#timedOut(flight), timeout);
      }
      void this.#add(flight);
    }, wait);
  }

  #timedOut(flight: Flight): void {
    flight.timer = undefined;
    if (this.#flights.get(flight.key) !== flight) return;
    const { entry } = flight;
    // The entry goes, so that no worker starts it later; a worker that holds
    // it already may still answer, and the first answer settles the chunk.
    if (entry !== undefined) {
      void this.#producer.remove([entry]).catch(() => {});
    }
    this.#again(
      flight,
      "timeout",
      `no result came from the fleet within ${this.#settings.timeout} ms (its 'timeout') of the chunk being sent to the stream '${this.#settings.stream}' at ${this.#producer.url}`,
    );
  }

  /** Settles a chunk once: a later call for it does nothing. */
  #settle(flight: Flight, value: unknown, failed: boolean): void {
    if (this.#flights.get(flight.key) !== flight) return;
    this.#flights.delete(flight.key);
    clearTimeout(flight.timer);
    if (failed) flight.reject(value);
    else flight.resolve(value);
    if (this.#flights.size === 0) this.#idle?.();
  }

  #idle: (() => void) | undefined;

  /** The result loop: reads, decodes and settles until closed with nothing in flight. */
  async #read(): Promise<void> {
    let failures = 0;
    while (this.#state !== "closed") {
      if (this.#state === "closing" && this.#flights.size === 0) return;
      let results: FleetResult[];
      try {
        results = await this.#producer.read(READ_BLOCK);
      } catch (error) {
        if (this.#closed()) return;
        if (this.#outageSince === undefined) {
          this.#outageSince = performance.now();
          this.#log(
            `cannot read results from ${this.#producer.url}: ${
              message(error)
            }; reconnecting, ${this.#flights.size} chunk(s) in flight`,
          );
        }
        failures++;
        await sleep(Math.min(2000, 50 * 2 ** Math.min(failures, 6)));
        continue;
      }
      failures = 0;
      this.#rounds++;
      if (this.#outageSince !== undefined) {
        this.#outageSince = undefined;
        this.#log(`reading results from ${this.#producer.url} again`);
      }
      if (this.#producer.connections !== this.#connections) {
        // Redis came back: entries may have gone with it.
        this.#connections = this.#producer.connections;
        this.#check();
      }
      if (results.length > 0) this.#hear();
      for (const result of results) this.#deliver(result);
    }
  }

  #closed(): boolean {
    return this.#state === "closed";
  }

  #deliver(result: FleetResult): void {
    let decoded: ReturnType<typeof decodeResultEntry>;
    try {
      decoded = decodeResultEntry(result.fields, this.#codec!.parse);
    } catch (error) {
      const id = result.fields.get("id");
      const flight = id === undefined
        ? undefined
        : this.#flights.get(new TextDecoder().decode(id));
      if (flight === undefined) {
        this.#log(`dropped a malformed result entry: ${message(error)}`);
        return;
      }
      this.#settle(
        flight,
        this.#error(
          "protocol",
          flight.task,
          `its result entry is malformed: ${message(error)}`,
          error,
        ),
        true,
      );
      return;
    }
    const flight = this.#flights.get(decoded.id);
    if (flight === undefined) {
      // Dropped by choice, and said, with the count so far.
      this.#late++;
      this.#log(
        `dropped a result of task ${decoded.id} from worker ${decoded.worker}, as its chunk had settled already (timed out, aborted or answered); ${this.#late} dropped so far`,
      );
      return;
    }
    if (flight.attempts > 1 && flight.entry !== undefined) {
      // An earlier attempt answered (after a timeout): the entry added
      // since would run a chunk already done.
      void this.#producer.remove([flight.entry]).catch(() => {});
    }
    if ("value" in decoded) {
      this.#settle(flight, decoded.value, false);
      return;
    }
    const cause = fromWireError(decoded.error);
    const kind = decoded.kind ?? "callback";
    const attempts = (decoded.attempts ?? 1) > 1
      ? ` (after ${decoded.attempts} attempts)`
      : "";
    this.#settle(
      flight,
      this.#error(
        kind,
        flight.task,
        `${
          kind === "callback" ? "the callback threw " : ""
        }${cause.name}: ${cause.message}${attempts}`,
        cause,
        decoded.worker,
      ),
      true,
    );
  }

  /**
   * Looks for entries that vanished without a result. An entry found gone
   * twice, with a whole read of the result stream in between, is lost: its
   * result would have been read, since a worker publishes it in the same
   * step that deletes the entry.
   */
  #check(): void {
    // One at a time, and none queued behind it: while Redis is away a check
    // waits for a connection, and the ticks meanwhile have nothing to add.
    if (this.#checkQueued) return;
    this.#checkQueued = true;
    this.#checking = this.#checking.then(async () => {
      this.#checkQueued = false;
      await this.#checkWorkers();
      const added = [...this.#flights.values()].filter((f) =>
        f.entry !== undefined
      );
      if (added.length === 0) return;
      let gone: Set<string>;
      try {
        gone = await this.#producer.missing(added.map((f) => f.entry!));
      } catch (error) {
        // The reader says so; the next check tries again, unless Redis has
        // been unreachable too long: with no `timeout`, nothing else would
        // ever end these chunks, nor close().
        const since = this.#outageSince;
        const limit = this.#settings.unreachableAfter ?? UNREACHABLE_AFTER;
        if (since === undefined || performance.now() - since < limit) return;
        const seconds = Math.round((performance.now() - since) / 1000);
        for (const flight of added) {
          if (this.#flights.get(flight.key) !== flight) continue;
          this.#again(
            flight,
            "crash",
            `Redis at ${this.#producer.url} was unreachable for ${seconds} s with its entry ${flight.entry} in the stream '${this.#settings.stream}': ${
              describe(error)
            }`,
            error,
          );
        }
        return;
      }
      for (const flight of added) {
        if (this.#flights.get(flight.key) !== flight) continue;
        if (!gone.has(flight.entry!)) {
          flight.suspect = undefined;
        } else if (flight.suspect === undefined) {
          flight.suspect = this.#rounds;
        } else if (this.#rounds >= flight.suspect + 2) {
          // A read begun after the first look would have brought its result
          // (checks queued while Redis was unreachable run back to back).
          this.#again(
            flight,
            "crash",
            `its entry ${flight.entry} left the stream '${this.#settings.stream}' at ${this.#producer.url} without a result (Redis restarted without its data, or the stream was trimmed)`,
          );
        }
      }
    });
  }

  #hear(): void {
    this.#heard = performance.now();
    if (this.#warnedIdle) {
      this.#warnedIdle = false;
      this.#log(`results come from the fleet again`);
    }
  }

  /**
   * Chunks wait and no result came for a while: says so once if no live
   * worker reads the stream in the group, the likeliest mistake of a new
   * fleet (no worker started, or one on another stream or group).
   */
  async #checkWorkers(): Promise<void> {
    const quiet = this.#settings.quietAfter ?? QUIET_AFTER;
    if (
      this.#warnedIdle || this.#flights.size === 0 ||
      performance.now() - this.#heard < quiet
    ) return;
    const { stream, group } = this.#settings;
    let live: number;
    try {
      const consumers = await this.#producer.consumers(group);
      live = consumers.filter((c) => c.idle < LIVE_WITHIN).length;
    } catch {
      return; // The reader says what is wrong with Redis.
    }
    const waiting = Math.round((performance.now() - this.#heard) / 1000);
    this.#warnedIdle = true;
    this.#log(
      live === 0
        ? `no worker reads the stream '${stream}' in group '${group}' at ${this.#producer.url}: ${this.#flights.size} chunk(s) wait, none answered for ${waiting} s; start one, e.g. ocycle worker --redis URL --stream ${stream} --module ./handler.ts`
        : `${this.#flights.size} chunk(s) wait and no result came for ${waiting} s, though ${live} worker(s) read the stream '${stream}' in group '${group}'`,
    );
  }

  #error(
    kind: ChunkErrorKind,
    task: Task<unknown>,
    detail: string,
    cause?: unknown,
    worker?: string,
  ): ChunkError {
    return new ChunkError(kind, task.info, MODE, detail, {
      ...(cause === undefined ? {} : { cause }),
      ...(worker === undefined ? {} : { worker }),
    });
  }

  async close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closing";
    if (this.#flights.size > 0) {
      await new Promise<void>((resolve) => this.#idle = resolve);
    }
    await this.#finish();
  }

  async abort(reason: unknown): Promise<void> {
    if (this.#state === "closed") return;
    const entries: string[] = [];
    for (const flight of [...this.#flights.values()]) {
      if (flight.entry !== undefined) entries.push(flight.entry);
      this.#settle(
        flight,
        this.#error(
          "aborted",
          flight.task,
          `the emitter was aborted before its result came back: ${
            message(reason)
          }`,
          reason,
        ),
        true,
      );
    }
    this.#state = "closing";
    // Best effort: chunks no one will wait for should not be run.
    await within(this.#producer.remove(entries).catch(() => {}), 1000);
    await this.#finish();
  }

  async #finish(): Promise<void> {
    this.#state = "closed";
    clearInterval(this.#checker);
    await within(this.#producer.dispose().catch(() => {}), 1000);
    // Closing first fails a check that waits for a connection (Redis down),
    // which could otherwise hold up the end for its connect timeout.
    await this.#producer.close();
    await this.#checking;
    await this.#reading;
  }

  counts(): RunnerCounts {
    return { workers: 0, replaced: 0, retried: this.#retried };
  }
}

/** A name unique among the producers of a stream. */
function producerName(): string {
  const random = crypto.getRandomValues(new Uint8Array(4));
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const host = hostName();
  return `${host === undefined ? "" : host + "-"}${Deno.pid}-${hex}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
