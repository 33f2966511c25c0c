// Copyright the @ocycle/core authors. MIT license.
// What a fleet worker reports of its work: a public type, declared in a
// public file of its own so that the worker's private engine and its public
// face (fleet_worker.ts) share it without importing each other.

/** What a fleet worker (`runWorker`) has done, from its start. */
export interface RedisWorkerStats {
  /** Entries read as new. */
  claimed: number;
  /** Entries taken over from a worker that died or stalled. */
  reclaimed: number;
  /** Results sent back. */
  done: number;
  /** Errors sent back or dead-lettered. */
  failed: number;
  /** Outcomes discarded as another worker had taken the entry over. */
  fenced: number;
  /** Entries moved to the dead-letter stream `STREAM:dead`. */
  deadLettered: number;
  /** Entries handed back unfinished, for another worker to take at once. */
  handedBack: number;
  /** Runs started again after a crash or a timeout. */
  retried: number;
}
