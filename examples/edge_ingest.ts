// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: needs a redis-server and a worker (run by tests/edge_ingest_test.ts)
/**
 * Edge ingest: an HTTP endpoint that takes streamed 16 kHz mono 16-bit PCM
 * (s16le, raw or as a WAV file) from many microphones and pipes each upload
 * through {@linkcode fanout} into two consumers:
 *
 * - a level meter every 0.5 s, inline (`mode: "serial"`, no permission);
 * - a model every 2 s, run by a fleet of workers on other machines
 *   (`mode: "redis"`): the chunks go to the Redis stream `--stream`, workers
 *   started with `examples/edge_model.ts` run them, and the results come
 *   back to this server exactly once.
 *
 * An upload is a streamed POST body (`POST /ingest/NAME`, answered with a
 * summary in JSON once the body ends) or a WebSocket (`/ingest/NAME`, binary
 * messages of PCM, a text message `end` to finish; the server acknowledges
 * what it has taken with `{"ack": bytes}`, the bytes of the messages taken
 * so far (one per message, but never one more while one waits to leave), and
 * answers `end` with the summary). The body is read only as fast as the
 * model's fleet keeps up: each upload has one model chunk on the fleet and at
 * most 4 waiting, then the server stops reading it until there is room.
 *
 * It is meant to face the internet, so every upload is bounded:
 *
 * - one producer for the whole process: the model chunks of every upload go
 *   through one redis-mode emitter (two Redis connections, however many
 *   uploads), and each result is routed back to its upload;
 * - at most `--max-uploads` (default 64) at once; one more is answered with
 *   503 and `Retry-After`;
 * - a WebSocket may have 256 messages and 8 MiB unacknowledged, each message
 *   at most 1 MiB: past that it is closed with code 1008 (policy) or 1009
 *   (too big); a text message other than `end` closes it with 1003;
 * - an upload that sends nothing for `--idle-timeout` ms (default 30000)
 *   while the server waits for it is ended: a POST is answered 408 with what
 *   it sent, a WebSocket closed with 1008 after its summary.
 *
 * ```sh
 * redis-server --port 6379 --save ''                                 # the broker
 * export REDIS_URL=redis://127.0.0.1:6379                            # with its password, if any
 * ocycle worker --stream edge --module examples/edge_model.ts -j 2   # workers, anywhere
 * deno run --allow-net --allow-env=REDIS_URL examples/edge_ingest.ts # this server
 * curl -T speech.wav http://127.0.0.1:8000/ingest/mic1               # an upload
 * ```
 *
 * A program can embed a worker instead of `ocycle worker`: this file's
 * `worker` command does, with {@linkcode runWorker}
 * (`deno run --allow-net --allow-read=examples/edge_model.ts
 * examples/edge_ingest.ts worker`), and its `send` command is a WebSocket
 * client (`send speech.wav --url ws://127.0.0.1:8000/ingest/mic2`).
 *
 * Options: `REDIS_URL` (or `--redis URL`, which shows a password to `ps`;
 * default `redis://127.0.0.1:6379`), `--stream NAME` (or `OCYCLE_STREAM`,
 * default `edge`), `--port N` (or `PORT`, default 8000), `--hostname`
 * (default 127.0.0.1), `--timeout MS` (a model chunk's round trip, default
 * 30000), `--max-uploads N`, `--idle-timeout MS`. The environment is read
 * only where `--allow-env` grants it; only the URL's redacted form is ever
 * printed. Ctrl-C (or SIGTERM) stops reading every upload, flushes and
 * answers each one, and ends the server; a second one aborts.
 *
 * @module
 */

import {
  ChunkError,
  type ChunkInfo,
  closeOnSignals,
  type Fanout,
  fanout,
  runWorker,
  SampleEmit,
} from "@ocycle/core";
import { parseArgs } from "@std/cli";
import type { ModelResult } from "./edge_model.ts";

const RATE = 16000;
/** Samples as the consumers take them. */
type Pcm = Int16Array<ArrayBuffer>;
/** The module the workers run; the producer only names it. */
export const MODEL: URL = new URL("./edge_model.ts", import.meta.url);
/** Unacknowledged WebSocket bytes the server holds before it closes the socket. */
const WS_BACKLOG_BYTES = 8 * 1024 * 1024;
/**
 * Unacknowledged WebSocket messages the server holds before it closes the
 * socket: each costs memory whatever its size, so a flood of tiny messages
 * is bounded by their count, not their bytes.
 */
