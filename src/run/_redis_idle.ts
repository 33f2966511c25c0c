// Copyright the @ocycle/core authors. MIT license.
// Redis mode's one diagnostic, kept apart from the rules (docs/fleet.md) as
// it decides nothing: when chunks wait and no result came for `quietAfter`,
// say once whether any live worker reads the stream in the group, the
// likeliest mistake of a new fleet (no worker started, or one on another
// stream or group); and say when results come again.

import type { FleetProducer } from "../redis/_fleet_producer.ts";

/** Milliseconds without a result, chunks waiting, before the producer asks whether any worker reads. */
export const QUIET_AFTER = 10_000;
/** A consumer idle longer than this (ms) is not counted as a live worker. */
const LIVE_WITHIN = 30_000;

/** Says once that chunks wait with no worker (or no result), and when results come again. */
export class IdleWarning {
  readonly #producer: FleetProducer;
  readonly #group: string;
  readonly #quietAfter: number;
  readonly #log: (line: string) => void;
  /** When a result last came, or the first chunk was added after a quiet spell. */
  #heard = performance.now();
  #warned = false;

  constructor(
    producer: FleetProducer,
    group: string,
    quietAfter: number,
    log: (line: string) => void,
  ) {
    this.#producer = producer;
    this.#group = group;
    this.#quietAfter = quietAfter;
    this.#log = log;
  }

  /** The first chunk after a quiet spell: the clock starts now. */
  restart(): void {
    this.#heard = performance.now();
  }

  /** A result came. */
  heard(): void {
    this.#heard = performance.now();
    if (this.#warned) {
      this.#warned = false;
      this.#log(`results come from the fleet again`);
    }
  }

  /** With `waiting` chunks in flight: says so once if none answered for `quietAfter`. */
  async check(waiting: number): Promise<void> {
    if (
      this.#warned || waiting === 0 ||
      performance.now() - this.#heard < this.#quietAfter
    ) return;
    const { stream } = this.#producer;
    const group = this.#group;
    let live: number;
    try {
      const consumers = await this.#producer.consumers(group);
      live = consumers.filter((c) => c.idle < LIVE_WITHIN).length;
    } catch {
      return; // The reader says what is wrong with Redis.
    }
    const seconds = Math.round((performance.now() - this.#heard) / 1000);
    this.#warned = true;
    this.#log(
      live === 0
        ? `no worker reads the stream '${stream}' in group '${group}' at ${this.#producer.url}: ${waiting} chunk(s) wait, none answered for ${seconds} s; start one, e.g. ocycle worker --redis URL --stream ${stream} --module ./handler.ts`
        : `${waiting} chunk(s) wait and no result came for ${seconds} s, though ${live} worker(s) read the stream '${stream}' in group '${group}'`,
    );
  }
}
