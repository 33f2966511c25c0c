// Copyright the @ocycle/core authors. MIT license.
// The project's own Redis client, for Redis mode: one connection,
// commands pipelined (every command of a turn goes out in one write, replies
// matched in order), bulk strings as bytes, AUTH and SELECT from the URL, and
// reconnection with the backoff of run/_retry_policy.ts. Commands in flight
// when the connection drops fail (the caller decides whether to retry);
// commands sent while it is down wait for the next connection up to
// `connectTimeout`. Every command has a deadline: a connection that gives no
// reply for `commandTimeout` (plus the BLOCK of a blocking read at its head)
// while commands wait is torn down as dead, so a server that stops answering
// (paused, packets dropped) fails them as one that refuses connections does.
// A blocking command holds up those behind it: it wants a client of its own.

import {
  type Arg,
  blockOf,
  CommandBuffer,
  commandName,
  ErrorReply,
  type Reply,
  ReplyDecoder,
} from "./_resp.ts";
import { RedisConnectionError, RedisError } from "./_errors.ts";
import { parseRedisUrl, type RedisTarget } from "./_url.ts";
import { backoff, COMMAND_TIMEOUT } from "../run/_retry_policy.ts";
import type { RedisClientOptions } from "./_client_options.ts";

export type { Arg, RedisClientOptions, Reply };

/** A command on its way: waiting for a connection, or written and waiting for its reply. */
interface Pending {
  name: string;
  /** Its encoded size, while it waits in the fill buffer; 0 once written. */
  size: number;
  /** Milliseconds the server may hold it before answering (a blocking read's BLOCK). */
  block: number;
  resolve(reply: Reply): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** The longest delay a timer takes, in ms; a longer one fires at once. */
const MAX_TIMER = 2 ** 31 - 1;
/** A bulk string this long or longer is read straight into its own buffer. */
const DIRECT_READ = 16 * 1024;
const READ_SIZE = 64 * 1024;

/** One Redis connection that reconnects by itself; see the module notes. */
export class RedisClient {
  /** The server's URL, its password redacted. */
  readonly url: string;
  readonly #target: RedisTarget;
  readonly #connectTimeout: number;
  readonly #minDelay: number;
  readonly #maxDelay: number;
  readonly #commandTimeout: number;
  readonly #caCerts: string[] | undefined;
  #state: "connecting" | "ready" | "closed" = "connecting";
  #conn: Deno.Conn | null = null;
  /** Commands not written yet, in order. */
  #waiting: Pending[] = [];
  /** Their bytes, in the same order, for the next write. */
  #fill = new CommandBuffer();
  /** A buffer for the next fill, once written out (null while in use). */
  #spare: CommandBuffer | null = new CommandBuffer();
  /** Callers of sent(), until nothing waits to be written. */
  #sent: (() => void)[] = [];
  /** Commands written and waiting for their reply, in order, from `#head`. */
  #inflight: Pending[] = [];
  #head = 0;
  #writing = false;
  #flushQueued = false;
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #lastError: unknown = undefined;
  #reading: Promise<void> = Promise.resolve();
  #connecting: Promise<void> = Promise.resolve();
  #connections = 0;
  /** When the connection last answered, or was given work while idle. */
  #heard = 0;
  #watch: ReturnType<typeof setTimeout> | undefined;

  /**
   * Starts connecting to `url` at once; commands wait for the connection.
   *
   * @param url `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
   * @param options Timeouts and backoff.
   * @throws {TypeError} If the URL is not one (named with its password redacted).
   * @throws {RangeError} If a timeout or delay is not a positive number.
   */
  constructor(url: string, options: RedisClientOptions = {}) {
    const {
      connectTimeout = 5000,
      minDelay = 50,
      maxDelay = 2000,
      commandTimeout = COMMAND_TIMEOUT,
      caCerts,
    } = options;
    this.#target = parseRedisUrl(url);
    this.url = this.#target.redacted;
    for (
      const [name, value] of Object.entries({
        connectTimeout,
        minDelay,
        maxDelay,
        commandTimeout,
      })
    ) {
      // Timers take at most MAX_TIMER ms (beyond, they fire at once).
      if (!(value > 0) || !(value <= MAX_TIMER)) {
        throw new RangeError(
          `Cannot create RedisClient as '${name}' must be a positive number of milliseconds up to ${MAX_TIMER}: received ${value}`,
        );
      }
    }
    this.#connectTimeout = connectTimeout;
    this.#minDelay = minDelay;
    this.#maxDelay = Math.max(minDelay, maxDelay);
    this.#commandTimeout = commandTimeout;
    this.#caCerts = caCerts;
    this.#connecting = this.#connect();
  }

