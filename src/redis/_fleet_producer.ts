// Copyright the @ocycle/core authors. MIT license.
// The producer side of the fleet protocol (redis/_fleet.ts): task entries
// XADDed to the chunk stream with the name of this producer's result stream,
// results read back from it with XREAD BLOCK on a connection of its own, each
// once, and deleted once read.

import { type Arg, RedisClient, type RedisClientOptions } from "./_client.ts";
import { RedisError } from "./_errors.ts";
import { Script, xadd, xdel } from "./_streams.ts";
import { REPLY_FIELD, resultStream } from "./_fleet_scripts.ts";

/**
 * Which of the entries ARGV[1..] of KEYS[1] exist: 1 or 0 each. Run in the
 * server so that only the answers travel, never the entries' bytes.
 */
const EXIST_SCRIPT = new Script(`
local out = {}
for i, id in ipairs(ARGV) do
  out[i] = #redis.call('XRANGE', KEYS[1], id, id, 'COUNT', 1)
end
return out
`);

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
    this.#client = new RedisClient(url, options);
    this.#reader = new RedisClient(url, options);
  }

  /** XADDs a task entry (with the reply field) to the chunk stream; returns its id. */
  async submit(fields: readonly Arg[]): Promise<string> {
    const pairs: [Arg, Arg][] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      pairs.push([fields[i]!, fields[i + 1]!]);
    }
    pairs.push([REPLY_FIELD, this.results]);
    return await xadd(this.#client, this.stream, pairs);
  }

  /**
   * The next results (XREAD BLOCK `block` ms), each once; read ones are
   * deleted from the result stream. `[]` when none came in time.
   */
  async read(block = 1000, count = 100): Promise<FleetResult[]> {
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

  /** Of the task entries `ids` of the chunk stream, those no longer in it. */
  async missing(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const flags = await EXIST_SCRIPT.run(this.#client, [this.stream], [
      ...ids,
    ]) as number[];
    return new Set(ids.filter((_, i) => flags[i] === 0));
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

  /** Deletes task entries from the chunk stream (chunks given up on). */
  async remove(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await xdel(this.#client, this.stream, ids);
  }

  /** Deletes this producer's result stream (once nothing more is awaited). */
  async dispose(): Promise<void> {
    await this.#client.command("DEL", this.results);
  }

  /** Closes both clients. */
  async close(): Promise<void> {
    await Promise.all([this.#client.close(), this.#reader.close()]);
  }
}
