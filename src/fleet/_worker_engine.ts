// Copyright the @ocycle/core authors. MIT license.
// The engine of a fleet worker (fleet_worker.ts), following docs/fleet.md: it
// claims task entries from the chunk stream up to what its local pool starts
// at once (plus a read-ahead of fast chunks, see READ_AHEAD_MS), takes over
// stale ones every staleAfter/2, counts a start (the fenced START) right
// before running one, refusing as poison an entry `maxStalls` workers started
// and never ended, runs each in a local runner of the mode it was started
// with (one per layout, made lazily), and hands the outcome back with the
// fenced scripts of fleet/_protocol.ts (through fleet/_worker_outcomes.ts): a
// result, an error result, a dead letter or, when it stops, a hand-back.
// Retries of crashes and timeouts are local, with the producer's policy from
// the entry. Redis errors are logged and retried with backoff
// (run/_retry_policy.ts); they never end the loop.
//
// A chunk decoded from a reply views bytes of its own: the RESP decoder
// (fleet/_resp.ts) allocates every bulk string afresh, never a view of the
// client's read buffer, so nothing needs copying before a chunk is run.

import { ChunkError, type ChunkErrorKind } from "../chunk_error.ts";
import { createRunner, type RunnerSettings } from "../run/_factory.ts";
import { before } from "../run/_deadline.ts";
import { isRetryable, redisDelay, retryDelay } from "../run/_retry_policy.ts";
import { describe, message, type Runner, type Task } from "../run/_runner.ts";
import {
  decodeTaskEntry,
  type ResultOutcome,
  type TaskEntry,
} from "../wire/_entries.ts";
import type { ChunkLayout } from "../wire/_layout.ts";
import { toWireError } from "../wire/_messages.ts";
import { type Codec, loadCodec } from "../wire/_codec.ts";
import { type ClaimedEntry, FleetWorker } from "./_protocol.ts";
import {
  ABORT_ATTEMPTS,
  ABORT_WITHIN,
  isNoGroup,
  isWrongType,
  Outcomes,
  type RedisWorkerStats,
} from "./_worker_outcomes.ts";

/** Everything the engine is made from, checked by fleet_worker.ts. */
export interface EngineSettings {
  readonly url: string;
  readonly stream: string;
  readonly group: string;
  readonly name: string;
  /** The local runner's settings, but for the layout, which each entry names. */
  readonly runner: Omit<RunnerSettings<unknown, unknown>, "layout">;
  /** Chunks the local runner holds at once (its pool × concurrency). */
  readonly capacity: number;
  /** Chunks the local runner starts at once (its pool): what is claimed, besides the read-ahead. */
  readonly starts: number;
  /** Workers that may start an entry and vanish before it is poison. */
  readonly maxStalls: number;
  readonly staleAfter: number;
  readonly heartbeat: number;
  readonly log: (line: string) => void;
}

/** How often a worker removes the group's consumers of killed workers, in ms. */
const PRUNE_EVERY = 60_000;

/** How long a claim waits for new entries, in ms: also how soon the loop sees a stop. */
const BLOCK = 500;

/**
 * Read-ahead: besides what its local pool runs, a worker claims as many
 * entries as the pool runs in about this many ms (from the average run so
 * far), so that fast chunks come in batches, not one round trip each; an
 * entry then waits at most about this long here while another worker might
 * be idle. Slow callbacks read nothing ahead.
 */
const READ_AHEAD_MS = 10;
/**
 * The most entries read ahead: what a worker may have claimed in vain when
 * fast chunks give way to slow ones (16 measured no faster than 4).
 */
const READ_AHEAD_MAX = 4;

/** A fleet worker's loop; `run()` settles once it has stopped and let go of everything. */
export class WorkerEngine {
  readonly counts: RedisWorkerStats = {
    claimed: 0,
    reclaimed: 0,
    done: 0,
    failed: 0,
    fenced: 0,
    deadLettered: 0,
    handedBack: 0,
    retried: 0,
  };
  readonly #s: EngineSettings;
  readonly #fleet: FleetWorker;
  readonly #runners = new Map<string, Runner<unknown, unknown>>();
  readonly #handling = new Set<Promise<void>>();
  /** Slots of the local pool free now; entries read ahead wait for one. */
  #slots: number;
  /** Handlers waiting for a slot: each takes one handed to it (true), or declines (false). */
  readonly #slotWaiters: (() => boolean)[] = [];
  /** The average time of one run, in ms (a moving average); undefined before the first. */
  #runMs: number | undefined;
  #state: "running" | "stopping" | "aborting" = "running";
  #fatal: { error: unknown } | undefined;
  /** Once aborting: the `performance.now()` time Redis has until. */
  #abortBy = Infinity;
  #codec: Codec | undefined;
  /** Made once the codec is loaded. */
  #out!: Outcomes;
  #wake: () => void = () => {};
  #woken: Promise<void> = this.#rearm();
  #stop: () => void = () => {};
  readonly #stopped = new Promise<void>((resolve) => this.#stop = resolve);