  /**
   * A client whose first connection is made (PING answered).
   *
   * @param url `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
   * @param options Timeouts and backoff.
   * @returns The connected client.
   * @throws {RedisConnectionError} If no connection is made within `connectTimeout`, or AUTH or SELECT fails.
   */
  static async connect(
    url: string,
    options: RedisClientOptions = {},
  ): Promise<RedisClient> {
    const client = new RedisClient(url, options);
    try {
      await client.command("PING");
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** Whether a connection is up and ready for commands. */
  get connected(): boolean {
    return this.#state === "ready";
  }

  /** How many connections were made (1 once connected, more after reconnecting). */
  get connections(): number {
    return this.#connections;
  }

  /**
   * Sends one command; the commands of one turn share one write.
   *
   * @param args The command and its arguments, e.g. `"SET", key, bytes`.
   * @returns The reply: bulk strings as bytes, see {@linkcode Reply}.
   * @throws {RedisError} If the server replies with an error (naming the command).
   * @throws {RedisConnectionError} If the connection drops with the command in flight, no connection comes within `connectTimeout`, or the client is closed.
   */
  command(...args: Arg[]): Promise<Reply> {
    const name = commandName(args);
    if (this.#state === "closed") return Promise.reject(this.#closed(name));
    let size: number;
    try {
      size = this.#fill.append(args);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<Reply>((resolve, reject) => {
      const pending: Pending = {
        name,
        size,
        block: blockOf(name, args),
        resolve,
        reject,
        timer: undefined,
      };
      this.#waiting.push(pending);
      if (this.#state === "ready") this.#queueFlush();
      else this.#arm(pending);
    });
  }

  /**
   * Sends several commands in one write and gathers their replies, in order;
   * an error reply takes its command's place instead of failing the rest.
   *
   * @param commands The commands, each as for `command()`.
   * @returns One reply or `RedisError` per command.
   * @throws {RedisConnectionError} If the connection is lost or never comes.
   */
  pipeline(commands: readonly Arg[][]): Promise<(Reply | RedisError)[]> {
    return Promise.all(
      commands.map((args) =>
        this.command(...args).catch((error: unknown) => {
          if (error instanceof RedisError) return error;
          throw error;
        })
      ),
    );
  }

  /**
   * Closes the connection and stops reconnecting; commands not answered yet
   * fail with a `RedisConnectionError`. Always ends, and ends what it started.
   */
  async close(): Promise<void> {
    if (this.#state !== "closed") {
      this.#state = "closed";
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      clearTimeout(this.#watch);
      this.#watch = undefined;
      const waiting = this.#waiting;
      this.#waiting = [];
      this.#fill.clear();
      for (const pending of waiting) {
        clearTimeout(pending.timer);
        pending.reject(this.#closed(pending.name));
      }
      if (this.#conn !== null) this.#drop(this.#conn, undefined);
    }
    await this.#connecting;
    await this.#reading;
  }

  async #connect(): Promise<void> {
    let conn: Deno.Conn | undefined;
    try {
      conn = await this.#open();
      if (this.#state === "closed") {
        conn.close();
        return;
      }
      this.#conn = conn;
      // close() waits for every read loop, an earlier one still ending included
      this.#reading = Promise.all([this.#reading, this.#read(conn)]).then(
        () => {},
      );
      await this.#handshake(conn);
      this.#state = "ready";
      this.#attempt = 0;
      this.#lastError = undefined;
      this.#connections++;
      for (const pending of this.#waiting) {
        clearTimeout(pending.timer);
        pending.timer = undefined;
      }
      this.#flush();
    } catch (error) {
      if (conn !== undefined && this.#conn === conn) this.#drop(conn, error);
      if (this.#state === "closed") return;
      this.#lastError = error;
      if (error instanceof RedisError) {
        // AUTH or SELECT refused: waiting on would only hide it
        const waiting = this.#waiting;
        this.#waiting = [];
        this.#fill.clear();
        for (const pending of waiting) {
          clearTimeout(pending.timer);
          pending.reject(
            new RedisConnectionError(
              this.url,
              `Cannot use ${this.url} as ${error.command} failed: ${error.serverMessage}`,
              { cause: error },
            ),
          );
        }
      }
      this.#retry();
    }
  }

  /** Opens the socket, within `connectTimeout`. */
  async #open(): Promise<Deno.Conn> {
    const { hostname, port, tls } = this.#target;
    const opening = tls
      ? Deno.connectTls({
        hostname,
        port,
        ...(this.#caCerts === undefined ? {} : { caCerts: this.#caCerts }),
      }).then(handshake)
      : Deno.connect({ hostname, port });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(`no answer to connect within ${this.#connectTimeout} ms`),
          ),
        this.#connectTimeout,
      );
    });
    try {
      return await Promise.race([opening, timeout]);
    } catch (error) {
      // a connect that answers after its timeout is closed at once
      opening.then((conn) => conn.close(), () => {});
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** AUTH and SELECT, written ahead of anything waiting. */
  async #handshake(conn: Deno.Conn): Promise<void> {
    const { username, password, db } = this.#target;
    const commands: Arg[][] = [];
    if (password !== undefined) {
      commands.push(
        username === undefined
          ? ["AUTH", password]
          : ["AUTH", username, password],
      );
    }
    if (db !== 0) commands.push(["SELECT", db]);
    if (commands.length === 0) return;
    const replies = commands.map((args) =>
      new Promise<Reply>((resolve, reject) => {
        this.#inflight.push({
          name: commandName(args),
          size: 0,
          block: 0,
          resolve,
          reject,
          timer: undefined,
        });
      })
    );
    this.#heard = performance.now();
    this.#armWatch();
    const out = new CommandBuffer(256);
    for (const args of commands) out.append(args);
    await writeAll(conn, out.bytes.subarray(0, out.length));
    await Promise.all(replies);
  }

  async #read(conn: Deno.Conn): Promise<void> {
    const decoder = new ReplyDecoder();
    const buffer = new Uint8Array(READ_SIZE);
    let cause: unknown = new Error("the server closed the connection");
    try {
      for (;;) {
        const target = decoder.bulkTarget();
        let n: number | null;
        if (target !== null && target.length >= DIRECT_READ) {
          n = await conn.read(target);
          if (n !== null) decoder.filled(n);
        } else {
          n = await conn.read(buffer);
          if (n !== null) decoder.feed(buffer.subarray(0, n));
        }
        if (n === null) break;
        const replies = decoder.take();
        if (replies.length > 0) this.#heard = performance.now();
        for (const reply of replies) this.#settle(reply);
      }
    } catch (error) {
      cause = error;
    }
    this.#drop(conn, cause);
  }

