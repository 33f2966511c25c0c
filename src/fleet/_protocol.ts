// Copyright the @ocycle/core authors. MIT license.
// The fleet protocol of Redis mode, the Redis side only: producers XADD task
// entries to the chunk stream NAME and read their results back from
// NAME:results:<producer> (XREAD BLOCK, on a connection of their own); workers
// read tasks with XREADGROUP in one group, keep the entries they hold fresh
// with a heartbeat (XCLAIM ... JUSTID, only for entries they still own), take
// over entries idle longer than `staleAfter` (a dead worker's) with
// XAUTOCLAIM (following its cursor over the whole pending list), count a
// start (START: NAME:started) before running an entry, and hand back a result (or a dead letter to NAME:dead) with one
// Lua script: the fenced commit, which publishes, acks and deletes only while
// the entry is still pending for this very worker. Execution is at least
// once; a result is published at most once per entry, so exactly once.
// docs/fleet.md is the model these follow.
// Entries are deleted when their result is in, never trimmed before.

import { type Arg, RedisClient, type RedisClientOptions } from "./_client.ts";
import {
  type StreamEntry,
  xautoclaim,
  xgroupCreate,
  xreadgroup,
} from "./_streams.ts";
import {
  COMMIT_SCRIPT,
  deadStream,
  HANDBACK_SCRIPT,
  HANDED_BACK,
  HANDED_BACK_IDLE,
  HEARTBEAT_SCRIPT,
  PRUNE_SCRIPT,
  REPLY_FIELD,
  START_SCRIPT,
  startedBy,
  startedHash,
} from "./_scripts.ts";
import { MAX_STALLS } from "../run/_retry_policy.ts";

export { deadStream, REPLY_FIELD, resultStream } from "./_scripts.ts";
export { FleetProducer, type FleetResult } from "./_protocol_producer.ts";

const decoder = new TextDecoder();

/** A task entry a worker holds. */
export interface ClaimedEntry {
  /** The entry's id in the chunk stream. */
  id: string;
  /** Its fields, as the producer wrote them (the reply field included). */
  fields: Map<string, Uint8Array>;
  /** The stream its result goes to. */
  reply: string;
  /** How many times it was delivered, this time included (1 the first time). */
  deliveries: number;
}

/**
 * What a fenced commit did: `wrongtype` (nothing changed) when the stream it
 * appends to (the entry's reply, or NAME:dead) holds another type of value.
 */
export type CommitOutcome = "committed" | "fenced" | "wrongtype";

/**
 * What a fenced start did: counted this worker (`started`), refused as
 * `maxStalls` workers started it already and vanished (`poison`), or nothing
 * as another worker holds it (`fenced`); `before` is how many had started it.
 */
export interface StartOutcome {
  outcome: "started" | "poison" | "fenced";
  before: number;
}

/**
 * The most XAUTOCLAIM calls of one `reclaim()`: each scans about 10 × COUNT
 * pending entries; the cursor is kept, so the next `reclaim()` goes on from
 * there and a pass reaches every entry however long the list.
 */
const RECLAIM_CALLS = 50;

/** Options of {@linkcode FleetWorker}. */
export interface FleetWorkerOptions {
  /** The chunk stream's key. */
  stream: string;
  /** The consumer group. @default {"ocycle"} */
  group?: string;
  /** This worker's consumer name, unique in the fleet. */
  consumer: string;
  /** The most entries one `claim()` or `reclaim()` takes. @default {16} */
  count?: number;
  /** How long `claim()` waits for entries, in ms. @default {1000} */
  block?: number;
  /** How often held entries are refreshed, in ms; 0: never. @default {1000} */
  heartbeat?: number;
  /** Idle this long (ms), an entry is taken over by `reclaim()`. @default {5000} */
  staleAfter?: number;
  /**
   * Workers that may start an entry and vanish before `start()` refuses it
   * as poison. @default {3}
   */
  maxStalls?: number;
  /**
   * A consumer that holds nothing and was last seen this long ago (ms) is
   * removed from the group by `prune()`: a killed worker's name.
   * @default {3600000}
   */
  pruneAfter?: number;
  /** Options of the worker's two clients. */
  client?: RedisClientOptions;
}

