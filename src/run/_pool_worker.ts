// Copyright the @ocycle/core authors. MIT license.
// What the pool (run/_pool.ts) keeps of each chunk and of each worker.

import type { Outbox } from "./_outbox.ts";
import type { Job, Transport } from "./_transport.ts";

/** A chunk in the pool. */
export interface PoolJob<P> extends Job<P> {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The worker holding it, or undefined while it waits in the backlog. */
  worker: Worker<P> | undefined;
  /** Whether it was sent: it is in the worker, not in its outbox. */
  sent: boolean;
  settled: boolean;
}

/** Where a worker is in its life. */
export type State = "starting" | "ready" | "ending" | "dead";

export interface Worker<P> {
  readonly index: number;
  transport: Transport<P>;
  state: State;
  /** Chunks sent to it, oldest first; only the first one's clock runs. */
  sent: PoolJob<P>[];
  /** With a batching transport: chunks for it that leave together. */
  readonly outbox: Outbox<PoolJob<P>> | undefined;
  startTimer: ReturnType<typeof setTimeout> | undefined;
}
