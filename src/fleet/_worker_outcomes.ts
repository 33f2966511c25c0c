// Copyright the @ocycle/core authors. MIT license.
// How a fleet worker (fleet/_worker_engine.ts) hands an entry's outcome back:
// a result or an error result (the fenced commit), a dead letter, or a
// hand-back; each retried with backoff while Redis fails, counted, and
// logged when notable. A fenced outcome (another worker took the entry over)
// is counted and discarded.

import { before } from "../run/_deadline.ts";
import { redisDelay } from "../run/_retry_policy.ts";
import { message } from "../run/_runner.ts";
import { encodeResultEntry, type ResultOutcome } from "../wire/_entries.ts";
import type { CloneEncoder } from "../wire/_values.ts";
import { RedisError } from "./_errors.ts";
import {
  type ClaimedEntry,
  deadStream,
  type FleetWorker,
  type StartOutcome,
} from "./_protocol.ts";
import type { RedisWorkerStats } from "../fleet_worker_stats.ts";

export type { RedisWorkerStats };

/** Attempts of a Redis operation once the worker is aborting, so that stopping always ends. */
export const ABORT_ATTEMPTS = 5;

/**
 * Milliseconds an aborting worker gives Redis, all operations together, so
 * that `abort()` ends soon even while Redis is unreachable (each attempt
 * would otherwise wait for a connection); what it could not hand back goes
 * to other workers once stale.
 */
export const ABORT_WITHIN = 3000;

/** Sends outcomes back through a worker's FleetWorker. */
export class Outcomes {
  readonly #fleet: FleetWorker;
  readonly #counts: RedisWorkerStats;
  readonly #log: (line: string) => void;
  readonly #clone: CloneEncoder;
  /** Infinity, or once aborting, the `performance.now()` time Redis has until. */
  readonly #deadline: () => number;

  constructor(
    fleet: FleetWorker,
    counts: RedisWorkerStats,
    log: (line: string) => void,
    clone: CloneEncoder,
    deadline: () => number,
  ) {
    this.#fleet = fleet;
    this.#counts = counts;
    this.#log = log;
    this.#clone = clone;
    this.#deadline = deadline;
  }

  async commit(
    entry: ClaimedEntry,
    id: string,
    outcome: ResultOutcome,
  ): Promise<void> {
    const fields = encodeResultEntry(id, outcome, this.#clone);
    const done = await this.#redis(() => this.#fleet.commit(entry, fields));
    if (done === "wrongtype") {
      // A reply field written by hand: no producer reads that key.
      return await this.dead(
        entry,
        `its reply key '${entry.reply}' holds no stream`,
        undefined,
        outcome,
      );
    }
    if (done === "committed") {
      if ("value" in outcome) this.#counts.done++;
      else this.#counts.failed++;
    } else this.#fenced(entry, id, done);
  }

  async dead(
    entry: ClaimedEntry,
    detail: string,
    id: string | undefined,
    outcome: ResultOutcome,
  ): Promise<void> {
    const result = id === undefined || entry.reply === ""
      ? undefined
      : encodeResultEntry(id, outcome, this.#clone);
    let done = await this.#redis(() =>
      this.#fleet.deadLetter(entry, detail, result)
    );
    if (done === "wrongtype" && result !== undefined) {
      // The reply key holds no stream: the dead letter alone.
      detail += `; its reply key '${entry.reply}' holds no stream`;
      done = await this.#redis(() => this.#fleet.deadLetter(entry, detail));
    }
    if (done === "wrongtype") {
      // Retrying would fail alike: left pending (and held) for an operator.
      throw new Error(
        `cannot dead-letter it: '${
          deadStream(this.#fleet.stream)
        }' holds no stream (${detail})`,
      );
    }
    if (done === "committed") {
      this.#counts.deadLettered++;
      this.#counts.failed++;
      this.#log(`entry ${entry.id} went to the dead letter: ${detail}`);
    } else this.#fenced(entry, id, done);
  }

  #fenced(entry: ClaimedEntry, id: string | undefined, done: unknown): void {
    if (done !== "fenced") return; // lost with Redis's data, or given up on abort
    this.#counts.fenced++;
    this.#log(
      `entry ${entry.id}${
        id === undefined ? "" : ` (task ${id})`
      } was taken over by another worker: its outcome here is discarded`,
    );
  }

  /** Counts the start of `entry` (the fenced START); `undefined` if Redis gave out while aborting. */
  async start(
    entry: ClaimedEntry,
    id: string,
  ): Promise<StartOutcome | undefined> {
    const start = await this.#redis(() => this.#fleet.start(entry));
    if (start?.outcome === "fenced") this.#fenced(entry, id, "fenced");
    return start;
  }

  /** Hands `entry` back; `started`: this worker had counted its start (lowered again). */
  async handBack(entry: ClaimedEntry, started: boolean): Promise<void> {
    const done = await this.#redis(() =>
      this.#fleet.handBack([entry.id], started ? 1 : 0)
    );
    if (done !== undefined) this.#counts.handedBack += done.handedBack;
  }

  /**
   * Runs a Redis operation until it succeeds, with backoff; gives up (and
   * returns `undefined`) once aborting, or when the group is gone (Redis lost
   * its data: so did the entry).
   */
  async #redis<T>(op: () => Promise<T>): Promise<T | undefined> {
    for (let failures = 1;; failures++) {
      try {
        const value = await before(op, this.#deadline());
        if (value === undefined) {
          this.#log("Redis did not answer in time while aborting; giving up");
        }
        return value;
      } catch (error) {
        if (isNoGroup(error)) {
          this.#fleet.resetGroup();
          this.#log(
            `the group is gone (Redis lost its data): ${message(error)}`,
          );
          return undefined;
        }
        if (
          this.#deadline() !== Infinity &&
          (failures >= ABORT_ATTEMPTS || performance.now() >= this.#deadline())
        ) {
          this.#log(`Redis failed, giving up: ${message(error)}`);
          return undefined;
        }
        const wait = redisDelay(failures);
        this.#log(
          `Redis failed: ${message(error)}; trying again in ${wait | 0} ms`,
        );
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }
}

export function isNoGroup(error: unknown): boolean {
  return error instanceof RedisError && error.code === "NOGROUP";
}

/** A key of the fleet holds another type of value (a name shared by mistake). */
export function isWrongType(error: unknown): boolean {
  return error instanceof RedisError && error.code === "WRONGTYPE";
}