  constructor(settings: EngineSettings) {
    this.#s = settings;
    this.#slots = settings.capacity;
    this.#fleet = new FleetWorker(settings.url, {
      stream: settings.stream,
      group: settings.group,
      consumer: settings.name,
      count: settings.starts,
      block: BLOCK,
      heartbeat: settings.heartbeat,
      staleAfter: settings.staleAfter,
      maxStalls: settings.maxStalls,
    });
  }

  /** Stop claiming; finish running chunks; hand back the rest. */
  shutdown(): void {
    if (this.#state !== "running") return;
    this.#state = "stopping";
    this.#stop();
    this.#wake();
  }

  /** Hand back everything now; running chunks are aborted. */
  abort(reason: unknown): void {
    if (this.#state === "aborting") return;
    this.#state = "aborting";
    this.#abortBy = performance.now() + ABORT_WITHIN;
    this.#stop();
    this.#wake();
    for (const runner of this.#runners.values()) {
      runner.abort(reason).catch((error) =>
        this.#s.log(`aborting the local pool failed: ${describe(error)}`)
      );
    }
  }

  /**
   * Runs until stopped, then waits for every chunk, hands back what is left,
   * leaves the group and closes everything it opened.
   *
   * @throws The fatal error that stopped it: the codec or the callback module could not be loaded.
   */
  async run(): Promise<void> {
    try {
      this.#codec = await loadCodec();
      this.#out = new Outcomes(
        this.#fleet,
        this.counts,
        this.#s.log,
        this.#codec.clone,
        () => this.#abortBy,
      );
      await this.#loop();
    } catch (error) {
      this.#fatal ??= { error };
      this.abort(error);
    } finally {
      await this.#finish();
    }
    if (this.#fatal !== undefined) throw this.#fatal.error;
  }

  async #loop(): Promise<void> {
    const { starts, staleAfter, log } = this.#s;
    let nextReclaim = 0;
    let nextPrune = Date.now() + PRUNE_EVERY;
    let failures = 0;
    while (this.#is("running")) {
      const beat = this.#fleet.heartbeatError;
      if (beat !== undefined) {
        this.#fleet.heartbeatError = undefined;
        log(`a heartbeat failed: ${message(beat)}`);
      }
      // What can start now, and a few fast ones: an entry held here and not
      // started is stranded for `staleAfter` if this worker dies.
      const free = starts + this.#readAhead() - this.#handling.size;
      if (free <= 0) {
        await this.#woken;
        continue;
      }
      try {
        if (Date.now() >= nextPrune) {
          nextPrune = Date.now() + PRUNE_EVERY;
          const removed = await this.#fleet.prune();
          if (removed > 0) {
            log(
              `removed ${removed} consumer(s) of killed workers from the group`,
            );
          }
        }
        if (Date.now() >= nextReclaim) {
          nextReclaim = Date.now() + staleAfter / 2;
          const entries = await this.#fleet.reclaim(free);
          this.counts.reclaimed += entries.length;
          if (entries.length > 0) {
            log(`took over ${entries.length} stale entries: ${ids(entries)}`);
          }
          for (const entry of entries) this.#start(entry);
        } else {
          const entries = await this.#fleet.claim(free);
          this.counts.claimed += entries.length;
          for (const entry of entries) this.#start(entry);
        }
        failures = 0;
      } catch (error) {
        if (isWrongType(error)) {
          // Another fleet's or program's key: no retry will change it.
          throw new TypeError(
            `Cannot take chunks from the stream '${this.#s.stream}' as its key or '${this.#s.stream}:started' holds another type of value: ${
              message(error)
            }`,
            { cause: error },
          );
        }
        failures++;
        if (isNoGroup(error)) this.#fleet.resetGroup();
        const wait = redisDelay(failures);
        log(`Redis failed: ${message(error)}; trying again in ${wait | 0} ms`);
        await this.#sleep(wait);
      }
    }
  }

  #start(entry: ClaimedEntry): void {
    let slot = false;
    const slots = {
      take: () => slot = true,
      // the slot is free once the callback is done, before the outcome is sent
      give: () => {
        if (!slot) return;
        slot = false;
        // Straight to the first waiter, at once: its START goes out in the
        // same write as the outcome of the run that freed the slot.
        for (let next; (next = this.#slotWaiters.shift()) !== undefined;) {
          if (next()) return;
        }
        this.#slots++;
      },
    };
    const handling: Promise<void> = this.#handle(entry, slots)
      .catch((error) =>
        this.#s.log(`entry ${entry.id} was left pending: ${describe(error)}`)
      )
      .finally(() => {
        slots.give();
        this.#handling.delete(handling);
        this.#wake();
      });
    this.#handling.add(handling);
  }

  /** Entries to claim beyond the pool's capacity: see READ_AHEAD_MS. */
  #readAhead(): number {
    if (this.#runMs === undefined) return 0;
    const n = READ_AHEAD_MS * this.#s.starts / Math.max(this.#runMs, 0.01);
    return Math.min(READ_AHEAD_MAX, Math.floor(n));
  }

  /**
   * Takes a slot of the local pool, then at once calls `start` (which sends
   * the START) and returns what it returned, boxed (not awaited); `undefined`
   * if the worker stops first.
   */
  async #takeSlot<T>(
    slots: { take(): void },
    start: () => T,
  ): Promise<{ value: T } | undefined> {
    if (!this.#is("running")) return undefined;
    if (this.#slots > 0) {
      this.#slots--;
      slots.take();
      return { value: start() };
    }
    let started: { value: T } | undefined;
    const granted = new Promise<void>((resolve) =>
      this.#slotWaiters.push(() => {
        resolve();
        if (!this.#is("running")) return false;
        slots.take();
        started = { value: start() };
        return true;
      })
    );
    await Promise.race([granted, this.#stopped]);
    return started;
  }

  async #handle(
    entry: ClaimedEntry,
    slots: { take(): void; give(): void },
  ): Promise<void> {
    if (!this.#is("running")) return await this.#out.handBack(entry, false);
    let task: TaskEntry;
    try {
      if (entry.reply === "") throw new TypeError("it names no reply stream");
      task = decodeTaskEntry(entry.fields, this.#codec!.parse);
    } catch (error) {
      const detail = `poison entry: ${message(error)}`;
      return await this.#out.dead(entry, detail, taskId(entry), {
        worker: this.#s.name,
        error: toWireError(error),
        kind: "protocol",
      });
    }
    // The START: a fact for whoever takes it over if this worker vanishes
    // from here on. An entry delivered for the first time was started by no
    // one: it cannot be poison, so it runs once its START is on the wire (a
    // callback that kills this worker is still counted), not after its
    // round trip.
    const taken = await this.#takeSlot(
      slots,
      () => this.#out.start(entry, task.id),
    );
    if (taken === undefined) return await this.#out.handBack(entry, false);
    const starting = taken.value;
    const start = entry.deliveries === 1
      ? await Promise.race([this.#fleet.sent(), starting]).then(() => ({
        outcome: "started" as const,
        before: 0,
      }))
      : await starting;
    if (start === undefined || start.outcome === "fenced") {
      // Another worker holds it, the group went with Redis's data, or
      // Redis gave out while aborting: nothing here to run or hand back.
      slots.give();
      return;
    }
    if (start.outcome === "poison") {
      slots.give();
      const detail = `it took down ${start.before} worker${
        start.before === 1 ? "" : "s"
      } in a row (each started it and vanished; 'maxStalls' is ${this.#s.maxStalls})`;
      return await this.#out.dead(entry, detail, task.id, {
        worker: this.#s.name,
        error: { name: "Error", message: detail },
        kind: "crash",
        attempts: start.before,
      });
    }
    const runner = this.#runner(task.layout);
    for (let attempt = 1;; attempt++) {
      let value: unknown;
      const start = performance.now();
      try {
        value = await runner.run(this.#task(task));
        this.#ran(performance.now() - start);
      } catch (error) {
        this.#ran(performance.now() - start);
        const kind: ChunkErrorKind = error instanceof ChunkError
          ? error.kind
          : "callback";
        if (this.#is("aborting") || kind === "aborted") {
          return await this.#out.handBack(entry, true);
        }
        if (kind === "startup") {
          // The worker's own module or pool is broken: not the chunk's fault.
          this.#fatal ??= { error };
          this.abort(error);
          return await this.#out.handBack(entry, true);
        }
        const retryable = isRetryable(kind);
        if (retryable && attempt < 1 + task.retries) {
          this.counts.retried++;
          const wait = retryDelay(task.retryDelay, attempt);
          this.#s.log(
            `task ${task.id} (entry ${entry.id}) failed by ${kind}, attempt ${attempt} of ${
              1 + task.retries
            }; again in ${wait | 0} ms`,
          );
          await this.#sleep(wait);
          if (!this.#is("running")) {
            return await this.#out.handBack(entry, true);
          }
          continue;
        }
        slots.give();
        const outcome: ResultOutcome = {
          worker: this.#s.name,
          error: toWireError(callbackError(error)),
          kind,
          attempts: attempt,
        };
        if (retryable) {
          return await this.#out.dead(
            entry,
            `${kind}: ${message(error)}`,
            task.id,
            {
              ...outcome,
            },
          );
        }
        return await this.#out.commit(entry, task.id, outcome);
      }
      slots.give();
      return await this.#out.commit(entry, task.id, {
        worker: this.#s.name,
        value,
      });
    }
  }

  /** Counts one run of `ms` into the average. */
  #ran(ms: number): void {
    this.#runMs = this.#runMs === undefined ? ms : 0.8 * this.#runMs + 0.2 * ms;
  }

  #task(entry: TaskEntry): Task<unknown> {
    let chunk = entry.chunk;
    // A thread-mode Worker takes the bytes (transferred): a retry needs its own.
    if (
      this.#s.runner.mode === "thread" && entry.retries > 0 &&
      ArrayBuffer.isView(chunk)
    ) chunk = (chunk as Uint8Array).slice();
    return {
      chunk,
      info: entry.info,
      buffer: undefined,
      lost: false,
      owned: true,
    };
  }

  #runner(layout: ChunkLayout): Runner<unknown, unknown> {
    const key = JSON.stringify(layout);
    let runner = this.#runners.get(key);
    if (runner === undefined) {
      runner = createRunner({ ...this.#s.runner, layout });
      this.#runners.set(key, runner);
    }
    return runner;
  }

  async #finish(): Promise<void> {
    while (this.#handling.size > 0) await Promise.all(this.#handling);
    for (let attempt = 1; attempt <= ABORT_ATTEMPTS; attempt++) {
      try {
        const out = await before(() => this.#fleet.handBack(), this.#abortBy);
        if (out === undefined) {
          this.#s.log("handing back gave up: Redis did not answer in time");
          break;
        }
        const { handedBack, left } = out;
        this.counts.handedBack += handedBack;
        if (!left) {
          this.#s.log(
            "stays in the group: it still holds entries (fenced away)",
          );
        }
        break;
      } catch (error) {
        if (isNoGroup(error) || isWrongType(error)) break;
        this.#s.log(`handing back failed: ${message(error)}`);
        if (performance.now() >= this.#abortBy) break;
        if (attempt < ABORT_ATTEMPTS) {
          await new Promise((r) => setTimeout(r, redisDelay(attempt)));
        }
      }
    }
    await Promise.all(
      [...this.#runners.values()].map((runner) =>
        runner.close().catch((error) =>
          this.#s.log(`closing the local pool failed: ${describe(error)}`)
        )
      ),
    );
    await this.#fleet.close();
  }

  /** Waits `ms`, or less if the worker is told to stop. */
  async #sleep(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise((resolve) => timer = setTimeout(resolve, ms)),
      this.#stopped,
    ]);
    clearTimeout(timer);
  }

  /** The state, read through a call so that TypeScript does not narrow it across awaits. */
  #is(state: "running" | "stopping" | "aborting"): boolean {
    return this.#state === state;
  }

  #rearm(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = () => {
        this.#woken = this.#rearm();
        resolve();
      };
    });
  }
}

function ids(entries: readonly ClaimedEntry[]): string {
  return entries.map((e) => e.id).join(", ");
}

/** A task entry's id, when it is readable: the error result of a poison entry goes to it. */
function taskId(entry: ClaimedEntry): string | undefined {
  const id = entry.fields.get("id");
  if (id === undefined || id.length === 0 || id.length > 200) return undefined;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(id);
  } catch {
    return undefined;
  }
}

/** What a callback threw, out of the pool's ChunkError around it; other errors as they are. */
function callbackError(error: unknown): unknown {
  return error instanceof ChunkError && error.kind === "callback" &&
      error.cause !== undefined
    ? error.cause
    : error;
}
