// Copyright the @ocycle/core authors. MIT license.
// What Redis mode's producer (run/_redis.ts) is made from: the checked
// `redis` option, and the settings of the runner.

import type { ChunkLayout } from "../wire/_layout.ts";

/** The checked `redis` option, with defaults; `undefined` outside redis mode. */
export interface RedisSettingsOption {
  readonly url: string;
  readonly stream: string;
  readonly group: string;
  readonly inFlight: number;
}

/** What the producer of Redis mode is made from. */
export interface RedisSettings {
  /** The emitter's class name, for messages. */
  readonly owner: string;
  /** `redis://` or `rediss://` URL of the server. */
  readonly url: string;
  /** The chunk stream's key. */
  readonly stream: string;
  /** Chunks in flight across the fleet. */
  readonly inFlight: number;
  /** How chunks are rebuilt by the workers. */
  readonly layout: ChunkLayout;
  /** Milliseconds a chunk's result may take from when it was added; Infinity for no limit. */
  readonly timeout: number;
  /** Attempts after the first for a chunk that crashed or timed out (a lost entry is added again free: docs/fleet.md). */
  readonly retries: number;
  /** Milliseconds before the first retry, doubled for each next one. */
  readonly retryDelay: number;
  /** The consumer group the workers read in, to tell when none does. */
  readonly group: string;
  /** Says what no chunk can carry; by default on stderr. */
  readonly log?: (line: string) => void;
  /** Milliseconds without a result, chunks waiting, before the group is looked at. @default {10000} */
  readonly quietAfter?: number;
  /** Milliseconds Redis may stay unreachable before chunks in flight are added again under `retries` or failed. @default {30000} */
  readonly unreachableAfter?: number;
  /** Milliseconds a Redis connection may give no reply while commands wait (the client's). @default {5000} */
  readonly commandTimeout?: number;
}
