// Copyright the @ocycle/core authors. MIT license.
// The fleet protocol of Redis mode (src/fleet/_protocol.ts) against a real
// redis-server that each test starts on a free loopback port and stops, with
// in-process workers (separate clients, different consumer names). Without
// redis-server the tests are skipped (and say why), except under CI=true,
// where they fail.

import { assert, assertEquals, assertRejects } from "@std/assert";
import { deserialize, serialize } from "node:v8";
import { RedisClient } from "../src/fleet/_client.ts";
import {
  type ClaimedEntry,
  deadStream,
  FleetProducer,
  FleetWorker,
  type FleetWorkerOptions,
} from "../src/fleet/_protocol.ts";
import { xpending } from "../src/fleet/_streams.ts";
import {
  decodeResultEntry,
  decodeTaskEntry,
  encodeResultEntry,
  encodeTaskEntry,
} from "../src/wire/_entries.ts";
import { RedisServer, skipWithoutRedis } from "./_redis_server.ts";

const ignore = skipWithoutRedis("redis_fleet_test.ts");
const STREAM = "jobs";
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const clone = (value: unknown) => new Uint8Array(serialize(value));
const parse = (bytes: Uint8Array) => deserialize(bytes);

/** A server, a producer, an admin client and workers, all closed at the end. */
async function fleet(
  workers: Partial<FleetWorkerOptions>[],
): Promise<{
  url: string;
  producer: FleetProducer;
  admin: RedisClient;
  workers: FleetWorker[];
  [Symbol.asyncDispose](): Promise<void>;
}> {
  const server = await RedisServer.start();
  const producer = new FleetProducer(server.url, STREAM, "p1");
  const admin = await RedisClient.connect(server.url);
  const ws = workers.map((options, i) =>
    new FleetWorker(server.url, {
      stream: STREAM,
      consumer: `w${i}`,
      block: 50,
      heartbeat: 100,
      staleAfter: 300,
      ...options,
    })
  );
  return {
    url: server.url,
    producer,
    admin,
    workers: ws,
    async [Symbol.asyncDispose]() {
      await Promise.all(ws.map((w) => w.close()));
      await producer.close();
      await admin.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

/** Every result that comes within `ms`. */
async function results(producer: FleetProducer, ms = 200) {
  const all = [];
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) all.push(...await producer.read(50));
  return all;
}

/** The one entry of `entries`. */
function one<T>(entries: T[]): T {
  assertEquals(entries.length, 1);
  return entries[0]!;
}

async function assertDrained(admin: RedisClient): Promise<void> {
  assertEquals(await admin.command("XLEN", STREAM), 0);
  assertEquals((await xpending(admin, STREAM, "ocycle")).count, 0);
}

Deno.test({
  name:
    "fleet: a task is claimed by exactly one worker and its result reaches the producer once",
  ignore,
  async fn() {
    await using f = await fleet([{}, {}, {}]);
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    await f.producer.submit(["id", "t1", "raw", bytes]);
    const claims = await Promise.all(f.workers.map((w) => w.claim()));
    const got = claims.flat();
    assertEquals(got.length, 1);
    assertEquals(got[0]!.deliveries, 1);
    assertEquals(got[0]!.fields.get("raw"), bytes);
    assertEquals(got[0]!.reply, `${STREAM}:results:p1`);
    // not trimmed nor acked before the result is in
    assertEquals(await f.admin.command("XLEN", STREAM), 1);
    const holder = f.workers[claims.findIndex((c) => c.length === 1)]!;
    assertEquals(
      await holder.commit(got[0]!, ["id", "t1", "value", "ok"]),
      "committed",
    );
    const out = await results(f.producer);
    assertEquals(out.length, 1);
    assertEquals(text(out[0]!.fields.get("value")), "ok");
    await assertDrained(f.admin);
    // read results are deleted from the result stream too
    assertEquals(await f.admin.command("XLEN", f.producer.results), 0);
    // and the result stream expires a day after its last result
    const ttl = await f.admin.command("PTTL", f.producer.results) as number;
    assert(ttl > 23 * 3600_000 && ttl <= 24 * 3600_000, `PTTL ${ttl}`);
  },
});

Deno.test({
  name:
    "fleet: a worker whose own heartbeat lagged does not take its own entry a second time",
  ignore,
  async fn() {
    await using f = await fleet([{ heartbeat: 0 }]);
    const [a] = f.workers as [FleetWorker];
    await f.producer.submit(["id", "t1"]);
    const entry = one(await a.claim());
    await sleep(350); // stale: no heartbeat ran
    assertEquals(await a.reclaim(), []);
    assertEquals(
      await a.commit(entry, ["id", "t1", "value", "a"]),
      "committed",
    );
    assertEquals((await results(f.producer)).length, 1);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name:
    "fleet: a dead worker's entry is reclaimed after staleAfter and committed once",
  ignore,
  async fn() {
    await using f = await fleet([{}, {}]);
    const [a, b] = f.workers as [FleetWorker, FleetWorker];
    await f.producer.submit(["id", "t1"]);
    const entry = one(await a.claim());
    a.stopHeartbeat(); // dies: no heartbeat, no commit
    assertEquals(await b.reclaim(), []); // not stale yet
    await sleep(350);
    const again = one(await b.reclaim());
    assertEquals(again.id, entry.id);
    assertEquals(again.deliveries, 2);
    assertEquals(
      await b.commit(again, ["id", "t1", "value", "b"]),
      "committed",
    );
    const out = await results(f.producer);
    assertEquals(out.map((r) => text(r.fields.get("value"))), ["b"]);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name: "fleet: a stalled worker that wakes up after being reclaimed is fenced",
  ignore,
  async fn() {
    await using f = await fleet([{}, {}]);
    const [a, b] = f.workers as [FleetWorker, FleetWorker];
    await f.producer.submit(["id", "t1"]);
    const entry = one(await a.claim());
    a.stopHeartbeat(); // SIGSTOP
    await sleep(350);
    const taken = one(await b.reclaim());
    // A wakes before B commits: its heartbeat does not take the entry back
    assertEquals(await a.heartbeatNow(), [entry.id]);
    assertEquals(await a.commit(entry, ["id", "t1", "value", "a"]), "fenced");
    assertEquals(
      await b.commit(taken, ["id", "t1", "value", "b"]),
      "committed",
    );
    // and once more after B committed
    assertEquals(await a.commit(entry, ["id", "t1", "value", "a"]), "fenced");
    const out = await results(f.producer);
    assertEquals(out.map((r) => text(r.fields.get("value"))), ["b"]);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name: "fleet: a live worker's heartbeat keeps its claim past staleAfter",
  ignore,
  async fn() {
    await using f = await fleet([{}, {}]);
    const [a, b] = f.workers as [FleetWorker, FleetWorker];
    await f.producer.submit(["id", "t1"]);
    const entry = one(await a.claim());
    for (let i = 0; i < 4; i++) {
      await sleep(200); // 800 ms in all, well past staleAfter (300 ms)
      assertEquals(await b.reclaim(), []);
    }
    assertEquals(a.held.has(entry.id), true);
    assertEquals(
      await a.commit(entry, ["id", "t1", "value", "a"]),
      "committed",
    );
    const out = await results(f.producer);
    assertEquals(out.map((r) => text(r.fields.get("value"))), ["a"]);
    assertEquals(a.heartbeatError, undefined);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name:
    "fleet: a dead letter lands in NAME:dead with its error, acked and deleted",
  ignore,
  async fn() {
    await using f = await fleet([{}, {}]);
    const [a, b] = f.workers as [FleetWorker, FleetWorker];
    await f.producer.submit(["id", "t1", "raw", "poison"]);
    const entry = one(await a.claim());
    a.stopHeartbeat();
    await sleep(350);
    const again = one(await b.reclaim());
    assertEquals(again.deliveries, 2);
    // the stalled worker cannot dead-letter what it lost
    assertEquals(await a.deadLetter(entry, "late"), "fenced");
    assertEquals(
      await b.deadLetter(again, "Error: boom", ["id", "t1", "error", "boom"]),
      "committed",
    );
    const dead = await f.admin.command("XRANGE", deadStream(STREAM), "-", "+");
    const [[, fields]] = dead as [Uint8Array, Uint8Array[]][] as [
      [Uint8Array, Uint8Array[]],
    ];
    assertEquals((dead as unknown[]).length, 1);
    const flat = fields.map(text);
    // The add key the producer's transaction marked (a fresh one per submit).
    const at = flat.indexOf("add");
    assert(at > 0 && /^[0-9a-f-]{36}$/.test(flat[at + 1]!), flat.join(" "));
    flat.splice(at, 2);
    assertEquals(flat, [
      "id",
      "t1",
      "raw",
      "poison",
      "reply",
      `${STREAM}:results:p1`,
      "error",
      "Error: boom",
      "worker",
      "w1",
      "deliveries",
      "2",
    ]);
    const out = await results(f.producer);
    assertEquals(out.map((r) => text(r.fields.get("error"))), ["boom"]);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name:
    "fleet: wire entries round trip, submitted before any worker made the group",
  ignore,
  async fn() {
    await using f = await fleet([{}, {}]);
    const info = {
      index: 0,
      offset: 0,
      length: 256,
      t0: 1_764_000_000_000,
      reason: "size" as const,
      final: true,
    };
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
    await f.producer.submit(
      encodeTaskEntry("p1:0", info, { kind: "bytes" }, bytes, clone),
    );
    const [a] = f.workers as [FleetWorker];
    const entry = one(await a.claim());
    const task = decodeTaskEntry(entry.fields, parse);
    assertEquals(task.id, "p1:0");
    assertEquals(task.chunk, bytes);
    assertEquals(
      await a.commit(
        entry,
        encodeResultEntry(
          task.id,
          { worker: a.consumer, value: { n: 256 } },
          clone,
        ),
      ),
      "committed",
    );
    const out = await results(f.producer);
    assertEquals(out.map((r) => decodeResultEntry(r.fields, parse)), [
      { id: "p1:0", worker: "w0", value: { n: 256 } },
    ]);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name:
    "fleet: an entry without a reply stream cannot be committed, only dead-lettered",
  ignore,
  async fn() {
    await using f = await fleet([{}]);
    const [a] = f.workers as [FleetWorker];
    await f.admin.command("XADD", STREAM, "*", "id", "stray");
    const entry = one(await a.claim());
    assertEquals(entry.reply, "");
    await assertRejects(
      () => a.commit(entry, ["id", "stray", "value", "x"]),
      TypeError,
      "names no 'reply' stream",
    );
    assertEquals(
      await a.deadLetter(entry, "no reply", ["id", "stray"]),
      "committed",
    );
    assertEquals(await f.admin.command("XLEN", deadStream(STREAM)), 1);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name:
    "fleet: prune() removes the consumers of killed workers that hold nothing, never one that holds an entry",
  ignore,
  async fn() {
    await using f = await fleet([
      { consumer: "pruner", pruneAfter: 200 },
      { consumer: "dead-idle" },
      { consumer: "dead-holding" },
    ]);
    const [pruner, idle, holding] = f.workers as [
      FleetWorker,
      FleetWorker,
      FleetWorker,
    ];
    await f.producer.submit(["id", "t1"]);
    await f.producer.submit(["id", "t2"]);
    one(await holding.claim(1));
    holding.stopHeartbeat(); // killed with the entry
    const done = one(await idle.claim(1));
    assertEquals(
      await idle.commit(done, ["id", "t2", "value", "v"]),
      "committed",
    );
    idle.stopHeartbeat(); // killed, holding nothing
    const names = async () =>
      ((await f.admin.command(
        "XINFO",
        "CONSUMERS",
        STREAM,
        "ocycle",
      )) as Uint8Array[][]).map((c) => text(c[1])).sort();
    assertEquals(await names(), ["dead-holding", "dead-idle"]);
    assertEquals(await pruner.prune(), 0); // not idle long enough yet
    await sleep(300);
    assertEquals(await pruner.prune(), 1);
    assertEquals(await names(), ["dead-holding"]);
    assertEquals((await xpending(f.admin, STREAM, "ocycle")).count, 1);
  },
});

Deno.test({
  name:
    "fleet: reclaim() follows XAUTOCLAIM's cursor to a dead worker's entry behind many live pending ones",
  ignore,
  async fn() {
    // w0 lives (its heartbeat keeps 400 entries fresh), w1 died holding the
    // last one; w2 reclaims one entry at a time: each XAUTOCLAIM ... COUNT 1
    // scans about 10 pending entries, so from 0-0 alone it never gets there.
    await using f = await fleet([
      { heartbeat: 50, count: 400 },
      { heartbeat: 0 },
      {},
    ]);
    const [live, dead, heir] = f.workers as [
      FleetWorker,
      FleetWorker,
      FleetWorker,
    ];
    await live.ensureGroup();
    await f.admin.pipeline(
      Array.from(
        { length: 400 },
        (_, i) => ["XADD", STREAM, "*", "id", `l${i}`],
      ),
    );
    let held = 0;
    while (held < 400) held += (await live.claim(400 - held)).length;
    await f.producer.submit(["id", "stranded"]);
    const stranded = one(await dead.claim(1));
    await sleep(400); // past staleAfter (300 ms) for the dead one only
    let found: string | undefined;
    for (let i = 0; i < 3 && found === undefined; i++) {
      const got = await heir.reclaim(1);
      assert(
        got.every((e) => e.id === stranded.id),
        `took a live worker's entry: ${got.map((e) => e.id)}`,
      );
      found = got[0]?.id;
    }
    assertEquals(found, stranded.id, "the dead worker's entry was reached");
    assertEquals(live.held.size, 400);
  },
});

Deno.test({
  name:
    "fleet: submit() with the same add key adds once and returns the first id (an add cut off in flight, run again)",
  ignore,
  async fn() {
    await using f = await fleet([]);
    const first = await f.producer.submit(["id", "t1"], "k1");
    const again = await f.producer.submit(["id", "t1"], "k1");
    assertEquals(again, first);
    assertEquals(await f.admin.command("XLEN", STREAM), 1);
    const other = await f.producer.submit(["id", "t1"], "k2");
    assert(other !== first, "another key adds another entry");
    assertEquals(await f.admin.command("XLEN", STREAM), 2);
    // Forgotten keys (chunks settled) go from the server.
    await f.producer.forget(["k1", "k2"]);
    assertEquals(
      await f.admin.command("EXISTS", `${STREAM}:added:p1`),
      0,
    );
  },
});

Deno.test({
  name:
    "fleet: start() counts the workers that started an entry; a hand-back of a started entry uncounts it; maxStalls of them make it poison",
  ignore,
  async fn() {
    await using f = await fleet([
      { maxStalls: 2 },
      { maxStalls: 2 },
      { maxStalls: 2 },
    ]);
    const [a, b, c] = f.workers as [FleetWorker, FleetWorker, FleetWorker];
    await f.producer.submit(["id", "t1"]);
    const started = async (id: string) =>
      Number(
        text(
          (await f.admin.command("HGET", `${STREAM}:started`, id) ??
            undefined) as Uint8Array | undefined,
        ) || "0",
      );
    const entry = one(await a.claim());
    assertEquals(await a.start(entry), { outcome: "started", before: 0 });
    assertEquals(await started(entry.id), 1);
    // b holds nothing yet: its start is fenced, and counts nothing.
    assertEquals(await b.start(entry), { outcome: "fenced", before: 0 });
    // a stops: handed back as started, the count goes down again.
    assertEquals((await a.handBack([entry.id], 1)).handedBack, 1);
    assertEquals(await started(entry.id), 0);
    // Two workers start it and vanish (no heartbeat): the third start is poison.
    a.stopHeartbeat();
    b.stopHeartbeat();
    const e1 = one(await b.reclaim());
    assertEquals((await b.start(e1)).outcome, "started");
    await sleep(350);
    const e2 = one(await a.reclaim());
    assertEquals(await a.start(e2), { outcome: "started", before: 1 });
    await sleep(350);
    const e3 = one(await c.reclaim());
    assertEquals(await c.start(e3), { outcome: "poison", before: 2 });
    assertEquals(await c.deadLetter(e3, "poison"), "committed");
    assertEquals(await f.admin.command("HLEN", `${STREAM}:started`), 0);
    await assertDrained(f.admin);
  },
});

Deno.test({
  name:
    "fleet: a start() run again after its reply was lost (the server frozen past the command deadline) counts once",
  ignore,
  async fn() {
    await using f = await fleet([{
      maxStalls: 2,
      heartbeat: 0,
      client: { commandTimeout: 300, connectTimeout: 2000 },
    }, {}]);
    const [a, b] = f.workers as [FleetWorker, FleetWorker];
    await f.producer.submit(["id", "t0"]);
    await f.producer.submit(["id", "t1"]);
    const started = async (id: string) =>
      Number(
        text(
          (await f.admin.command("HGET", `${STREAM}:started`, id) ??
            undefined) as Uint8Array | undefined,
        ) || "0",
      );
    const [first, entry] = await a.claim(2) as [ClaimedEntry, ClaimedEntry];
    // The script is loaded (EVALSHA finds it when the server thaws).
    assertEquals((await a.start(first)).outcome, "started");
    assertEquals(
      await a.commit(first, ["id", "t0", "value", "a"]),
      "committed",
    );
    const info = text(await f.admin.command("INFO", "server") as Uint8Array);
    const pid = Number(/process_id:(\d+)/.exec(info)![1]);
    // START is written to a frozen server: no reply within the deadline,
    // the connection is torn down; the server runs it once thawed.
    Deno.kill(pid, "SIGSTOP");
    try {
      await assertRejects(() => a.start(entry), Error, "commandTimeout");
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    await f.admin.command("PING");
    // The worker tries it again (fleet/_worker_outcomes.ts): counted once.
    assertEquals(await a.start(entry), { outcome: "started", before: 0 });
    assertEquals(await started(entry.id), 1);
    // So one worker vanishing with it leaves the next one a start (maxStalls 2).
    await sleep(350);
    const again = one(await b.reclaim());
    assertEquals(await b.start(again), { outcome: "started", before: 1 });
    assertEquals(await started(entry.id), 2);
    assertEquals(
      await b.commit(again, ["id", "t1", "value", "b"]),
      "committed",
    );
    assertEquals(await f.admin.command("HLEN", `${STREAM}:started`), 0);
    await assertDrained(f.admin);
  },
});
