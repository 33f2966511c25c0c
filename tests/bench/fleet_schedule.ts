// Copyright the @ocycle/core authors. MIT license.
// The long run of the fault-schedule test (tests/_fleet_schedule.ts): runs
// the schedules of seeds S, S+1, ... for about N seconds (always at least
// one), each against its own redis-server, workers and producer, and reports
// how many schedules and chunks it survived and which seeds failed, each
// failure with its schedule and what the checker saw.
//
//   deno task fleet-schedule --seed 1 --seconds 600
//   deno run -A --import-map=.ci/import_map.json tests/bench/fleet_schedule.ts --seed 7 --seconds 0
//
// `--seconds 0` runs the one schedule of `--seed` (to reproduce a failure);
// `--traffic T` sets each schedule's traffic to T seconds (5 to 8 by
// default); `--harsh` draws harsher schedules (tests/_fleet_schedule.ts's
// makeSchedule); `--verbose` prints each event as it happens.
import { parseArgs } from "@std/cli";
import {
  classify,
  describeReport,
  describeSchedule,
  makeSchedule,
  runSchedule,
} from "../_fleet_schedule.ts";

const args = parseArgs(Deno.args, {
  string: ["seed", "seconds", "traffic"],
  boolean: ["verbose", "harsh"],
  default: { seed: "1", seconds: "300" },
});
for (const name of ["seed", "seconds", "traffic"] as const) {
  const value = args[name];
  if (value !== undefined && !/^\d+$/.test(value)) {
    console.error(
      `--${name} must be a non-negative integer: received ${value}`,
    );
    Deno.exit(2);
  }
}
const first = Number(args.seed);
const seconds = Number(args.seconds);
const traffic = args.traffic === undefined ? undefined : Number(args.traffic);
const start = performance.now();
let schedules = 0, chunks = 0, faults = 0;
const failed: number[] = [];
const kinds = new Map<string, number[]>();
for (let seed = first;; seed++) {
  const schedule = makeSchedule(seed, {
    harsh: args.harsh,
    ...(traffic === undefined ? {} : { seconds: traffic }),
  });
  console.log(describeSchedule(schedule));
  const report = await runSchedule(schedule, {
    ...(args.verbose
      ? { log: (line: string) => console.log(`  ${line}`) }
      : {}),
  });
  schedules++;
  chunks += schedule.chunks;
  faults += schedule.faults.length;
  if (report.problems.length === 0) {
    console.log(`seed ${seed}: ok in ${(report.ms / 1000).toFixed(1)} s`);
  } else {
    failed.push(seed);
    console.log(describeReport(report));
    for (const tag of classify(report)) {
      kinds.set(tag, [...(kinds.get(tag) ?? []), seed]);
    }
  }
  if (performance.now() - start >= seconds * 1000) break;
}
const survived = schedules - failed.length;
console.log(
  `\n${schedules} schedules (seeds ${first}..${
    first + schedules - 1
  }), ${chunks} chunks, ${faults} faults in ${
    Math.round((performance.now() - start) / 1000)
  } s: ${survived} survived, ${failed.length} failed${
    failed.length === 0 ? "" : ` (seeds ${failed.join(", ")})`
  }`,
);
for (const [tag, seeds] of kinds) {
  console.log(`  ${seeds.length}× ${tag} (seeds ${seeds.join(", ")})`);
}
Deno.exit(failed.length === 0 ? 0 : 1);