const WS_BACKLOG_MESSAGES = 256;
/** The largest WebSocket message taken (a well-behaved client sends 100 ms, 3200 bytes). */
const WS_MAX_MESSAGE = 1024 * 1024;
/** Seconds a client refused for too many uploads is told to wait (`Retry-After`). */
const RETRY_AFTER = 5;

/** Options of {@linkcode createIngest}. */
export interface IngestOptions {
  /** The Redis URL. */
  redis: string;
  /** The chunk stream's key, as the workers'. */
  stream: string;
  /** The consumer group, as the workers'. @default {"ocycle"} */
  group?: string;
  /**
   * Model chunks in flight on the fleet, for all uploads together (each
   * upload has at most one). @default {16}
   */
  inFlight?: number;
  /** Milliseconds a model chunk's round trip may take. @default {30000} */
  timeout?: number;
  /** Uploads at once; one more is answered 503 with `Retry-After`. @default {64} */
  maxUploads?: number;
  /**
   * Milliseconds an upload may send nothing while the server waits for it.
   * @default {30000}
   */
  idleTimeout?: number;
  /** Where events go. @default {console.log} */
  log?: (line: string) => void;
}

/** The meter's reading of 0.5 s. */
export interface Level {
  /** Where it starts in the upload, in seconds. */
  at: number;
  /** Root mean square, dB relative to full scale. */
  rmsDbfs: number;
  /** Peak, dB relative to full scale. */
  peakDbfs: number;
}

/** What an upload is answered with. */
export interface Summary {
  /** The name in the URL (`/ingest/NAME`). */
  name: string;
  transport: "http" | "websocket";
  format: "wav" | "raw";
  /** Audio received, in seconds, and its bytes. */
  seconds: number;
  bytes: number;
  /** Chunks each consumer ran. */
  chunks: { meter: number; model: number };
  levels: Level[];
  /** The model's results, in order. */
  model: ModelResult[];
  /** Model chunks that failed. */
  errors: { index: number; kind: string; message: string }[];
  /** Times reading the upload waited for the consumers, and for how long. */
  backpressure: { waits: number; ms: number };
  /** Set when a signal stopped the upload before its end. */
  stopped?: string;
}

/** The server's handler and its shutdown; returned by {@linkcode createIngest}. */
export interface Ingest {
  /** Serves `POST /ingest/NAME` and WebSocket `/ingest/NAME`. */
  handler(request: Request): Promise<Response>;
  /** Stops reading every upload; each flushes and is answered. Later requests get 503. */
  close(): Promise<void>;
  /** Stops every upload now. */
  abort(reason?: unknown): Promise<void>;
}

const dbfs = (x: number) =>
  x > 0 ? Math.round(200 * Math.log10(x / 32768)) / 10 : -Infinity;

/** The level meter's callback: inline, cheap, no permission. */
function measure(samples: Pcm, _t0: number, info: ChunkInfo): Level {
  let sum = 0, peak = 0;
  for (const s of samples) {
    sum += s * s;
    peak = Math.max(peak, Math.abs(s));
  }
  return {
    at: info.offset / RATE,
    rmsDbfs: dbfs(Math.sqrt(sum / samples.length)),
    peakDbfs: dbfs(peak),
  };
}

/**
 * Turns the pieces of a body into whole 16-bit samples: skips a WAV header
 * (checking it is 16 kHz mono 16-bit PCM), carries an odd byte over.
 */
class PcmReader {
  format: "wav" | "raw" | undefined;
  bytes = 0;
  #head = new Uint8Array(0);
  #odd: number | undefined;