  #settle(reply: Reply): void {
    const pending = this.#inflight[this.#head];
    if (pending === undefined) {
      throw new Error("the server sent a reply to no command");
    }
    this.#inflight[this.#head++] = undefined as unknown as Pending;
    if (this.#head >= 1024 && this.#head * 2 >= this.#inflight.length) {
      this.#inflight = this.#inflight.slice(this.#head);
      this.#head = 0;
    }
    if (reply instanceof ErrorReply) {
      pending.reject(new RedisError(pending.name, reply.message));
    } else {
      pending.resolve(reply);
    }
  }

  /** Ends `conn` once: what was in flight on it fails; then reconnects unless closed. */
  #drop(conn: Deno.Conn, cause: unknown): void {
    if (this.#conn !== conn) return;
    this.#conn = null;
    this.#writing = false;
    for (const resolve of this.#sent.splice(0)) resolve();
    try {
      conn.close();
    } catch {
      // already closed by the read that failed
    }
    const failed = this.#inflight.slice(this.#head);
    this.#inflight = [];
    this.#head = 0;
    clearTimeout(this.#watch);
    this.#watch = undefined;
    if (this.#state === "closed") {
      for (const pending of failed) pending.reject(this.#closed(pending.name));
      return;
    }
    const wasReady = this.#state === "ready";
    this.#state = "connecting";
    for (const pending of failed) {
      pending.reject(
        new RedisConnectionError(
          this.url,
          `Lost the connection to ${this.url} with ${pending.name} in flight: ${
            describe(cause)
          }`,
          { cause },
        ),
      );
    }
    for (const pending of this.#waiting) this.#arm(pending);
    if (wasReady) {
      this.#lastError = cause;
      this.#retry();
    }
  }

  /** The next attempt to connect, after a backoff delay. */
  #retry(): void {
    if (this.#state === "closed" || this.#retryTimer !== undefined) return;
    const delay = backoff(this.#minDelay, ++this.#attempt, this.#maxDelay);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connecting = this.#connect();
    }, delay);
  }

  /** A command waiting for a connection fails after `connectTimeout`. */
  #arm(pending: Pending): void {
    if (pending.timer !== undefined) return;
    pending.timer = setTimeout(() => {
      const at = this.#waiting.indexOf(pending);
      if (at !== -1) {
        let start = 0;
        for (let i = 0; i < at; i++) start += this.#waiting[i]!.size;
        this.#fill.remove(start, pending.size);
        this.#waiting.splice(at, 1);
      }
      const last = this.#lastError === undefined
        ? ""
        : ` (last error: ${describe(this.#lastError)})`;
      pending.reject(
        new RedisConnectionError(
          this.url,
          `Cannot send ${pending.name} as ${this.url} was not reachable within ${this.#connectTimeout} ms${last}`,
          { cause: this.#lastError },
        ),
      );
    }, this.#connectTimeout);
  }

  /** Resolves once the commands queued so far are written out (not answered). */
  sent(): Promise<void> {
    if (this.#waiting.length === 0 && !this.#writing) return Promise.resolve();
    return new Promise((resolve) => this.#sent.push(resolve));
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  /** Writes everything waiting in one write, then whatever came meanwhile. */
  async #flush(): Promise<void> {
    const conn = this.#conn;
    if (
      this.#state !== "ready" || conn === null || this.#writing ||
      this.#waiting.length === 0
    ) return;
    const batch = this.#waiting;
    this.#waiting = [];
    if (this.#head === this.#inflight.length) {
      // Idle until now: the clock runs from this write.
      this.#heard = performance.now();
    }
    this.#armWatch();
    for (const pending of batch) {
      pending.size = 0;
      this.#inflight.push(pending);
    }
    // The batch's bytes are the whole fill buffer: it is written out, and
    // the commands of the meantime fill another.
    const out = this.#fill;
    this.#fill = this.#spare ?? new CommandBuffer();
    this.#spare = null;
    this.#writing = true;
    try {
      await writeAll(conn, out.bytes.subarray(0, out.length));
    } catch (error) {
      this.#drop(conn, error);
      return;
    } finally {
      out.clear();
      this.#spare ??= out;
    }
    if (this.#conn !== conn) return;
    this.#writing = false;
    this.#flush();
    if (!this.#writing) {
      for (const resolve of this.#sent.splice(0)) {
        resolve();
      }
    }
  }

  /** Starts the deadline clock of the connection, unless it runs. */
  #armWatch(): void {
    if (this.#watch !== undefined) return;
    this.#watch = setTimeout(() => this.#check(), this.#commandTimeout);
  }

  /**
   * The deadline: commands wait and the connection gave no reply for
   * `commandTimeout` past the BLOCK of the first of them: it is dead.
   */
  #check(): void {
    this.#watch = undefined;
    const conn = this.#conn;
    const head = this.#inflight[this.#head];
    if (conn === null || head === undefined) return;
    const allowed = this.#commandTimeout + head.block;
    const due = this.#heard + allowed - performance.now();
    if (due > 0) {
      // A read that blocks for ever (BLOCK 0) is never due: look again every
      // `commandTimeout`, as whatever comes after it is due by then.
      this.#watch = setTimeout(
        () => this.#check(),
        Math.min(due, this.#commandTimeout),
      );
      return;
    }
    this.#drop(
      conn,
      new Error(
        `no reply to ${head.name} within ${allowed} ms (its 'commandTimeout'): the server stopped answering`,
      ),
    );
  }

  #closed(name: string): RedisConnectionError {
    return new RedisConnectionError(
      this.url,
      `Cannot complete ${name} as the client of ${this.url} is closed`,
    );
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A refused certificate is a failure to connect, not a lost connection. */
async function handshake(conn: Deno.TlsConn): Promise<Deno.TlsConn> {
  try {
    await conn.handshake();
  } catch (error) {
    conn.close();
    throw error;
  }
  return conn;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}
