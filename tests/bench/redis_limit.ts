// Copyright the @ocycle/core authors. MIT license.
/**
 * The limit Redis mode will be measured against (issue 11): the raw stream
 * loop, with nothing of ocycle but its Redis client (src/fleet/_client.ts over
 * `Deno.connect`). A producer pipelines XADD of `count` entries, each one
 * binary `data` field of the payload, into a stream, keeping at most `window`
 * entries ahead of the acknowledged ones (the bound Redis mode will have too);
 * a consumer on its own connection (a blocking reader holds up everything
 * behind it) reads them with XREADGROUP COUNT `read` BLOCK, and sends XACK and
 * XDEL of what it read in the same write as its next XREADGROUP. The figure is
 * end to end, from the first XADD to the last XACK reply, best of `rounds`,
 * for 64 KiB and 320 000 B payloads. With `--npm`, the same loop with
 * npm:redis (two clients of its own) is measured beside it, for comparison.
 *
 * The script starts its own redis-server (`--save "" --appendonly no`, a
 * temporary `--dir`) on a free loopback port and stops it at the end. Prints
 * one JSON line per figure, then a table.
 *
 * ```sh
 * deno run -A --import-map=.ci/import_map.json tests/bench/redis_limit.ts \
 *   [--rounds 3] [--count 2000] [--read 32] [--window 64] [--npm]
 * ```
 *
 * @module
 */

import { parseArgs } from "@std/cli";
import { RedisClient } from "../../src/fleet/_client.ts";
import {
  xack,
  xdel,
  xgroupCreate,
  xreadgroup,
} from "../../src/fleet/_streams.ts";
import { RedisServer } from "../_redis_server.ts";

const GROUP = "g";

/** Entries per second and MB/s (10^6 bytes) of one round. */
export interface Figures {
  entriesPerSec: number;
  MBps: number;
}

export function figures(n: number, size: number, ms: number): Figures {
  return {
    entriesPerSec: Math.round(n / ms * 1000),
    MBps: Math.round(n * size / ms / 1000 * 10) / 10,
  };
}

/** The limit loop's knobs. */
export interface LoopOptions {
  /** XREADGROUP COUNT. @default {32} */
  read?: number;
  /** Entries added ahead of the acknowledged ones. @default {64} */
  window?: number;
}

/**
 * The limit: one round with our client, two connections, `n` entries of
 * `payload` end to end through a fresh stream `stream` (deleted at the end).
 */
