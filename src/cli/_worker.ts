// Copyright the @ocycle/core authors. MIT license.
// `ocycle worker`: one worker of a Redis fleet as a command. It
// runs runWorker with the handler module it was started with, until SIGINT or
// SIGTERM: the first one stops the claiming, lets the running chunks finish
// and hands the rest back to the group; a second one hands back everything at
// once. Then one line of the worker's counts on stderr, and the exit code of
// the signal, as for a run of `ocycle` that a signal stopped.

import { closeOnSignals } from "../close_on_signals.ts";
import {
  type RedisWorker,
  type RedisWorkerOptions,
  type RedisWorkerStats,
  runWorker,
} from "../fleet_worker.ts";
import { parseWorkerArgs, UsageError, type WorkerCliOptions } from "./_args.ts";
import { usageError } from "./_check.ts";
import { WORKER_HELP } from "./_help.ts";
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_SIGNAL,
  EXIT_USAGE,
  findModule,
  message,
  report,
  say,
} from "./_common.ts";

const COMMAND = "ocycle worker";

/** Milliseconds a worker may take to hand back after a second signal. */
const ABORT_GRACE = 5000;

/**
 * Runs `ocycle worker` with the arguments after `worker`, and resolves to the
 * exit code once the worker has stopped.
 */
export async function runWorkerCli(args: readonly string[]): Promise<number> {
  let options: WorkerCliOptions;
  try {
    options = parseWorkerArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    report(
      `${error.message}\nRun "ocycle worker --help" for the options.`,
      COMMAND,
    );
    return EXIT_USAGE;
  }
  if (options.help) {
    Deno.stdout.writeSync(new TextEncoder().encode(WORKER_HELP));
    return EXIT_OK;
  }
  const module = await findModule(options.module, COMMAND);
  if (module === undefined) return EXIT_USAGE;

  const started = performance.now();
  // The worker's own lines, "[ocycle worker NAME] ...", and the command's:
  // those logged before runWorker returns wait for it to say its name.
  let name: string | undefined = undefined;
  const early: string[] = [];
  const tell = (line: string) => {
    if (name === undefined) early.push(line);
    else say(`[${COMMAND} ${name}] ${line}`);
  };
  const log = (line: string) => {
    // The summary below says it in words.
    if (line.startsWith("stopped: {")) return;
    if (options.quiet && line.startsWith("started: ")) return;
    tell(line);
  };
  let worker: RedisWorker;
  try {
    worker = startWorker(options, module, log);
  } catch (error) {
    report(
      error instanceof UsageError
        ? `${error.message}\nRun "ocycle worker --help" for the options.`
        : message(error),
      COMMAND,
    );
    return EXIT_USAGE;
  }
  name = worker.name;
  for (const line of early.splice(0)) tell(line);

  let stoppedBy: Deno.Signal | undefined;
  let stats: RedisWorkerStats;
  let failure: unknown;
  // After a second signal the worker gets ABORT_GRACE to hand back; past it
  // (Redis unreachable: each try waits for a connection) the command ends,
  // and what it held goes to the others once stale, as a killed worker's.
  let giveUp = () => {};
  const gaveUp = new Promise<"late">((resolve) =>
    giveUp = () => resolve("late")
  );
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  {
    using _signals = closeOnSignals({
      close: () => worker.shutdown().then(() => {}),
      abort: (reason) => {
        graceTimer = setTimeout(giveUp, ABORT_GRACE);
        return worker.abort(reason).then(() => {});
      },
    }, {
      onSignal: (signal, action) => {
        stoppedBy ??= signal;
        tell(
          action === "close"
            ? `${signal}: taking no more chunks; finishing the running ones and handing the others back (a second ${signal} hands back everything now)`
            : `${signal} again: handing back everything now`,
        );
      },
    });
    try {
      const outcome = await Promise.race([worker.finished, gaveUp]);
      if (outcome === "late") {
        tell(
          `could not hand back within ${
            ABORT_GRACE / 1000
          } s of the second signal; stopping anyway: other workers take over what it held once it is stale`,
        );
        stats = worker.stats();
      } else stats = outcome;
    } catch (error) {
      // runWorker has logged it.
      failure = error;
      stats = worker.stats();
    } finally {
      clearTimeout(graceTimer);
    }
  }
  if (!options.quiet || failure !== undefined || stoppedBy !== undefined) {
    const seconds = (performance.now() - started) / 1000;
    tell(
      `${summary(stats)} over ${seconds.toFixed(1)} s${
        stoppedBy === undefined ? "" : `; stopped by ${stoppedBy}`
      }`,
    );
  }
  if (failure !== undefined) return EXIT_FAILED;
  return stoppedBy === undefined
    ? EXIT_OK
    : EXIT_SIGNAL[stoppedBy] ?? EXIT_FAILED;
}

/**
 * Starts the worker of a command line. runWorker checks its options before
 * it starts anything, and is the only one to: a refusal comes back as a
 * UsageError that names the flag and what the user typed.
 *
 * @param options What parseWorkerArgs returned.
 * @throws {UsageError} If runWorker refuses an option.
 */
export function startWorker(
  options: WorkerCliOptions,
  module: URL | string,
  log: (line: string) => void,
): RedisWorker {
  try {
    return runWorker(workerOptions(options, module, log));
  } catch (error) {
    throw usageError(error, options);
  }
}

/** runWorker's options, from the command line's. */
function workerOptions(
  options: WorkerCliOptions,
  module: URL | string,
  log: (line: string) => void,
): RedisWorkerOptions {
  return {
    url: options.url,
    stream: options.stream,
    ...(options.group === undefined ? {} : { group: options.group }),
    module,
    exportName: options.exportName,
    mode: options.mode,
    ...(options.pool === undefined ? {} : { pool: options.pool }),
    ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
    ...(options.mode === "process" ? { permissions: options.allow } : {}),
    ...(options.name === undefined ? {} : { name: options.name }),
    log,
  };
}

/** The worker's counts, in one line. */
function summary(stats: RedisWorkerStats): string {
  return `${stats.claimed} chunks claimed (${stats.reclaimed} taken over from stalled workers): ${stats.done} done, ${stats.failed} failed, ${stats.retried} retried, ${stats.deadLettered} dead-lettered, ${stats.fenced} late (fenced), ${stats.handedBack} handed back`;
}