  /** The samples in `piece`; throws a TypeError for a WAV in another format. */
  push(piece: Uint8Array): Pcm {
    if (this.format === undefined) {
      const head = new Uint8Array(this.#head.length + piece.length);
      head.set(this.#head);
      head.set(piece, this.#head.length);
      const start = this.#start(head);
      if (start === undefined) {
        if (head.length > 65536) {
          throw new TypeError(
            "Cannot read WAV as no data chunk came in 64 KiB",
          );
        }
        this.#head = head;
        return new Int16Array(0);
      }
      this.#head = new Uint8Array(0);
      piece = head.subarray(start);
    }
    return this.#samples(piece);
  }

  /** What the body held before its end, when its start was still undecided. */
  end(): Pcm {
    if (this.format !== undefined) return new Int16Array(0);
    // Under 4 bytes it is raw; a WAV cut before its data holds no samples.
    const riff = String.fromCharCode(...this.#head.subarray(0, 4)) === "RIFF";
    this.format = riff ? "wav" : "raw";
    return riff ? new Int16Array(0) : this.#samples(this.#head);
  }

  /** Where the PCM starts in `head`, or undefined if that is not known yet. */
  #start(head: Uint8Array): number | undefined {
    if (head.length < 4) return undefined;
    const tag = (at: number) =>
      String.fromCharCode(...head.subarray(at, at + 4));
    if (tag(0) !== "RIFF") {
      this.format = "raw";
      return 0;
    }
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    let at = 12;
    while (at + 8 <= head.length) {
      const id = tag(at), size = view.getUint32(at + 4, true);
      if (id === "data") {
        this.format = "wav";
        return at + 8;
      }
      if (id === "fmt ") {
        if (at + 24 > head.length) return undefined;
        const code = view.getUint16(at + 8, true);
        const channels = view.getUint16(at + 10, true);
        const rate = view.getUint32(at + 12, true);
        const bits = view.getUint16(at + 22, true);
        if (
          (code !== 1 && code !== 0xfffe) || channels !== 1 || rate !== RATE ||
          bits !== 16
        ) {
          throw new TypeError(
            `Cannot ingest WAV as it must be 16 kHz mono 16-bit PCM: received format ${code}, ${channels} channel(s), ${rate} Hz, ${bits} bits`,
          );
        }
      }
      at += 8 + size + (size % 2);
    }
    return undefined;
  }

  #samples(piece: Uint8Array): Pcm {
    this.bytes += piece.length;
    if (this.#odd !== undefined) {
      const joined = new Uint8Array(piece.length + 1);
      joined[0] = this.#odd;
      joined.set(piece, 1);
      piece = joined;
      this.#odd = undefined;
    }
    const n = piece.length >> 1;
    if (piece.length % 2) this.#odd = piece[piece.length - 1];
    if (piece.byteOffset % 2 === 0) {
      return new Int16Array(piece.buffer as ArrayBuffer, piece.byteOffset, n); // no copy
    }
    const samples = new Int16Array(n);
    new Uint8Array(samples.buffer).set(piece.subarray(0, 2 * n));
    return samples;
  }
}

/**
 * The process's one producer: every upload's model chunks go through one
 * redis-mode emitter, so the process holds two Redis connections however
 * many uploads it serves (an emitter per upload would open two each, and a
 * few hundred idle uploads would use up the file descriptors). Each chunk is
 * written whole and flushed, so it is one chunk of this emitter too, and its
 * result is routed back by the emitter's index.
 */
class ModelFleet {
  readonly #emit: SampleEmit<Pcm, ModelResult>;
  /** The chunks on the fleet, by this emitter's index. */
  readonly #waiting = new Map<
    number,
    { resolve(result: ModelResult): void; reject(error: ChunkError): void }
  >();

  constructor(options: IngestOptions) {
    const maxUploads = options.maxUploads ?? 64;
    this.#emit = new SampleEmit<Pcm, ModelResult>(MODEL, 2 * RATE, {
      type: Int16Array,
      clip: true,
      mode: "redis",
      redis: {
        url: options.redis,
        stream: options.stream,
        group: options.group ?? "ocycle",
        inFlight: options.inFlight ?? 16,
      },
      // Each upload has at most one chunk here, so the uploads' cap bounds
      // what waits, and a write never has to wait for `ready`.
      maxPending: maxUploads,
      timeout: options.timeout ?? 30_000,
      onDone: (result, info) => {
        this.#waiting.get(info.index)?.resolve(result);
        this.#waiting.delete(info.index);
      },
      onError: (error, info) => {
        this.#waiting.get(info.index)?.reject(error);
        this.#waiting.delete(info.index);
      },
    });
  }

