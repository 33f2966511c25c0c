// Copyright the @ocycle/core authors. MIT license.
// The producer side of the fleet protocol (redis/_fleet.ts): task entries
// XADDed to the chunk stream with the name of this producer's result stream,
// results read back from it with XREAD BLOCK on a connection of its own, each
// once, and deleted once read.

import { type Arg, RedisClient, type RedisClientOptions } from "./_client.ts";
import { xadd, xdel } from "./_streams.ts";
import { REPLY_FIELD, resultStream } from "./_fleet_scripts.ts";

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
      await xdel(this.#client, this.results, out.map((r) => r.id));
    }
    return out;
  }

  /** Closes both clients. */
  async close(): Promise<void> {
    await Promise.all([this.#client.close(), this.#reader.close()]);
  }
}
