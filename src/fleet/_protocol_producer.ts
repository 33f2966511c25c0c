// Copyright the @ocycle/core authors. MIT license.
// The producer side of the fleet protocol (fleet/_protocol.ts): task entries
// added to the chunk stream (idempotent: a transaction marks the producer's
// add key with the XADD) with the name of this producer's result stream, results
// read back from it with XREAD BLOCK on a connection of its own, each once,
// and deleted once read.

import {
  type Arg,
  RedisClient,
  type RedisClientOptions,
  type Reply,
} from "./_client.ts";
import { ErrorReply } from "./_resp.ts";
import { RedisError } from "./_errors.ts";
import { Script, xdel } from "./_streams.ts";
import {
  addedHash,
  REPLY_FIELD,
  RESULTS_TTL,
  resultStream,
  startedBy,
  startedHash,
} from "./_scripts.ts";

/** The field of a task entry that names its add key (workers ignore it). */
const ADD_FIELD = "add";
/** Entries read per page when looking for an add whose reply was lost. */
const FIND_PAGE = 16;
/** The id of an entry added and already gone: no entry has it. */
export const GONE_ENTRY = "0-1";

/**
 * Which of the entries ARGV[1..] of KEYS[1] exist: 1 or 0 each; and, read in
 * the same step, the last id ever added to the result stream KEYS[2] ("0-0"
 * when it does not exist). Run in the server so that only the answers
 * travel, never the entries' bytes.
 */
const EXIST_SCRIPT = new Script(`
local out = {}
for i, id in ipairs(ARGV) do
  out[i] = #redis.call('XRANGE', KEYS[1], id, id, 'COUNT', 1)
end
local last = '0-0'
if redis.call('EXISTS', KEYS[2]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
return {out, last}
`);

/** What `missing()` found: the entries gone, and the result stream's last id when it looked. */
export interface Missing {
  gone: Set<string>;
  /** The result of an entry gone by its commit has an id at most this. */
  fence: string;
}

/** How many results one `read()` takes at most. */
export const READ_COUNT = 100;

const decoder = new TextDecoder();

/** A result read back by a producer. */
export interface FleetResult {
  /** The result entry's id in the result stream. */
  id: string;
  fields: Map<string, Uint8Array>;
}

/** The producer side: submit tasks, read their results back once. */
export class FleetProducer {
  readonly stream: string;
  /** This producer's result stream. */
  readonly results: string;
  readonly #client: RedisClient;
  readonly #reader: RedisClient;
  readonly #added: string;
  /** Add keys sent once: sent again, their add is looked for first. */
  readonly #tried = new Set<string>();
  readonly #started: string;
  #last = "0-0";

  /** @param producer A name unique among the producers of `stream`. */
  constructor(
    url: string,
    stream: string,
    producer: string,
    options?: RedisClientOptions,
  ) {
    this.stream = stream;
    this.results = resultStream(stream, producer);
    this.#added = addedHash(stream, producer);
    this.#started = startedHash(stream);
    this.#client = new RedisClient(url, options);
    this.#reader = new RedisClient(url, options);
  }