export async function limitLoop(
  url: string,
  stream: string,
  payload: Uint8Array,
  n: number,
  options: LoopOptions = {},
): Promise<Figures> {
  const { read: readCount = 32, window = 64 } = options;
  const producer = await RedisClient.connect(url);
  const consumer = await RedisClient.connect(url);
  try {
    await xgroupCreate(producer, stream, GROUP, "$");
    let acked = 0;
    let wake: (() => void) | undefined;
    const start = performance.now();
    const producing = (async () => {
      const replies: Promise<unknown>[] = [];
      for (let sent = 0; sent < n;) {
        // everything sent in one turn goes out in one write
        const room = Math.min(window - (sent - acked), n - sent);
        if (room <= 0) {
          await new Promise<void>((resolve) => wake = resolve);
          continue;
        }
        for (let i = 0; i < room; i++) {
          replies.push(
            producer.command("XADD", stream, "*", "data", payload),
          );
        }
        sent += room;
        // let the acks come in before topping the window up again
        await new Promise<void>((resolve) => wake = resolve);
      }
      await Promise.all(replies);
    })();
    let read = 0;
    let acks: Promise<number>[] = [];
    while (read < n) {
      const entries = await xreadgroup(consumer, stream, GROUP, "c", {
        count: readCount,
        block: 5000,
      });
      if (entries.length === 0) throw new Error(`nothing to read at ${read}`);
      read += entries.length;
      const ids = entries.map((entry) => entry.id);
      // XACK and XDEL go out in the same write as the next XREADGROUP
      acks.push(
        xack(consumer, stream, GROUP, ids).then((k) => {
          acked += k;
          wake?.();
          return k;
        }),
      );
      void xdel(consumer, stream, ids);
      if (acks.length > 64) acks = [Promise.all(acks).then(sum)];
    }
    const total = sum(await Promise.all(acks));
    const ms = performance.now() - start;
    await producing;
    if (total !== n) throw new Error(`acked ${total} of ${n}`);
    const left = await consumer.command("XLEN", stream);
    if (left !== 0) throw new Error(`${left} entries left in ${stream}`);
    await producer.command("DEL", stream);
    return figures(n, payload.length, ms);
  } finally {
    await producer.close();
    await consumer.close();
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** The same loop with npm:redis (node-redis 4), for comparison. */
async function theirs(
  url: string,
  stream: string,
  payload: Uint8Array,
  n: number,
  options: LoopOptions = {},
): Promise<Figures> {
  const { read: readCount = 32, window = 64 } = options;
  const { createClient, commandOptions } = await import("npm:redis@^4");
  const producer = createClient({ url });
  const consumer = createClient({ url });
  await producer.connect();
  await consumer.connect();
  try {
    await producer.xGroupCreate(stream, GROUP, "$", { MKSTREAM: true });
    const data = Buffer.from(
      payload.buffer,
      payload.byteOffset,
      payload.length,
    );
    let acked = 0;
    let wake: (() => void) | undefined;
    const start = performance.now();
    const producing = (async () => {
      const replies: Promise<unknown>[] = [];
      for (let sent = 0; sent < n;) {
        const room = Math.min(window - (sent - acked), n - sent);
        if (room > 0) {
          // node-redis pipelines the commands of one turn by itself
          for (let i = 0; i < room; i++) {
            replies.push(producer.xAdd(stream, "*", { data }));
          }
          sent += room;
        }
        await new Promise<void>((resolve) => wake = resolve);
      }
      await Promise.all(replies);
    })();
    let read = 0;
    let acks: Promise<number>[] = [];
    while (read < n) {
      const reply = await consumer.xReadGroup(
        commandOptions({ returnBuffers: true }),
        GROUP,
        "c",
        { key: stream, id: ">" },
        { COUNT: readCount, BLOCK: 5000 },
      );
      const entries = reply?.[0]?.messages ?? [];
      if (entries.length === 0) throw new Error(`nothing to read at ${read}`);
      read += entries.length;
      const ids = entries.map((entry: { id: unknown }) => String(entry.id));
      acks.push(
        consumer.xAck(stream, GROUP, ids).then((k: number) => {
          acked += k;
          wake?.();
          return k;
        }),
      );
      void consumer.xDel(stream, ids);
      if (acks.length > 64) acks = [Promise.all(acks).then(sum)];
    }
    const total = sum(await Promise.all(acks));
    const ms = performance.now() - start;
    await producing;
    if (total !== n) throw new Error(`acked ${total} of ${n}`);
    await producer.del(stream);
    return figures(n, payload.length, ms);
  } finally {
    await producer.quit();
    await consumer.quit();
  }
}

async function main(): Promise<void> {
  interface Args {
    rounds: string;
    count: string;
    read: string;
    window: string;
    npm: boolean;
  }
  // the offline copy of @std/cli has no types
  const parse = parseArgs as (
    args: string[],
    options: object,
  ) => Partial<Args>;
  const args = parse(Deno.args, {
    string: ["rounds", "count", "read", "window"],
    boolean: ["npm"],
  });
  const rounds = Number(args.rounds ?? 3);
  const count = Number(args.count ?? 2000);
  const readCount = Number(args.read ?? 32);
  const window = Number(args.window ?? 64);
  for (
    const [name, value] of Object.entries({ rounds, count, readCount, window })
  ) {
    if (!(value >= 1) || !Number.isInteger(value)) {
      throw new RangeError(`--${name} must be a positive integer: ${value}`);
    }
  }

  const loop = { read: readCount, window };

  function print(impl: string, fields: object): void {
    console.log(JSON.stringify({ impl, ...fields }));
  }

  const payloads = [
    { name: "64 KiB", size: 65536 },
    { name: "320 KB", size: 320_000 },
  ];
  const impls = [
    { name: "limit-raw-xadd-xreadgroup-xack ocycle client", fn: limitLoop },
    ...(args.npm
      ? [{ name: "raw-xadd-xreadgroup-xack npm:redis", fn: theirs }]
      : []),
  ];

  const server = await RedisServer.start();
  const rows: { payload: string; impl: string; best: Figures }[] = [];
  try {
    let stream = 0;
    for (const { name, size } of payloads) {
      const payload = new Uint8Array(size);
      for (let at = 0; at < size; at += 65536) {
        crypto.getRandomValues(payload.subarray(at, at + 65536));
      }
      for (const impl of impls) {
        // warm up: JIT, socket buffers, the server's allocator
        await impl.fn(server.url, `s${stream++}`, payload, 100, loop);
      }
      const best = new Map<string, Figures>();
      // the machine is shared: rounds interleave the clients, best of each kept
      for (let round = 0; round < rounds; round++) {
        for (const impl of impls) {
          const got = await impl.fn(
            server.url,
            `s${stream++}`,
            payload,
            count,
            loop,
          );
          const was = best.get(impl.name);
          if (was === undefined || got.entriesPerSec > was.entriesPerSec) {
            best.set(impl.name, got);
          }
        }
      }
      for (const impl of impls) {
        const figures = best.get(impl.name)!;
        print(`${impl.name} ${name}`, {
          payload: size,
          count,
          read: readCount,
          window,
          rounds,
          ...figures,
        });
        rows.push({ payload: name, impl: impl.name, best: figures });
      }
    }
  } finally {
    await server[Symbol.asyncDispose]();
  }

  console.log(
    `\nbest of ${rounds}, ${count} entries, XREADGROUP COUNT ${readCount}, window ${window}:`,
  );
  console.log("| payload | client | entries/s | MB/s |");
  console.log("| ------- | ------ | --------: | ---: |");
  for (const { payload, impl, best } of rows) {
    console.log(
      `| ${payload} | ${impl} | ${best.entriesPerSec} | ${best.MBps} |`,
    );
  }
  console.log(
    "\nRedis mode's mark (issue 11): at least 0.5 of the limit above with 2 workers.",
  );
}

if (import.meta.main) await main();
