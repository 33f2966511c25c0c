// Copyright the @ocycle/core authors. MIT license.
// The stream commands Redis mode uses, typed: entry ids as text (they are
// ASCII), field names as text, field values as bytes; and Lua scripts run by
// their SHA1, sent whole only when the server does not know them (NOSCRIPT).

import type { Arg, RedisClient, Reply } from "./_client.ts";
import { RedisError } from "./_errors.ts";
import { shortAscii } from "../wire/_ascii.ts";

/** One stream entry: its id, and its fields (`null` when the entry was deleted while pending). */
export interface StreamEntry {
  id: string;
  fields: Map<string, Uint8Array> | null;
}

const decoder = new TextDecoder();

function text(reply: Reply): string {
  if (reply instanceof Uint8Array) {
    return shortAscii(reply) ?? decoder.decode(reply);
  }
  if (typeof reply === "string") return reply;
  throw new TypeError(
    `Cannot read a Redis reply as text: received ${typeof reply}`,
  );
}

function list(reply: Reply): Reply[] {
  if (reply === null) return [];
  if (!Array.isArray(reply)) {
    throw new TypeError(
      `Cannot read a Redis reply as an array: received ${typeof reply}`,
    );
  }
  return reply;
}

function entry(reply: Reply): StreamEntry {
  const [id, flat] = list(reply);
  if (flat === null || flat === undefined) {
    return { id: text(id ?? null), fields: null };
  }
  const fields = new Map<string, Uint8Array>();
  const pairs = list(flat);
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    fields.set(text(pairs[i]!), pairs[i + 1] as Uint8Array);
  }
  return { id: text(id ?? null), fields };
}

/**
 * XADD: appends an entry; returns its id.
 *
 * @param fields Field names and values, in order.
 * @param id The entry's id, `*` for the server to choose.
 */
export async function xadd(
  client: RedisClient,
  stream: Arg,
  fields: Iterable<readonly [Arg, Arg]>,
  id: Arg = "*",
): Promise<string> {
  const args: Arg[] = ["XADD", stream, id];
  for (const [name, value] of fields) args.push(name, value);
  return text(await client.command(...args));
}