/** The worker side: claim, heartbeat, reclaim, fenced commit, dead letter. */
export class FleetWorker {
  readonly stream: string;
  readonly group: string;
  readonly consumer: string;
  readonly #count: number;
  readonly #block: number;
  readonly #staleAfter: number;
  readonly #pruneAfter: number;
  readonly #maxStalls: number;
  readonly #startedKey: string;
  /** Where the next XAUTOCLAIM starts: "0-0" from the list's head. */
  #cursor = "0-0";
  /** Commands (never blocks). */
  readonly #client: RedisClient;
  /** XREADGROUP BLOCK only. */
  readonly #reader: RedisClient;
  readonly #held = new Set<string>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #beating: Promise<unknown> = Promise.resolve();
  #groupReady: Promise<boolean> | undefined;
  /** The last error of a background heartbeat, if any. */
  heartbeatError: unknown = undefined;

  /** Connects (lazily) to `url`; starts the heartbeat. */
  constructor(url: string, options: FleetWorkerOptions) {
    this.stream = options.stream;
    this.group = options.group ?? "ocycle";
    this.consumer = options.consumer;
    this.#count = options.count ?? 16;
    this.#block = options.block ?? 1000;
    this.#staleAfter = options.staleAfter ?? 5000;
    this.#pruneAfter = options.pruneAfter ?? 3_600_000;
    this.#maxStalls = options.maxStalls ?? MAX_STALLS;
    this.#startedKey = startedHash(this.stream);
    this.#client = new RedisClient(url, options.client);
    this.#reader = new RedisClient(url, options.client);
    const heartbeat = options.heartbeat ?? 1000;
    if (heartbeat > 0) this.startHeartbeat(heartbeat);
  }

  /** The ids of the entries this worker holds (claimed, not committed yet). */
  get held(): ReadonlySet<string> {
    return this.#held;
  }

