// Copyright the @ocycle/core authors. MIT license.
// The fault-schedule test of Redis mode (issue 15; tests/_fleet_schedule.ts):
// a few fixed seeds, each a real redis-server, worker processes, a producer
// and a seeded schedule of faults, checked under the default options; their
// schedules between them hold every kind of fault, a restart that keeps the
// broker's data and one that loses it, a poison chunk, both producers and a
// wide inFlight. The checker itself is tested first, on made-up observations,
// so that each promise it checks is known to fail when broken. The long run
// is tests/bench/fleet_schedule.ts (deno task fleet-schedule).

import { assert, assertEquals, assertNotEquals } from "@std/assert";
import {
  check,
  describeReport,
  describeSchedule,
  FAULT_KINDS,
  makeSchedule,
  type Observed,
  runSchedule,
  type Schedule,
} from "./_fleet_schedule.ts";
import { skipWithoutRedis } from "./_redis_server.ts";
import { chunkBytes, fnv1a } from "./fixtures/redis/schedule_handler.ts";

const LINUX = Deno.build.os === "linux";
const ignore = skipWithoutRedis("fleet_schedule_test.ts") || !LINUX;

/**
 * The seeds run here. Between them they hold every kind of fault, and each
 * failed against the code before issue 15's fixes: 7 lost chunks to a restart
 * without data, 39 too (under -k, with a poison chunk), 56 failed adds cut off
 * by an AOF restart and dead-lettered a chunk of a killed worker.
 */
const SEEDS = [7, 39, 56];
/** Milliseconds a producer may take past its traffic here. */
const DRAIN = 40_000;

/** What a run that kept every promise of `s` would have seen. */
function clean(s: Schedule): Observed {
  const done = [];
  for (let i = 0; i < s.chunks; i++) {
    if (i === s.poison) continue;
    const hash = fnv1a(chunkBytes(s.seed, i, s.size, false));
    done.push({ index: i, result: { index: i, hash } });
  }
  return {
    finished: true,
    exitCode: s.producer === "cli" && s.poison !== undefined ? 1 : 0,
    done,
    errors: s.poison === undefined
      ? []
      : [{ index: s.poison, message: "poison" }],
    xlen: 0,
    pending: 0,
    dead: s.poison === undefined ? [] : [s.poison],
    lostData: false,
    stuckWorkers: [],
  };
}

function schedule(over: Partial<Schedule>): Schedule {
  return {
    seed: 5,
    producer: "library",
    workers: 2,
    aof: false,
    chunks: 20,
    size: 64,
    rate: 10,
    inFlight: undefined,
    poison: undefined,
    harsh: false,
    faults: [],
    ...over,
  };
}

Deno.test("fault schedule: a seed makes one schedule, always the same", () => {
  assertEquals(makeSchedule(42), makeSchedule(42));
  assertEquals(
    describeSchedule(makeSchedule(42)),
    describeSchedule(makeSchedule(42)),
  );
  assertNotEquals(makeSchedule(42), makeSchedule(43));
  assertNotEquals(makeSchedule(42), makeSchedule(42, { harsh: true }));
  for (let n = 1; n <= 400; n++) {
    const seed = n > 200 ? n - 200 : n;
    const s = makeSchedule(seed, { harsh: n > 200 });
    // Outages stay well within the producer's 30 s for an unreachable server.
    for (const f of s.faults) {
      if (f.kind === "stop-server") assert(f.ms <= 9000);
      if (f.kind === "restart-server") assert(f.down <= 4000);
    }
    // Server faults never overlap: one ends half a second before the next.
    let free = 0;
    for (const f of s.faults) {
      if (f.kind !== "stop-server" && f.kind !== "restart-server") continue;
      assert(f.at >= free, `seed ${seed}: overlapping server faults`);
      free = f.at + (f.kind === "stop-server" ? f.ms : f.down) + 500;
    }
    assert(s.poison === undefined || (s.poison >= 0 && s.poison < s.chunks));
    // Only the library's onDone can be slowed; data kept only with AOF.
    for (const f of s.faults) {
      if (f.kind === "slow-done") assertEquals(s.producer, "library");
      if (f.kind === "restart-server" && f.keep) assert(s.aof);
    }
  }
});