  /** Runs one chunk (at most 2 s) of an upload on the fleet; resolves with its result. */
  run(samples: Pcm, t0: number): Promise<ModelResult> {
    const index = this.#emit.stats.emitted;
    const result = new Promise<ModelResult>((resolve, reject) =>
      this.#waiting.set(index, { resolve, reject })
    );
    this.#emit.write(samples, t0); // a whole chunk is cut at once,
    this.#emit.flush(); // a shorter one (an upload's tail) here
    if (this.#emit.stats.emitted !== index + 1) {
      // Never, as long as each run is one chunk: say so rather than misroute.
      throw new RangeError(
        `Cannot route a model chunk of ${samples.length} samples: it was not cut as one chunk`,
      );
    }
    return result;
  }

  close(): Promise<void> {
    return this.#emit.close();
  }

  abort(reason?: unknown): Promise<void> {
    return this.#emit.abort(reason);
  }
}

/** One upload: its meter and model, fed through a fanout. */
class Upload {
  readonly name: string;
  readonly transport: Summary["transport"];
  readonly pcm = new PcmReader();
  readonly #out: Fanout<Pcm>;
  readonly #meter: SampleEmit<Pcm, Level>;
  readonly #model: SampleEmit<Pcm, ModelResult>;
  readonly #levels: Level[] = [];
  readonly #results: ModelResult[] = [];
  readonly #errors: Summary["errors"] = [];
  readonly #log: (line: string) => void;
  #waits = 0;
  #waited = 0;
  #finished: Promise<Summary> | undefined;
  #aborted = false;
  /** Why it was stopped before its end. */
  stopped: string | undefined;
  /** Called when it is stopped: ends the reading. */
  onStop: (() => void) | undefined;