  /** Creates the group (from the stream's start, MKSTREAM) unless it exists; tried again after a failure. */
  ensureGroup(): Promise<boolean> {
    this.#groupReady ??= xgroupCreate(
      this.#client,
      this.stream,
      this.group,
      "0",
    ).catch((error) => {
      this.#groupReady = undefined;
      throw error;
    });
    return this.#groupReady;
  }

  /**
   * Forgets that the group exists, so that the next call creates it again
   * (after NOGROUP: Redis restarted without its data).
   */
  resetGroup(): void {
    this.#groupReady = undefined;
  }

  /** New entries for this worker: XREADGROUP COUNT BLOCK; `[]` when none came. */
  async claim(count: number = this.#count): Promise<ClaimedEntry[]> {
    await this.ensureGroup();
    const entries = await xreadgroup(
      this.#reader,
      this.stream,
      this.group,
      this.consumer,
      { count, block: this.#block },
    );
    return await this.#hold(entries, false);
  }

  /**
   * Up to `count` entries idle longer than `staleAfter` (a dead or stalled
   * worker's), taken over with XAUTOCLAIM, following its cursor: on from
   * where the last call stopped, until `count` are taken, the list's end is
   * reached, or RECLAIM_CALLS calls are made.
   */
  async reclaim(count: number = this.#count): Promise<ClaimedEntry[]> {
    await this.ensureGroup();
    const taken: StreamEntry[] = [];
    const deleted: string[] = [];
    for (let call = 0; call < RECLAIM_CALLS && taken.length < count; call++) {
      const { next, entries, deleted: gone } = await xautoclaim(
        this.#client,
        this.stream,
        this.group,
        this.consumer,
        this.#staleAfter,
        this.#cursor,
        count - taken.length,
      );
      taken.push(...entries);
      deleted.push(...gone);
      this.#cursor = next;
      // The list's end: the next call starts over from its head.
      if (next === "0-0") break;
    }
    // Entries deleted while pending (given up on): their start counts go too.
    if (deleted.length > 0) {
      await this.#client.command(
        "HDEL",
        this.#startedKey,
        ...deleted.flatMap((id) => [id, startedBy(id)]),
      );
    }
    return await this.#hold(taken, true);
  }

  /**
   * The fenced start of an entry this worker holds: counts it in
   * NAME:started, unless `maxStalls` workers started it already and none
   * ended it (then it is poison, and nothing changes).
   */
  async start(entry: ClaimedEntry): Promise<StartOutcome> {
    const [outcome, before] = await START_SCRIPT.run(
      this.#client,
      [this.stream, this.#startedKey],
      [this.group, this.consumer, entry.id, this.#maxStalls],
    ) as [Uint8Array, number];
    const name = decoder.decode(outcome);
    return {
      outcome: name === "started" || name === "poison" ? name : "fenced",
      before: Number(before),
    };
  }

  /** Resolves once the commands sent so far (a START) are on the wire. */
  sent(): Promise<void> {
    return this.#client.sent();
  }

  /** Workers that may start an entry and vanish before it is poison. */
  get maxStalls(): number {
    return this.#maxStalls;
  }

  async #hold(
    entries: StreamEntry[],
    counted: boolean,
  ): Promise<ClaimedEntry[]> {
    // An entry it holds already went stale because its own heartbeat lagged
    // (a busy event loop): XAUTOCLAIM gave it back to it, fresh; it runs
    // once here, not twice.
    const live = entries.filter((e) =>
      e.fields !== null && !(counted && this.#held.has(e.id))
    );
    const deliveries = counted
      ? await this.#client.pipeline(
        live.map((
          e,
        ) => ["XPENDING", this.stream, this.group, e.id, e.id, 1]),
      )
      : [];
    return live.map((e, i) => {
      const fields = e.fields!;
      const reply = fields.get(REPLY_FIELD);
      this.#held.add(e.id);
      const row = deliveries[i];
      const n = Array.isArray(row) && Array.isArray(row[0])
        ? Number(row[0][3])
        : 1;
      return {
        id: e.id,
        fields,
        reply: reply === undefined ? "" : decoder.decode(reply),
        deliveries: n,
      };
    });
  }

  /** Removes the consumers of killed workers (idle past `pruneAfter`, holding nothing); returns how many. */
  async prune(): Promise<number> {
    await this.ensureGroup();
    return await PRUNE_SCRIPT.run(this.#client, [this.stream], [
      this.group,
      this.#pruneAfter,
    ]) as number;
  }

  /** Refreshes the held entries now; returns the ids lost to another worker (and forgets them). */
  async heartbeatNow(): Promise<string[]> {
    const ids = [...this.#held];
    if (ids.length === 0) return [];
    const kept = new Set(
      (await HEARTBEAT_SCRIPT.run(
        this.#client,
        [this.stream],
        [this.group, this.consumer, ...ids],
      ) as Uint8Array[]).map((id) => decoder.decode(id)),
    );
    const lost = ids.filter((id) => !kept.has(id) && this.#held.has(id));
    for (const id of lost) this.#held.delete(id);
    return lost;
  }

  /** Refreshes held entries every `every` ms (restarting the timer). */
  startHeartbeat(every: number): void {
    this.stopHeartbeat();
    let beat = false;
    this.#timer = setInterval(() => {
      // One at a time: while Redis is away a beat waits for the connection,
      // and the ticks meanwhile are skipped rather than queued behind it.
      if (beat) return;
      beat = true;
      this.#beating = this.heartbeatNow().then(
        () => {},
        (error) => {
          this.heartbeatError = error;
        },
      ).finally(() => beat = false);
    }, every);
  }

  /** Stops the heartbeat (a stalled worker, in tests). */
  stopHeartbeat(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * The fenced commit: appends `result` (a result entry's fields) to the
   * entry's reply stream, acks and deletes the entry, all at once, only if
   * this worker still holds it.
   *
   * @returns `"fenced"` (nothing changed) if another worker took it over;
   * `"wrongtype"` (nothing changed) if its reply key holds no stream.
   * @throws {TypeError} If the task entry named no reply stream, or `result` is no field list.
   */
  async commit(
    entry: ClaimedEntry,
    result: readonly Arg[],
  ): Promise<CommitOutcome> {
    if (entry.reply === "") {
      throw new TypeError(
        `Cannot commit entry ${entry.id} of ${this.stream} as it names no '${REPLY_FIELD}' stream`,
      );
    }
    checkFields(result);
    return await this.#run(
      [this.stream, this.#startedKey, entry.reply],
      [entry.id, "result", ...result],
    );
  }

  /**
   * The fenced dead letter: moves the entry (its fields copied by the
   * script) to NAME:dead with `error`, this worker's name and its delivery
   * count; when given, appends `result` (an error result) to its reply
   * stream; acks and deletes it; all only if this worker still holds it.
   *
   * @returns `"fenced"` (nothing changed) if another worker took it over;
   * `"wrongtype"` (nothing changed) if NAME:dead or the reply key holds no stream.
   */
  async deadLetter(
    entry: ClaimedEntry,
    error: Arg,
    result?: readonly Arg[],
  ): Promise<CommitOutcome> {
    const keys = [this.stream, this.#startedKey, deadStream(this.stream)];
    const args: Arg[] = [entry.id, "dead", error, String(entry.deliveries)];
    if (result !== undefined && entry.reply !== "") {
      checkFields(result);
      keys.push(entry.reply);
      args.push(...result);
    }
    return await this.#run(keys, args);
  }

  async #run(keys: string[], args: Arg[]): Promise<CommitOutcome> {
    const reply = await COMMIT_SCRIPT.run(
      this.#client,
      keys,
      [this.group, this.consumer, ...args],
    ) as Uint8Array[];
    const outcome = decoder.decode(reply[0]);
    if (outcome === "wrongtype") return outcome;
    this.#held.delete(args[0] as string);
    return outcome === "committed" ? "committed" : "fenced";
  }

  /**
   * The fenced hand-back: entries `ids` (none given: every entry pending for
   * this worker), if this worker still holds them, go to the placeholder
   * consumer HANDED_BACK as idle for years, so that the next `reclaim()` of
   * any worker takes them at once; their delivery count is lowered by one,
   * so a hand-back does not count as a failed delivery; the first `started`
   * of `ids` were started here, and their start count goes down again, as
   * stopping is not a death. When this worker then holds nothing, it leaves
   * the group (XGROUP DELCONSUMER).
   *
   * @returns How many entries were handed back, and whether the consumer left the group.
   */
  async handBack(
    ids: readonly string[] = [],
    started = 0,
  ): Promise<{ handedBack: number; left: boolean }> {
    const reply = await HANDBACK_SCRIPT.run(
      this.#client,
      [this.stream, this.#startedKey],
      [
        this.group,
        this.consumer,
        HANDED_BACK_IDLE,
        HANDED_BACK,
        started,
        ...ids,
      ],
    ) as number[];
    for (const id of ids) this.#held.delete(id);
    if (ids.length === 0) this.#held.clear();
    return { handedBack: Number(reply[0]), left: Number(reply[1]) === 1 };
  }

  /** Stops the heartbeat and closes both clients; what it holds stays pending for others to reclaim. */
  async close(): Promise<void> {
    this.stopHeartbeat();
    // Closing first fails a beat that waits for a connection at once.
    await Promise.all([this.#client.close(), this.#reader.close()]);
    await this.#beating;
    await this.#groupReady?.catch(() => {});
  }
}

function checkFields(fields: readonly Arg[]): void {
  if (fields.length === 0 || fields.length % 2 !== 0) {
    throw new TypeError(
      `Cannot append an entry of ${fields.length} names and values: it needs pairs, at least one`,
    );
  }
}
