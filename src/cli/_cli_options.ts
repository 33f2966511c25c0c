// Copyright the @ocycle/core authors. MIT license.
// What the `ocycle` command line comes to, for its two commands: types only,
// so that the parser (_args.ts) and the checker (_check.ts) share them without
// importing each other.

import type { ChildPermissions } from "../emitter.ts";

/** Where a local pool runs the handler: `--mode`. */
export type LocalMode = "process" | "thread" | "serial";

/** `--redis` and its companions: the fleet a producer sends its chunks to. */
export interface CliRedis {
  url: string;
  stream: string;
  group: string | undefined;
  inFlight: number | undefined;
}

/** Everything the command line said. */
export interface CliOptions {
  size: number;
  clip: boolean;
  hop: number | undefined;
  pool: number;
  exec: string[] | undefined;
  execText: string | undefined;
  module: string | undefined;
  exportName: string;
  mode: LocalMode;
  allow: ChildPermissions;
  timeout: number | undefined;
  retries: number | undefined;
  retryDelay: number | undefined;
  /** With `--redis`: the chunks go to a fleet of workers, nothing runs here. */
  redis: CliRedis | undefined;
  keepOrder: boolean;
  /** `--keep-failed`: a failed command's output is written all the same. */
  keepFailed: boolean;
  quiet: boolean;
  help: boolean;
}

/** Everything `ocycle worker` was told. */
export interface WorkerCliOptions {
  url: string;
  stream: string;
  group: string | undefined;
  module: string;
  exportName: string;
  name: string | undefined;
  mode: LocalMode;
  /** `undefined`: runWorker's default, the CPUs. */
  pool: number | undefined;
  allow: ChildPermissions;
  timeout: number | undefined;
  quiet: boolean;
  help: boolean;
}