/** Orders two stream ids ("ms-seq"): negative, 0 or positive. */
export function compareIds(a: string, b: string): number {
  const [am = "0", as = "0"] = a.split("-");
  const [bm = "0", bs = "0"] = b.split("-");
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

/** XGROUP CREATE ... MKSTREAM; `false` when the group exists already. */
export async function xgroupCreate(
  client: RedisClient,
  stream: Arg,
  group: Arg,
  id: Arg = "$",
): Promise<boolean> {
  try {
    await client.command("XGROUP", "CREATE", stream, group, id, "MKSTREAM");
    return true;
  } catch (error) {
    if (error instanceof RedisError && error.code === "BUSYGROUP") return false;
    throw error;
  }
}

/** Options of {@linkcode xreadgroup}. */
export interface XReadGroupOptions {
  /** At most this many entries. */
  count?: number;
  /** Wait up to this many milliseconds for an entry (0: forever); without it, do not wait. */
  block?: number;
  /** `>` for new entries, or an id to read this consumer's pending ones after it. @default {">"} */
  id?: Arg;
}

/** XREADGROUP on one stream: the entries read, `[]` when BLOCK timed out. */
export async function xreadgroup(
  client: RedisClient,
  stream: Arg,
  group: Arg,
  consumer: Arg,
  options: XReadGroupOptions = {},
): Promise<StreamEntry[]> {
  const { count, block, id = ">" } = options;
  const args: Arg[] = ["XREADGROUP", "GROUP", group, consumer];
  if (count !== undefined) args.push("COUNT", count);
  if (block !== undefined) args.push("BLOCK", block);
  args.push("STREAMS", stream, id);
  const streams = list(await client.command(...args));
  const [, entries] = list(streams[0] ?? null);
  return list(entries ?? null).map(entry);
}

/** XACK: how many of `ids` were pending and are now acknowledged. */
export async function xack(
  client: RedisClient,
  stream: Arg,
  group: Arg,
  ids: readonly Arg[],
): Promise<number> {
  return await client.command("XACK", stream, group, ...ids) as number;
}

/** XDEL: how many of `ids` were deleted. */
export async function xdel(
  client: RedisClient,
  stream: Arg,
  ids: readonly Arg[],
): Promise<number> {
  return await client.command("XDEL", stream, ...ids) as number;
}

/** What XAUTOCLAIM returns: where to go on from ("0-0" at the end), the claimed entries, the ids of deleted ones. */
export interface AutoClaim {
  next: string;
  entries: StreamEntry[];
  deleted: string[];
}

/** XAUTOCLAIM: takes entries idle for `minIdle` milliseconds or more for `consumer`. */
export async function xautoclaim(
  client: RedisClient,
  stream: Arg,
  group: Arg,
  consumer: Arg,
  minIdle: number,
  start: Arg = "0-0",
  count = 100,
): Promise<AutoClaim> {
  const [next, entries, deleted] = list(
    await client.command(
      "XAUTOCLAIM",
      stream,
      group,
      consumer,
      minIdle,
      start,
      "COUNT",
      count,
    ),
  );
  return {
    next: text(next ?? null),
    entries: list(entries ?? null).map(entry),
    deleted: list(deleted ?? null).map(text),
  };
}

/**
 * XCLAIM ... JUSTID: resets the idle time of `ids` for `consumer` (a
 * heartbeat for entries it holds); returns the ids it now owns.
 */
export async function xclaimJustId(
  client: RedisClient,
  stream: Arg,
  group: Arg,
  consumer: Arg,
  minIdle: number,
  ids: readonly Arg[],
): Promise<string[]> {
  return list(
    await client.command(
      "XCLAIM",
      stream,
      group,
      consumer,
      minIdle,
      ...ids,
      "JUSTID",
    ),
  ).map(text);
}

/** The summary form of XPENDING. */
export interface PendingSummary {
  count: number;
  consumers: Map<string, number>;
}

/** XPENDING stream group: how many entries are pending, per consumer. */
export async function xpending(
  client: RedisClient,
  stream: Arg,
  group: Arg,
): Promise<PendingSummary> {
  const [count, , , consumers] = list(
    await client.command("XPENDING", stream, group),
  );
  return {
    count: count as number,
    consumers: new Map(
      list(consumers ?? null).map((pair) => {
        const [name, n] = list(pair);
        return [text(name ?? null), Number(text(n ?? null))];
      }),
    ),
  };
}

/** A Lua script run by its SHA1 with EVALSHA, and sent whole with EVAL when the server lacks it. */
export class Script {
  /** The script's source. */
  readonly source: string;
  #sha: Promise<string> | undefined;

  /** @param source The Lua source. */
  constructor(source: string) {
    this.source = source;
  }

  /** The script's SHA1, as Redis names it. */
  sha(): Promise<string> {
    this.#sha ??= crypto.subtle.digest(
      "SHA-1",
      new TextEncoder().encode(this.source),
    ).then((digest) =>
      Array.from(
        new Uint8Array(digest),
        (b) => b.toString(16).padStart(2, "0"),
      ).join("")
    );
    return this.#sha;
  }

  /** Runs the script with `keys` and `args`; EVAL (which caches it) on NOSCRIPT. */
  async run(
    client: RedisClient,
    keys: readonly Arg[],
    args: readonly Arg[] = [],
  ): Promise<Reply> {
    try {
      return await client.command(
        "EVALSHA",
        await this.sha(),
        keys.length,
        ...keys,
        ...args,
      );
    } catch (error) {
      if (!(error instanceof RedisError) || error.code !== "NOSCRIPT") {
        throw error;
      }
      return await client.command(
        "EVAL",
        this.source,
        keys.length,
        ...keys,
        ...args,
      );
    }
  }
}