  constructor(
    name: string,
    transport: Summary["transport"],
    fleet: ModelFleet,
    log: (line: string) => void,
  ) {
    this.name = name;
    this.transport = transport;
    this.#log = (line) => log(`[${name}] ${line}`);
    this.#meter = new SampleEmit(measure, RATE / 2, {
      type: Int16Array,
      clip: true,
      onDone: (level) => this.#levels.push(level),
    });
    // Cut per upload, run on the shared fleet one chunk at a time (serial):
    // the result comes back with the shared stream's index and offset, and
    // gets the upload's own.
    this.#model = new SampleEmit<Pcm, ModelResult>(
      async (samples, t0, info) => ({
        ...await fleet.run(samples, t0),
        index: info.index,
        at: info.offset / RATE,
      }),
      2 * RATE,
      {
        type: Int16Array,
        clip: true,
        maxPending: 4,
        onDone: (result) => {
          this.#results.push(result);
          this.#log(
            `model ${result.index} at ${result.at} s: ${result.rmsDbfs} dBFS, ${result.zeroCrossings} crossings/s, ${
              result.voice ? "voice" : "no voice"
            }`,
          );
        },
        onError: (error: ChunkError, info) => {
          // The fleet's own error (a timeout, a crash...), not the wrapper's.
          const cause = error.cause instanceof ChunkError ? error.cause : error;
          this.#errors.push({
            index: info.index,
            kind: cause.kind,
            message: cause.message,
          });
          this.#log(`model ${info.index} failed: ${cause.message}`);
        },
      },
    );
    this.#out = fanout(this.#meter, this.#model);
    this.#log(`${transport} upload started`);
  }

  /** Writes a piece of the body; resolves once the consumers can take more. */
  async write(piece: Uint8Array): Promise<void> {
    // Finished or aborted: nothing more is read.
    if (this.#finished !== undefined || this.#aborted) return;
    const samples = this.pcm.push(piece);
    if (samples.length === 0 || this.#out.write(samples)) return;
    // The model's fleet is behind: stop reading until it has room.
    this.#waits++;
    const start = performance.now();
    await this.#out.ready;
    this.#waited += performance.now() - start;
  }

  stop(reason: string): void {
    if (this.#finished !== undefined || this.stopped !== undefined) return;
    this.stopped = reason;
    this.onStop?.();
  }

  /** Flushes both consumers, waits for every result, and sums up. */
  finish(): Promise<Summary> {
    return this.#finished ??= this.#finish();
  }

  async #finish(): Promise<Summary> {
    const tail = this.pcm.end();
    if (tail.length > 0) this.#out.write(tail);
    await this.#out.close();
    const summary: Summary = {
      name: this.name,
      transport: this.transport,
      format: this.pcm.format ?? "raw",
      seconds: Math.floor(this.pcm.bytes / 2) / RATE,
      bytes: this.pcm.bytes,
      chunks: {
        meter: this.#meter.stats.emitted,
        model: this.#model.stats.emitted,
      },
      levels: this.#levels.sort((a, b) => a.at - b.at),
      model: this.#results.sort((a, b) => a.index - b.index),
      errors: this.#errors.sort((a, b) => a.index - b.index),
      backpressure: { waits: this.#waits, ms: Math.round(this.#waited) },
      ...(this.stopped === undefined ? {} : { stopped: this.stopped }),
    };
    const voiced = summary.model.filter((r) => r.voice).length;
    this.#log(
      `done: ${summary.seconds} s, ${summary.chunks.meter} levels, ${summary.model.length} of ${summary.chunks.model} model results (voice in ${voiced}), ${summary.errors.length} errors, read paused ${summary.backpressure.waits} times for ${summary.backpressure.ms} ms${
        this.stopped === undefined ? "" : `, stopped by ${this.stopped}`
      }`,
    );
    return summary;
  }

  /** Stops it now: what it still has in flight is not waited for. */
  abort(reason?: unknown): Promise<void> {
    this.#aborted = true;
    this.stopped ??= "abort";
    this.onStop?.();
    return this.#out.abort(reason).catch(() => {});
  }
}

/**
 * A WebSocket's acks, `{"ack": bytes}`. An ack is cumulative, so one waiting
 * to leave is not joined by another (the next says the count of when it
 * leaves): a client that does not read them cannot make the server queue one
 * per message it sends.
 */
export class Acks {
  readonly #socket: Pick<WebSocket, "send" | "bufferedAmount" | "readyState">;
  #count = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    socket: Pick<WebSocket, "send" | "bufferedAmount" | "readyState">,
  ) {
    this.#socket = socket;
  }

  /** Says `count` bytes were taken: now, or once what the socket holds has left. */
  ack(count: number): void {
    this.#count = count;
    if (this.#stopped || this.#timer !== undefined) return;
    if (this.#socket.readyState !== WebSocket.OPEN) return;
    if (this.#socket.bufferedAmount === 0) {
      this.#socket.send(JSON.stringify({ ack: this.#count }));
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.ack(this.#count);
    }, 20);
  }

  /** Sends no more. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });

/**
 * Builds the ingest server's handler: `POST /ingest/NAME` with a streamed
 * body, or a WebSocket on `/ingest/NAME`.
 */
export function createIngest(options: IngestOptions): Ingest {
  const log = options.log ?? console.log;
  const maxUploads = options.maxUploads ?? 64;
  const idleTimeout = options.idleTimeout ?? 30_000;
  const fleet = new ModelFleet(options);
  const uploads = new Set<Upload>();
  const running = new Set<Promise<unknown>>();
  let closing: Promise<void> | undefined;

  /** A new upload, counted against the cap until `run` settles. */
  function start<T>(
    name: string,
    transport: Summary["transport"],
    run: (upload: Upload) => Promise<T>,
  ): Promise<T> {
    const upload = new Upload(name, transport, fleet, log);
    uploads.add(upload);
    const settled = run(upload).finally(() => {
      uploads.delete(upload);
      running.delete(settled);
    });
    running.add(settled);
    return settled;
  }

  function post(name: string, body: ReadableStream<Uint8Array>) {
    return start(name, "http", async (upload) => {
      const reader = body.getReader();
      upload.onStop = () => void reader.cancel().catch(() => {});
      let idle = false;
      try {
        while (upload.stopped === undefined) {
          // The client has idleTimeout to send its next piece; the time the
          // upload waits for the fleet (in write) does not count.
          const timer = setTimeout(() => {
            idle = true;
            upload.stop(`no data for ${idleTimeout} ms`);
          }, idleTimeout);
          const { done, value } = await reader.read().finally(() =>
            clearTimeout(timer)
          );
          if (done) break;
          await upload.write(value); // waits while the consumers are full
        }
        // An idle client is answered with what it sent, as 408.
        return json(await upload.finish(), idle ? 408 : 200);
      } catch (error) {
        log(`[${name}] failed: ${error}`);
        await upload.abort(error);
        const status = error instanceof TypeError ? 415 : 500;
        return json({ name, error: String(error) }, status);
      }
    });
  }

  function socket(name: string, request: Request): Response {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    let resolve!: () => void;
    const finished = new Promise<void>((r) => resolve = r);
    void start(name, "websocket", (upload) => {
      let chain = Promise.resolve();
      // What was received and not yet taken (acknowledged): bounded in
      // bytes and in messages.
      let bytes = 0;
      let messages = 0;
      /** The bytes of the messages taken, as the acks say. */
      let taken = 0;
      let ended = false;
      let idleTimer: ReturnType<typeof setTimeout> | undefined;
      const acks = new Acks(socket);
      /** Ends the upload: flushes it, sends the summary, closes with `code`. */
      const end = (code: number, reason: string) => {
        if (ended) return;
        ended = true;
        clearTimeout(idleTimer);
        acks.stop();
        chain = chain.then(() => upload.finish()).then(
          (summary) => {
            if (socket.readyState === WebSocket.OPEN) {
              socket.send(JSON.stringify(summary));
              socket.close(code, reason);
            }
          },
          (error) => {
            if (socket.readyState === WebSocket.OPEN) {
              socket.send(JSON.stringify({ name, error: String(error) }));
              socket.close(1011, "failed");
            }
          },
        ).finally(resolve);
      };
      /** Closes an abusive socket at once: what it sent is not waited for. */
      const refuse = (code: 1003 | 1008 | 1009, reason: string) => {
        if (ended) return;
        ended = true;
        clearTimeout(idleTimer);
        acks.stop();
        log(`[${name}] closed with ${code}: ${reason}`);
        if (socket.readyState === WebSocket.OPEN) socket.close(code, reason);
        void upload.abort(new Error(reason)).finally(resolve);
      };
      // Idle: nothing received while nothing waits to be taken (a client
      // waiting for its acks is not idle).
      const armIdle = () => {
        clearTimeout(idleTimer);
        if (ended) return;
        idleTimer = setTimeout(() => {
          if (messages === 0) end(1008, `no data for ${idleTimeout} ms`);
          else armIdle();
        }, idleTimeout);
      };
      upload.onStop = () => end(1001, "server stopping");
      socket.onopen = armIdle;
      socket.onmessage = (event) => {
        if (ended) return;
        if (typeof event.data === "string") {
          if (event.data === "end") end(1000, "done");
          else refuse(1003, "text messages other than end are not taken");
          return;
        }
        const piece = new Uint8Array(event.data as ArrayBuffer);
        if (piece.length > WS_MAX_MESSAGE) {
          return refuse(1009, `a message over ${WS_MAX_MESSAGE} bytes`);
        }
        bytes += piece.length;
        messages++;
        if (bytes > WS_BACKLOG_BYTES || messages > WS_BACKLOG_MESSAGES) {
          return refuse(1008, "too far ahead: wait for acks");
        }
        armIdle();
        chain = chain.then(() => upload.write(piece)).then(() => {
          bytes -= piece.length;
          messages--;
          taken += piece.length;
          acks.ack(taken);
        }).catch((error) => {
          refuse(1003, String(error).slice(0, 120));
        });
      };
      socket.onclose = () => end(1000, "done");
      socket.onerror = () => end(1011, "error");
      return finished;
    });
    return response;
  }

  return {
    handler(request: Request): Promise<Response> {
      const { pathname } = new URL(request.url);
      const m = /^\/ingest\/([\w.-]{1,64})$/.exec(pathname);
      if (m === null) {
        return Promise.resolve(
          new Response(
            "POST 16 kHz mono s16le PCM (raw or WAV) to /ingest/NAME, or open a WebSocket there\n",
            { status: pathname === "/" ? 200 : 404 },
          ),
        );
      }
      if (closing !== undefined) {
        return Promise.resolve(new Response("stopping\n", { status: 503 }));
      }
      if (uploads.size >= maxUploads) {
        return Promise.resolve(
          new Response(`busy: ${maxUploads} uploads at once at most\n`, {
            status: 503,
            headers: { "retry-after": String(RETRY_AFTER) },
          }),
        );
      }
      const name = m[1]!;
      if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
        return Promise.resolve(socket(name, request));
      }
      // `curl -T` sends PUT, `curl --data-binary` POST: both stream the body.
      if (
        (request.method !== "POST" && request.method !== "PUT") ||
        request.body === null
      ) {
        return Promise.resolve(
          new Response("POST (or PUT) a body of PCM, or open a WebSocket\n", {
            status: 405,
          }),
        );
      }
      return post(name, request.body);
    },
    close(): Promise<void> {
      return closing ??= (async () => {
        for (const upload of uploads) upload.stop("signal");
        while (running.size > 0) await Promise.allSettled([...running]);
        await fleet.close();
      })();
    },
    async abort(reason?: unknown): Promise<void> {
      await Promise.allSettled([...uploads].map((u) => u.abort(reason)));
      await fleet.abort(reason).catch(() => {});
    },
  };
}

/**
 * The URL with its password replaced by `***`, for logs: in
 * `redis://user:PASSWORD@host` and `redis://:PASSWORD@host`, and all that
 * stands before the `@` in `redis://PASSWORD@host` (Redis's shorthand for a
 * password alone). Read as a string, not with `URL`, since a password may
 * hold `/`, `#` or `@`: all up to the last `@` is the user part. A value with
 * no `scheme://` is not shown at all: it may be the password itself.
 */
export function redact(url: string): string {
  const scheme = /^[a-z][a-z\d+.-]*:\/\//i.exec(url);
  if (scheme === null) return "(not a URL: not shown)";
  const start = scheme[0].length;
  const at = url.lastIndexOf("@");
  if (at < start) return url;
  const colon = url.slice(start, at).indexOf(":");
  return colon === -1
    ? `${url.slice(0, start)}***${url.slice(at)}`
    : `${url.slice(0, start + colon + 1)}***${url.slice(at)}`;
}

/** `{ [key]: n }` for a flag given as a positive integer, `{}` if not given. */
function count<K extends keyof IngestOptions>(
  flag: string,
  text: string | undefined,
  key: K,
): Partial<Record<K, number>> {
  if (text === undefined) return {};
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(
      `${flag} must be a positive integer: received "${text}"`,
    );
  }
  return { [key]: n } as Partial<Record<K, number>>;
}

/** Reads a variable where `--allow-env` grants it, without a prompt. */
function env(name: string): string | undefined {
  const { state } = Deno.permissions.querySync({ name: "env", variable: name });
  return state === "granted" ? Deno.env.get(name) : undefined;
}

/**
 * The WebSocket client: sends a file (WAV or raw PCM) in 100 ms messages,
 * at most 64 KiB ahead of the server's acks (in real time with `realtime`),
 * then `end`, and resolves with the summary.
 */
export async function send(
  url: string,
  file: string,
  realtime = false,
): Promise<unknown> {
  const bytes = await Deno.readFile(file);
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let acked = 0;
  let wake: (() => void) | undefined;
  let summary: unknown;
  const closed = new Promise<void>((resolve, reject) => {
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data as string);
      if (typeof message.ack === "number") acked = message.ack;
      else summary = message;
      wake?.();
    };
    ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    ws.onclose = (event) => {
      wake?.();
      if (summary !== undefined) resolve();
      else {reject(
          new Error(`closed by the server: ${event.code} ${event.reason}`),
        );}
    };
  });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    closed.catch(reject);
  });
  const STEP = RATE / 10 * 2, WINDOW = 64 * 1024;
  const start = performance.now();
  for (let at = 0; at < bytes.length; at += STEP) {
    if (ws.readyState !== WebSocket.OPEN) break;
    while (at - acked > WINDOW && ws.readyState === WebSocket.OPEN) {
      await new Promise<void>((resolve) => wake = resolve);
    }
    ws.send(bytes.subarray(at, at + STEP));
    if (realtime) {
      const due = start + (at / STEP) * 100 - performance.now();
      if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
    }
  }
  if (ws.readyState === WebSocket.OPEN) ws.send("end");
  await closed;
  return summary;
}

