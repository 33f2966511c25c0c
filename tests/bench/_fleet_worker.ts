// Copyright the @ocycle/core authors. MIT license.
// One worker process of the fleet benchmark (redis_fleet.ts): runWorker with
// the trivial callback of _fleet_handler.ts, stopped by SIGTERM (finishing
// what it holds). Its log goes to stderr, which the benchmark shows only if
// the worker fails.
//
//   deno run -A --import-map=.ci/import_map.json tests/bench/_fleet_worker.ts \
//     --url redis://127.0.0.1:6379 --stream S [--mode serial] [--pool N]

import { parseArgs } from "@std/cli";
import { runWorker } from "../../redis.ts";

interface Args {
  url: string;
  stream: string;
  mode: string;
  pool: string;
  concurrency: string;
}
// the offline copy of @std/cli has no types
const parse = parseArgs as (
  args: string[],
  options: object,
) => Partial<Args>;
const args = parse(Deno.args, {
  string: ["url", "stream", "mode", "pool", "concurrency"],
});
if (args.url === undefined || args.stream === undefined) {
  throw new TypeError("--url and --stream are required");
}
const mode = (args.mode ?? "serial") as "serial" | "thread" | "process";

const worker = runWorker({
  url: args.url,
  stream: args.stream,
  module: new URL("./_fleet_handler.ts", import.meta.url),
  mode,
  ...(args.pool === undefined ? {} : { pool: Number(args.pool) }),
  ...(args.concurrency === undefined
    ? {}
    : { concurrency: Number(args.concurrency) }),
});
Deno.addSignalListener("SIGTERM", () => void worker.shutdown());
const stats = await worker.finished;
console.log(JSON.stringify(stats));
Deno.exit(0);
