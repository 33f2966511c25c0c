// Copyright the @ocycle/core authors. MIT license.
// Redis mode, the producer side: a runner (run/_runner.ts) of its own, since
// there is nothing to start here: the workers are elsewhere (fleet_worker.ts,
// `ocycle worker`). Each chunk is XADDed to the chunk stream as a task entry
// (wire/_entries.ts) naming this producer's result stream; one loop reads the
// results back and settles each chunk once, whatever else comes (a late or
// repeated result of a settled chunk is counted and dropped). At most
// `inFlight` chunks are in the stream at once: the emitter's slots are the
// fleet's backpressure.
//
// The rules are docs/fleet.md's: an add is idempotent (keyed by chunk and
// attempt), so one cut off by the connection is run again, not counted; a
// chunk has its `timeout` from when it was added; an entry that vanished
// without a result (Redis came back empty, someone trimmed the stream) is
// lost only from facts: found gone by a check every few seconds, with the
// result stream's last id read in the same step, and the reader then read
// through that id. Redis unreachable for `unreachableAfter` spends an attempt
// of every chunk in flight. `retries` for crashes and timeouts of the
// callback itself is the fleet's: it travels in the entry and the workers
// apply it.

import type { ChunkErrorKind } from "../chunk_error.ts";
import { type Flight, flightError, newFlight, resultError } from "./_flight.ts";
import {
  FleetProducer,
  type FleetResult,
  READ_COUNT,
} from "./_protocol_producer.ts";
import { RedisConnectionError } from "./_errors.ts";
import { fleetName } from "./_host.ts";
import { compareIds } from "./_streams.ts";
import { type Codec, loadCodec } from "../wire/_codec.ts";
import { decodeResultEntry, encodeTaskEntry } from "../wire/_entries.ts";
import { within } from "../run/_deadline.ts";
import { IdleWarning, QUIET_AFTER } from "./_producer_idle.ts";
import type { RedisSettings } from "./_producer_settings.ts";
import {
  MAX_LOSSES,
  pause,
  redisDelay,
  retryDelay,
  UNREACHABLE_AFTER,
} from "../run/_retry_policy.ts";
import {
  describe,
  message,
  type Runner,
  type RunnerCounts,
  type Task,
  warn,
} from "../run/_runner.ts";

export type {
  RedisSettings,
  RedisSettingsOption,
} from "./_producer_settings.ts";
export { UNREACHABLE_AFTER };

/** How often chunks in flight are checked for entries that vanished, in ms. */
export const LOST_CHECK_EVERY = 2000;
/** How long one read of the result stream blocks, in ms. */
const READ_BLOCK = 1000;

/** Runs chunks on a fleet of workers through a Redis stream. */
export class RedisRunner implements Runner<unknown, unknown> {
  readonly capacity: number;
  /** The bytes are copied into the entry: the buffer stays here. */
  readonly copies = true;
  readonly #settings: RedisSettings;
  readonly #producer: FleetProducer;
  readonly #flights = new Map<string, Flight>();
  /** Adds under way: `abort()` lets them end (briefly), so that they take their entries back. */
  readonly #adding = new Set<Promise<void>>();
  #codec: Codec | undefined;
  #next = 0;
  #state: "open" | "closing" | "closed" = "open";
  #reading: Promise<void> | undefined;
  #checker: ReturnType<typeof setInterval> | undefined;
  #checking: Promise<void> = Promise.resolve();
  /** Whether a check waits to run behind the one running. */
  #checkQueued = false;
  #connections = 1;
  /** Reads of the result stream begun. */
  #round = 0;
  /** The latest read that came back short of READ_COUNT: it read everything there was. */
  #caughtUp = 0;
  /** Add keys of settled chunks, to forget in the server. */
  #forget: string[] = [];
  /** When the result reader last began failing, for as long as it fails. */
  #outageSince: number | undefined;
  #retried = 0;
  /** Results of chunks already settled (late, repeated): dropped. */
  #late = 0;
  readonly #log: (line: string) => void;
  readonly #quiet: IdleWarning;