Deno.test("fault schedule: the seeds of this file hold every kind of fault", () => {
  const seen = new Set<string>();
  for (const seed of SEEDS) {
    const s = makeSchedule(seed);
    for (const f of s.faults) {
      seen.add(f.kind);
      if (f.kind === "restart-server") {
        seen.add(f.keep ? "AOF kept" : "data lost");
      }
    }
    seen.add(s.producer);
    if (s.poison !== undefined) seen.add("poison");
    if ((s.inFlight ?? 64) > 100) seen.add("inFlight > 100");
  }
  for (
    const kind of [
      ...FAULT_KINDS,
      "AOF kept",
      "data lost",
      "library",
      "cli",
      "poison",
      "inFlight > 100",
    ]
  ) {
    assert(seen.has(kind), `no seed of ${SEEDS} has ${kind}`);
  }
});

Deno.test("fault schedule: the checker finds each broken promise", () => {
  const plain = schedule({});
  const cli = schedule({ producer: "cli", poison: 7 });
  const poisoned = schedule({ poison: 3 });
  for (const s of [plain, cli, poisoned]) assertEquals(check(s, clean(s)), []);
  const broken = (
    s: Schedule,
    change: (o: Observed) => void,
    says: string,
  ) => {
    const seen = clean(s);
    change(seen);
    const problems = check(s, seen);
    assert(
      problems.some((p) => p.includes(says)),
      `expected "${says}" in ${JSON.stringify(problems)}`,
    );
  };
  broken(plain, (o) => o.done.push(o.done[4]!), "settled more than once");
  broken(plain, (o) => o.done.splice(4, 1), "never reached onDone");
  broken(
    plain,
    (o) => o.errors.push({ index: 4, message: "x" }),
    "not poison failed",
  );
  broken(plain, (o) => {
    o.done[4] = { index: 4, result: { index: 4, hash: "00000000" } };
  }, "wrong result");
  broken(plain, (o) => {
    o.done[4] = {
      index: 4,
      result: { index: 5, hash: o.done[4]!.result.hash },
    };
  }, "wrong result");
  broken(
    plain,
    (o) => o.done.push({ index: 99, result: { index: 99, hash: "" } }),
    "never written",
  );
  broken(plain, (o) => o.xlen = 2, "left in the stream");
  broken(plain, (o) => o.pending = 1, "left pending");
  broken(plain, (o) => o.dead = [4], "were dead-lettered");
  broken(plain, (o) => o.finished = false, "did not finish");
  broken(plain, (o) => o.exitCode = 1, "exited 1");
  broken(plain, (o) => o.stuckWorkers = ["w0.0"], "did not stop");
  // -k: in input order.
  broken(cli, (o) => {
    [o.done[2], o.done[3]] = [o.done[3]!, o.done[2]!];
  }, "-k wrote chunk");
  broken(cli, (o) => o.exitCode = 0, "exited 0");
  // The poison chunk: onError once, never onDone, dead-lettered once.
  broken(poisoned, (o) => o.errors = [], "reached onError 0×");
  broken(poisoned, (o) => o.errors.push(o.errors[0]!), "reached onError 2×");
  broken(poisoned, (o) => {
    o.done.push({ index: 3, result: { index: 3, hash: "" } });
  }, "reached onDone 1×");
  broken(poisoned, (o) => o.dead = [], "0× in the dead-letter stream");
  broken(poisoned, (o) => o.dead = [3, 3], "2× in the dead-letter stream");
  // After a restart that lost the broker's data the dead letter may be gone,
  // but every other chunk's result is still expected.
  const lost = { ...clean(poisoned), lostData: true, dead: [] };
  assertEquals(check(poisoned, lost), []);
  broken(poisoned, (o) => {
    o.lostData = true;
    o.done.splice(0, 1);
  }, "never reached onDone");
});

for (const seed of SEEDS) {
  const s = makeSchedule(seed);
  Deno.test({
    name:
      `fault schedule: seed ${seed} (${s.producer}, ${s.faults.length} faults${
        s.poison === undefined ? "" : ", poison"
      }) keeps every promise`,
    ignore,
    async fn() {
      const report = await runSchedule(s, { drain: DRAIN });
      if (report.problems.length > 0) throw new Error(describeReport(report));
    },
  });
}