  /**
   * Adds a task entry (with the reply field) to the chunk stream, once per
   * `key`: run again with the same key (its reply was lost), it returns the
   * id of the entry added the first time and adds nothing.
   *
   * @param key The add key; by default a new one, so the add is not repeatable.
   */
  async submit(
    fields: readonly Arg[],
    key: string = crypto.randomUUID(),
  ): Promise<string> {
    if (this.#tried.has(key)) {
      const found = await this.#find(key);
      if (found !== undefined) return found;
    }
    this.#tried.add(key);
    // The mark and the entry in one transaction: both or neither. The bytes
    // go straight to XADD: through a Lua script they were copied twice more,
    // which halved the fleet's throughput.
    const c = this.#client;
    const [, , , , exec] = await Promise.all([
      c.command("MULTI"),
      c.command("HSET", this.#added, key, "1"),
      c.command("PEXPIRE", this.#added, RESULTS_TTL),
      c.command(
        "XADD",
        this.stream,
        "*",
        ...fields,
        REPLY_FIELD,
        this.results,
        ADD_FIELD,
        key,
      ),
      c.command("EXEC"),
    ]);
    const id = (exec as Reply[] | null)?.[2];
    if (id instanceof ErrorReply) throw new RedisError("XADD", id.message);
    return id instanceof Uint8Array ? decoder.decode(id) : String(id);
  }

  /**
   * What an add of `key` whose reply was lost did: `undefined` if it did not
   * happen (the mark is absent: add it), its entry's id, or GONE_ENTRY when
   * the entry already left the stream (run and committed: its result comes).
   * Only the entries in flight are in the stream, so the look is short.
   */
  async #find(key: string): Promise<string | undefined> {
    if ((await this.#client.command("HGET", this.#added, key)) === null) {
      return undefined;
    }
    for (let start = "-";;) {
      const page = await this.#client.command(
        "XRANGE",
        this.stream,
        start,
        "+",
        "COUNT",
        FIND_PAGE,
      ) as [Uint8Array, Uint8Array[]][];
      for (const [id, values] of page) {
        for (let i = 0; i + 1 < values.length; i += 2) {
          if (
            decoder.decode(values[i]) === ADD_FIELD &&
            decoder.decode(values[i + 1]) === key
          ) return decoder.decode(id);
        }
      }
      if (page.length < FIND_PAGE) return GONE_ENTRY;
      start = `(${decoder.decode(page[page.length - 1]![0])}`;
    }
  }

  /**
   * Takes back an add of `key` whose reply was lost and whose chunk is no
   * longer wanted: its entry, if it reached the stream, is deleted, so that
   * no worker runs it for nobody.
   */
  async withdraw(key: string): Promise<void> {
    if (!this.#tried.has(key)) return;
    const found = await this.#find(key);
    if (found !== undefined && found !== GONE_ENTRY) await this.remove([found]);
  }

  /** Forgets add keys of chunks settled (no add with them will come again). */
  async forget(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.#tried.delete(key);
    if (keys.length > 0) {
      await this.#client.command("HDEL", this.#added, ...keys);
    }
  }

  /** The id of the last result read: every result up to it has been read. */
  get last(): string {
    return this.#last;
  }

  /**
   * The next results (XREAD BLOCK `block` ms), each once; read ones are
   * deleted from the result stream. `[]` when none came in time.
   */
  async read(block = 1000, count = READ_COUNT): Promise<FleetResult[]> {
    const reply = await this.#reader.command(
      "XREAD",
      "COUNT",
      count,
      "BLOCK",
      block,
      "STREAMS",
      this.results,
      this.#last,
    );
    if (!Array.isArray(reply) || reply.length === 0) return [];
    const [, entries] = reply[0] as [unknown, [Uint8Array, Uint8Array[]][]];
    const out: FleetResult[] = entries.map(([id, flat]) => {
      const fields = new Map<string, Uint8Array>();
      for (let i = 0; i + 1 < flat.length; i += 2) {
        fields.set(decoder.decode(flat[i]!), flat[i + 1]!);
      }
      return { id: decoder.decode(id), fields };
    });
    if (out.length > 0) {
      this.#last = out[out.length - 1]!.id;
      // Past #last, they are never read again: a failed delete (the
      // connection dropped) must not lose them; dispose() deletes the rest.
      await xdel(this.#client, this.results, out.map((r) => r.id)).catch(
        () => {},
      );
    }
    return out;
  }

  /** The server's URL, its password redacted. */
  get url(): string {
    return this.#client.url;
  }

  /** Connections the result reader has made: more than 1 after Redis came back. */
  get connections(): number {
    return this.#reader.connections;
  }

  /**
   * Of the task entries `ids` of the chunk stream, those no longer in it,
   * and the result stream's last id at that moment.
   */
  async missing(ids: readonly string[]): Promise<Missing> {
    const [flags, last] = await EXIST_SCRIPT.run(
      this.#client,
      [this.stream, this.results],
      [...ids],
    ) as [number[], Uint8Array | string];
    return {
      gone: new Set(ids.filter((_, i) => flags[i] === 0)),
      fence: last instanceof Uint8Array ? decoder.decode(last) : String(last),
    };
  }

  /**
   * The consumers of `group` on the chunk stream (XINFO CONSUMERS): their
   * names, entries pending and ms since they last read; `[]` when the group
   * or the stream does not exist.
   */
  async consumers(
    group: string,
  ): Promise<{ name: string; pending: number; idle: number }[]> {
    let reply: unknown;
    try {
      reply = await this.#client.command(
        "XINFO",
        "CONSUMERS",
        this.stream,
        group,
      );
    } catch (error) {
      // No group yet, or no stream: no consumer either.
      if (
        error instanceof RedisError &&
        (error.code === "NOGROUP" || /no such key/i.test(error.serverMessage))
      ) return [];
      throw error;
    }
    return (reply as unknown[][]).map((flat) => {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < flat.length; i += 2) {
        info.set(decoder.decode(flat[i] as Uint8Array), flat[i + 1]);
      }
      const name = info.get("name");
      return {
        name: name instanceof Uint8Array ? decoder.decode(name) : String(name),
        pending: Number(info.get("pending")),
        idle: Number(info.get("idle")),
      };
    }).filter((c) => !c.name.startsWith("ocycle:"));
  }

  /** Deletes task entries from the chunk stream (chunks given up on), and their start counts. */
  async remove(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await Promise.all([
      xdel(this.#client, this.stream, ids),
      this.#client.command(
        "HDEL",
        this.#started,
        ...ids.flatMap((id) => [id, startedBy(id)]),
      ),
    ]);
  }

  /** Deletes this producer's result stream and its adds (once nothing more is awaited). */
  async dispose(): Promise<void> {
    await this.#client.command("DEL", this.results, this.#added);
  }

  /** Closes both clients. */
  async close(): Promise<void> {
    await Promise.all([this.#client.close(), this.#reader.close()]);
  }
}