  constructor(settings: RedisSettings) {
    this.#settings = settings;
    this.capacity = settings.inFlight;
    this.#log = settings.log ?? ((line) => warn("redis", line));
    this.#producer = new FleetProducer(
      settings.url,
      settings.stream,
      fleetName(),
      settings.commandTimeout === undefined
        ? {}
        : { commandTimeout: settings.commandTimeout },
    );
    this.#quiet = new IdleWarning(
      this.#producer,
      settings.group,
      settings.quietAfter ?? QUIET_AFTER,
      this.#log,
    );
  }

  run(task: Task<unknown>): Promise<unknown> {
    if (this.#state !== "open") {
      return Promise.reject(
        flightError("aborted", task, "the emitter is closed"),
      );
    }
    return new Promise((resolve, reject) => {
      const key = String(++this.#next);
      const flight = newFlight(key, task, resolve, reject);
      if (this.#flights.size === 0) this.#quiet.restart();
      this.#flights.set(key, flight);
      const { timeout } = this.#settings;
      if (timeout !== Infinity) {
        flight.timer = setTimeout(() => this.#timedOut(flight), timeout);
      }
      this.#start();
      this.#startAdd(flight);
    });
  }

  #startAdd(flight: Flight): void {
    const adding: Promise<void> = this.#add(flight).finally(() =>
      this.#adding.delete(adding)
    );
    this.#adding.add(adding);
  }

  /** Starts the result loop and the lost-entry check with the first chunk. */
  #start(): void {
    this.#reading ??= this.#read();
    this.#checker ??= setInterval(() => this.#check(), LOST_CHECK_EVERY);
  }

  /**
   * Adds the task entry of `flight`, once: an add cut off by the connection
   * is run again with the same key (no second entry, no attempt spent) until
   * it answers or Redis has been unreachable for `unreachableAfter`; then,
   * or on an error reply, it tries again under `retries` or fails it.
   */
  async #add(flight: Flight): Promise<void> {
    flight.attempts++;
    flight.adds++;
    flight.entry = undefined;
    flight.gone = undefined;
    const adds = flight.adds;
    const key = `${flight.key}.${adds}`;
    // Settled, or added anew (its timeout fired while this add waited):
    // this add is not wanted any more.
    const stale = () =>
      this.#flights.get(flight.key) !== flight || flight.adds !== adds;
    let entry: string;
    let since: number | undefined;
    try {
      this.#codec ??= await loadCodec();
      if (stale()) return;
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
      const limit = this.#settings.unreachableAfter ?? UNREACHABLE_AFTER;
      for (let failures = 1;; failures++) {
        try {
          entry = await this.#producer.submit(fields, key);
          break;
        } catch (error) {
          // A server's error reply is no outage: said as it is.
          if (!(error instanceof RedisConnectionError)) throw error;
          since ??= performance.now();
          if (
            this.#state === "closed" ||
            performance.now() - since >= limit
          ) throw error;
          await pause(redisDelay(failures));
          if (stale()) {
            // The add may have run with its reply lost: take it back.
            await this.#producer.withdraw(key).catch(() => {});
            this.#forget.push(key);
            return;
          }
        }
      }
    } catch (error) {
      this.#forget.push(key);
      if (stale()) return;
      const seconds = since === undefined
        ? ""
        : ` (Redis unreachable for ${
          Math.round((performance.now() - since) / 1000)
        } s)`;
      this.#again(
        flight,
        "crash",
        `it could not be added to the stream '${this.#settings.stream}' at ${this.#producer.url}${seconds}: ${
          describe(error)
        }`,
        error,
      );
      return;
    }
    if (stale()) {
      // Settled or added anew while it was being added: take it back.
      this.#forget.push(key);
      await this.#producer.remove([entry]).catch(() => {});
      return;
    }
    flight.entry = entry;
  }

  /**
   * Runs `flight` again after a delay if `retries` allows, or fails it; a
   * `lost` entry (the broker's doing) is added again without spending
   * `retries`, up to MAX_LOSSES times.
   */
  #again(
    flight: Flight,
    kind: ChunkErrorKind,
    detail: string,
    cause?: unknown,
    lost = false,
  ): void {
    if (lost) flight.losses++;
    const spent = lost
      ? flight.losses > MAX_LOSSES
      : flight.attempts > this.#settings.retries;
    if (this.#state === "closed" || spent) {
      const attempts = lost
        ? ` (lost ${flight.losses} times)`
        : flight.attempts > 1
        ? ` (after ${flight.attempts} attempts)`
        : "";
      this.#settle(
        flight,
        flightError(kind, flight.task, detail + attempts, cause),
        true,
      );
      return;
    }
    this.#retried++;
    this.#forget.push(`${flight.key}.${flight.adds}`);
    // An add of the attempt given up on that is still under way is stale.
    flight.adds++;
    flight.entry = undefined;
    flight.gone = undefined;
    // #add counts an attempt: a loss is not one.
    if (lost) flight.attempts--;
    const wait = retryDelay(
      this.#settings.retryDelay,
      lost ? flight.losses : flight.attempts,
    );
    clearTimeout(flight.timer);
    flight.timer = setTimeout(() => {
      flight.timer = undefined;
      if (this.#flights.get(flight.key) !== flight) return;
      const { timeout } = this.#settings;
      if (timeout !== Infinity) {
        flight.timer = setTimeout(() => this.#timedOut(flight), timeout);
      }
      this.#startAdd(flight);
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
    if (flight.adds > 0) {
      this.#forget.push(`${flight.key}.${flight.adds}`);
    }
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
      const round = ++this.#round;
      try {
        results = await this.#producer.read(READ_BLOCK);
      } catch (error) {
        if (this.#closed()) return;
        const now = performance.now();
        if (this.#outageSince === undefined) {
          this.#outageSince = now;
          this.#log(
            `cannot read results from ${this.#producer.url}: ${
              message(error)
            }; reconnecting, ${this.#flights.size} chunk(s) in flight`,
          );
        } else if (
          now - this.#outageSince >=
            (this.#settings.unreachableAfter ?? UNREACHABLE_AFTER)
        ) {
          this.#unreachable(now - this.#outageSince, error);
          this.#outageSince = now;
        }
        failures++;
        await pause(redisDelay(failures));
        continue;
      }
      failures = 0;
      if (this.#outageSince !== undefined) {
        this.#outageSince = undefined;
        this.#log(`reading results from ${this.#producer.url} again`);
      }
      if (this.#producer.connections !== this.#connections) {
        // Redis came back: entries may have gone with it.
        this.#connections = this.#producer.connections;
        this.#check();
      }
      if (results.length > 0) this.#quiet.heard();
      for (const result of results) this.#deliver(result);
      if (results.length < READ_COUNT) this.#caughtUp = round;
      this.#judge();
      if (this.#forget.length > 0) {
        const keys = this.#forget;
        this.#forget = [];
        void this.#producer.forget(keys).catch(() => {});
      }
    }
  }

  /**
   * Redis has been unreachable for `ms` (the reader failing all along):
   * every chunk with an entry spends an attempt (docs/fleet.md, rule 8).
   */
  #unreachable(ms: number, error: unknown): void {
    const seconds = Math.round(ms / 1000);
    for (const flight of [...this.#flights.values()]) {
      if (flight.entry === undefined) continue; // its add has its own deadline
      this.#again(
        flight,
        "crash",
        `Redis at ${this.#producer.url} was unreachable for ${seconds} s with its entry ${flight.entry} in the stream '${this.#settings.stream}': ${
          describe(error)
        }`,
        error,
      );
    }
  }

  /**
   * The chunks found gone whose result would have been read by now (the
   * reader read through the result stream's last id seen with them gone, or
   * a read begun later came back short): lost, so added again or failed.
   */
  #judge(): void {
    const last = this.#producer.last;
    for (const flight of [...this.#flights.values()]) {
      const gone = flight.gone;
      if (gone === undefined) continue;
      if (this.#caughtUp <= gone.round && compareIds(last, gone.fence) < 0) {
        continue;
      }
      this.#again(
        flight,
        "crash",
        `its entry ${flight.entry} left the stream '${this.#settings.stream}' at ${this.#producer.url} without a result (Redis restarted without its data, or the stream was trimmed)`,
        undefined,
        true,
      );
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
        flightError(
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
    if (flight.adds > 1 && flight.entry !== undefined) {
      // An earlier attempt answered (after a timeout): the entry added
      // since would run a chunk already done.
      void this.#producer.remove([flight.entry]).catch(() => {});
    }
    if ("value" in decoded) this.#settle(flight, decoded.value, false);
    else this.#settle(flight, resultError(decoded, flight.task), true);
  }

  /**
   * Looks for entries that vanished, noting with each the result stream's
   * last id then; `#judge()` decides from there (docs/fleet.md, rule 6).
   */
  #check(): void {
    // One at a time, and none queued behind it: while Redis is away a check
    // waits for a connection, and the ticks meanwhile have nothing to add.
    if (this.#checkQueued) return;
    this.#checkQueued = true;
    this.#checking = this.#checking.then(async () => {
      this.#checkQueued = false;
      await this.#quiet.check(this.#flights.size);
      const added = [...this.#flights.values()].filter((f) =>
        f.entry !== undefined
      );
      if (added.length === 0) return;
      const entries = new Map(added.map((f) => [f, f.entry!]));
      let missing: Awaited<ReturnType<FleetProducer["missing"]>>;
      try {
        missing = await this.#producer.missing([...entries.values()]);
      } catch {
        return; // The reader says what is wrong with Redis.
      }
      // The read under way now may have begun before the look: only one
      // begun after it counts.
      const round = this.#round;
      for (const [flight, entry] of entries) {
        if (this.#flights.get(flight.key) !== flight) continue;
        if (flight.entry !== entry || flight.gone !== undefined) continue;
        if (missing.gone.has(entry)) {
          flight.gone = { fence: missing.fence, round };
        }
      }
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
        flightError(
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
    // Best effort: chunks no one will wait for should not be run. An add
    // under way takes its entry back once it answers (or, its reply lost,
    // once it has looked for it).
    await within(
      Promise.all([
        this.#producer.remove(entries).catch(() => {}),
        ...this.#adding,
      ]),
      1000,
    );
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