async function main(args: string[]): Promise<void> {
  const flags = parseArgs(args, {
    string: ["redis", "stream", "group", "port", "hostname", "timeout"]
      .concat(["max-uploads", "idle-timeout", "module", "mode", "pool", "url"]),
    boolean: ["help", "realtime"],
  }) as unknown as Record<string, string | undefined> & {
    _: string[];
    help: boolean;
    realtime: boolean;
  };
  if (flags.help) {
    console.log(
      "REDIS_URL=redis://... deno run --allow-net --allow-env=REDIS_URL examples/edge_ingest.ts [--port 8000] [--hostname 127.0.0.1] [--stream edge] [--timeout 30000] [--max-uploads 64] [--idle-timeout 30000]\n" +
        "deno run --allow-net --allow-read=examples/edge_model.ts examples/edge_ingest.ts worker [--redis URL] [--stream edge] [--mode serial] [--pool N]\n" +
        "deno run --allow-net --allow-read=FILE examples/edge_ingest.ts send FILE [--url ws://127.0.0.1:8000/ingest/NAME] [--realtime]",
    );
    return;
  }
  const redis = flags.redis ?? env("REDIS_URL") ?? "redis://127.0.0.1:6379";
  const stream = flags.stream ?? env("OCYCLE_STREAM") ?? "edge";
  const group = flags.group ?? "ocycle";

  if (flags._[0] === "send") {
    const file = flags._[1];
    if (file === undefined) throw new TypeError("send: name a file to send");
    const url = flags.url ?? "ws://127.0.0.1:8000/ingest/ws";
    console.log(JSON.stringify(await send(url, file, flags.realtime), null, 2));
    return;
  }
  if (flags._[0] === "worker") {
    // What `ocycle worker --module examples/edge_model.ts` does, embedded.
    const worker = runWorker({
      url: redis,
      stream,
      group,
      module: flags.module ?? MODEL,
      mode: (flags.mode ?? "serial") as "serial" | "thread" | "process",
      ...(flags.pool === undefined ? {} : { pool: Number(flags.pool) }),
    });
    using _ = closeOnSignals({
      close: async () => void await worker.shutdown(),
      abort: async () => void await worker.abort(),
    });
    console.log(`worker ${worker.name} on ${stream} at ${redact(redis)}`);
    console.log("stopped:", await worker.finished);
    return;
  }

  const ingest = createIngest({
    redis,
    stream,
    group,
    ...count("--timeout", flags.timeout, "timeout"),
    ...count("--max-uploads", flags["max-uploads"], "maxUploads"),
    ...count("--idle-timeout", flags["idle-timeout"], "idleTimeout"),
  });
  using shutdown = closeOnSignals(ingest, {
    onSignal: (signal, action) =>
      console.log(
        action === "close"
          ? `${signal}: answering every upload with what it sent so far (again to abort)`
          : `${signal}: aborting`,
      ),
  });
  const server = Deno.serve({
    port: Number(flags.port ?? env("PORT") ?? 8000),
    hostname: flags.hostname ?? "127.0.0.1",
    onListen: ({ hostname, port }) =>
      console.log(
        `listening on http://${hostname}:${port}: POST /ingest/NAME (or a WebSocket there); model chunks to stream "${stream}" at ${
          redact(redis)
        }`,
      ),
  }, ingest.handler);
  // Answer every upload first (WebSockets included), then stop serving.
  await new Promise((resolve) =>
    shutdown.signal.addEventListener("abort", resolve, { once: true })
  );
  await ingest.close();
  // A client still sending after its answer (a live stream) holds its
  // connection, and the graceful shutdown, open for as long as it sends:
  // give the answers a moment to leave, then go.
  await Promise.race([
    server.shutdown(),
    new Promise((resolve) => setTimeout(resolve, 1000)),
  ]);
  console.log("stopped");
  Deno.exit(0);
}

if (import.meta.main) await main(Deno.args);
