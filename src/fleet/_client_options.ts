// Copyright the @ocycle/core authors. MIT license.
// The options of the Redis client (fleet/_client.ts): types only, so nothing
// here is loaded.

/** Options of the Redis client (`RedisClient`). */
export interface RedisClientOptions {
  /**
   * How long a command waits for a connection (the first, or the next after a
   * drop) before it fails, in ms; also bounds one attempt to connect.
   *
   * @default {5000}
   */
  connectTimeout?: number;
  /**
   * The first delay before reconnecting, in ms, doubled by each failed attempt
   * up to `maxDelay`, each drawn between half and all of that (jitter).
   *
   * @default {50}
   */
  minDelay?: number;
  /** The longest delay between two attempts to connect, in ms. @default {2000} */
  maxDelay?: number;
  /**
   * How long a connection may give no reply while commands wait for one, in
   * milliseconds, beyond the `BLOCK` of a blocking read waiting first; then
   * it is torn down (its commands fail) and another is made.
   *
   * @default {5000}
   */
  commandTimeout?: number;
  /** PEM certificates to trust for `rediss://`, beside the system's. */
  caCerts?: string[];
}
