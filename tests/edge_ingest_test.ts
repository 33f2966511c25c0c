// Copyright the @ocycle/core authors. MIT license.
// The edge ingest example (examples/edge_ingest.ts) against a real
// redis-server and a real fleet worker: a streamed WAV upload, a WebSocket,
// a WAV in the wrong format, and the example as a program with --allow-net
// only, stopped by SIGINT.

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { runWorker } from "../redis.ts";
import { encodeWav } from "../examples/audio/wav.ts";
import {
  Acks,
  createIngest,
  MODEL,
  redact,
  send,
  type Summary,
} from "../examples/edge_ingest.ts";
import { RedisClient } from "../src/fleet/_client.ts";
import { freePort, RedisServer, skipWithoutRedis } from "./_redis_server.ts";

const ignore = skipWithoutRedis("edge_ingest_test.ts");
const ROOT = new URL("../", import.meta.url).pathname;
const IMPORT_MAP = new URL("../.ci/import_map.json", import.meta.url).pathname;
const RATE = 16000;

/** 2 s of a voice-like buzz, 2 s of near silence, 1 s of buzz. */
function audio(): Int16Array {
  const samples = new Int16Array(5 * RATE);
  for (let i = 0; i < samples.length; i++) {
    const t = i / RATE;
    if (t >= 2 && t < 4) {
      samples[i] = i % 7 - 3;
      continue;
    }
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(2 * Math.PI * 150 * h * t) / h;
    samples[i] = Math.round(6000 * v);
  }
  return samples;
}

/** A body in odd-sized pieces: the WAV header and samples split anywhere. */
function pieces(bytes: Uint8Array, size = 1001): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

function checkSummary(summary: Summary, name: string): void {
  assertEquals(summary.name, name);
  assertEquals(summary.format, "wav");
  assertEquals(summary.seconds, 5);
  assertEquals(summary.chunks, { meter: 10, model: 3 });
  assertEquals(summary.levels.map((l) => l.at), [
    0,
    0.5,
    1,
    1.5,
    2,
    2.5,
    3,
    3.5,
    4,
    4.5,
  ]);
  assert(summary.levels[0]!.rmsDbfs > -30 && summary.levels[4]!.rmsDbfs < -60);
  assertEquals(summary.errors, []);
  assertEquals(summary.model.map((r) => [r.index, r.at, r.seconds, r.voice]), [
    [0, 0, 2, true],
    [1, 2, 2, false],
    [2, 4, 1, true],
  ]);
}

Deno.test({
  name:
    "edge ingest answers an upload with levels and the fleet's model results",
  ignore,
}, async (t) => {
  await using redis = await RedisServer.start();
  const stream = "edge";
  const worker = runWorker({
    url: redis.url,
    stream,
    module: MODEL,
    mode: "serial",
    log: () => {},
  });
  const lines: string[] = [];
  const ingest = createIngest({
    redis: redis.url,
    stream,
    log: (line) => lines.push(line),
  });
  const wav = encodeWav(audio(), RATE) as Uint8Array<ArrayBuffer>;
  try {
    await t.step(
      "a streamed POST body, the header split across pieces",
      async () => {
        const response = await ingest.handler(
          new Request("http://edge/ingest/mic1", {
            method: "POST",
            body: pieces(wav),
          }),
        );
        assertEquals(response.status, 200);
        const summary: Summary = await response.json();
        checkSummary(summary, "mic1");
        assertEquals(summary.transport, "http");
        assert(lines.some((l) => l.startsWith("[mic1] done: 5 s, 10 levels")));
      },
    );

    await t.step("raw PCM with no header", async () => {
      const response = await ingest.handler(
        new Request("http://edge/ingest/raw", {
          method: "PUT",
          body: pieces(wav.subarray(44), 333),
        }),
      );
      const summary: Summary = await response.json();
      assertEquals(summary.format, "raw");
      assertEquals(summary.chunks, { meter: 10, model: 3 });
    });

    await t.step("a WAV cut before its samples holds none", async () => {
      const response = await ingest.handler(
        new Request("http://edge/ingest/cut", {
          method: "POST",
          body: wav.slice(0, 30),
        }),
      );
      const summary: Summary = await response.json();
      assertEquals([summary.format, summary.seconds], ["wav", 0]);
      assertEquals(summary.chunks, { meter: 0, model: 0 });
    });

    await t.step(
      "a WAV that is not 16 kHz mono is refused with 415",
      async () => {
        const stereo = encodeWav(
          new Int16Array(2 * RATE),
          RATE,
          2,
        ) as Uint8Array<
          ArrayBuffer
        >;
        const response = await ingest.handler(
          new Request("http://edge/ingest/stereo", {
            method: "POST",
            body: stereo,
          }),
        );
        assertEquals(response.status, 415);
        assertStringIncludes(await response.text(), "2 channel(s)");
      },
    );

    await t.step(
      "a WebSocket, acknowledged, answered with the summary",
      async () => {
        const dir = await Deno.makeTempDir({ prefix: "ocycle_edge_" });
        const server = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen: () => {} },
          ingest.handler,
        );
        try {
          await Deno.writeFile(`${dir}/speech.wav`, wav);
          const summary = await send(
            `ws://127.0.0.1:${server.addr.port}/ingest/ws1`,
            `${dir}/speech.wav`,
          ) as Summary;
          checkSummary(summary, "ws1");
          assertEquals(summary.transport, "websocket");
        } finally {
          await server.shutdown();
          await Deno.remove(dir, { recursive: true });
        }
      },
    );
  } finally {
    await ingest.close();
    const stats = await worker.shutdown();
    assertEquals(stats.failed, 0);
  }
});

Deno.test({
  name:
    "edge ingest runs with --allow-net only and answers its uploads on SIGINT",
  ignore,
}, async () => {
  await using redis = await RedisServer.start();
  const worker = runWorker({
    url: redis.url,
    stream: "edge",
    module: MODEL,
    mode: "serial",
    log: () => {},
  });
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net",
      `--import-map=${IMPORT_MAP}`,
      "examples/edge_ingest.ts",
      "--port",
      String(port),
      "--redis",
      redis.url,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Its stdout, read as it comes, so that the test can wait for a line.
  let text = "";
  const decoder = new TextDecoder();
  const reading = child.stdout.pipeTo(
    new WritableStream({
      write: (bytes) => void (text += decoder.decode(bytes)),
    }),
  );
  const stderr = new Response(child.stderr).text();
  const until = async (line: string) => {
    for (let i = 0; i < 400 && !text.includes(line); i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assertStringIncludes(text, line);
  };
  try {
    let body = "";
    for (let i = 0; i < 200; i++) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/`);
        body = await response.text();
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    assertStringIncludes(body, "/ingest/NAME");
    // An upload that is still sending when the signal comes is answered
    // with what it sent so far.
    let sendMore!: () => void;
    const more = new Promise<void>((resolve) => sendMore = resolve);
    const wav = encodeWav(audio(), RATE) as Uint8Array<ArrayBuffer>;
    const upload = fetch(`http://127.0.0.1:${port}/ingest/live`, {
      method: "POST",
      body: new ReadableStream({
        async start(controller) {
          controller.enqueue(wav.slice(0, 44 + 3 * RATE * 2));
          await more;
          controller.close();
        },
      }),
    });
    const done = await fetch(`http://127.0.0.1:${port}/ingest/mic1`, {
      method: "POST",
      body: wav,
    });
    checkSummary(await done.json(), "mic1");
    await until("[live] model 0 at 0 s"); // it has read 2 s at least
    child.kill("SIGINT");
    const response = await upload;
    const summary: Summary = await response.json();
    assertEquals(summary.stopped, "signal");
    assert(summary.seconds > 2 && summary.seconds <= 3, `${summary.seconds}`);
    assertEquals(summary.chunks, {
      meter: Math.ceil(summary.seconds * 2),
      model: 2,
    });
    assertEquals(summary.model.length, 2);
    sendMore();
    const { code } = await child.status;
    await reading;
    assertEquals(code, 0, text + (await stderr));
    assertStringIncludes(text, "SIGINT: answering every upload");
    assertStringIncludes(text, `[live] done: ${summary.seconds} s`);
    assertStringIncludes(text, "stopped");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // it has exited
    }
    await child.status;
    await reading.catch(() => {});
    await stderr;
    await worker.shutdown();
  }
});

Deno.test({
  name: "createIngest() stops reading an upload while the fleet is behind",
  ignore,
}, async () => {
  await using redis = await RedisServer.start();
  const ingest = createIngest({
    redis: redis.url,
    stream: "edge",
    log: () => {},
  });
  // 60 s of audio in 100 ms pieces, counting what the server has pulled.
  const seconds = 60, piece = RATE / 10 * 2;
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= seconds * RATE * 2) return controller.close();
      controller.enqueue(new Uint8Array(piece).fill(pulled % 251));
      pulled += piece;
    },
  }, { highWaterMark: 0 });
  const answer = ingest.handler(
    new Request("http://edge/ingest/slow", { method: "POST", body }),
  );
  let worker: ReturnType<typeof runWorker> | undefined;
  try {
    // No worker yet: 4 model chunks in flight and 4 waiting (16 s), then
    // the reading stops.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const stalled = pulled;
    assert(stalled < 20 * RATE * 2, `read ${stalled / (RATE * 2)} s`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assertEquals(pulled, stalled);
    worker = runWorker({
      url: redis.url,
      stream: "edge",
      module: MODEL,
      mode: "serial",
      log: () => {},
    });
    const summary: Summary = await (await answer).json();
    assertEquals(summary.seconds, seconds);
    assertEquals(summary.model.length, 30);
    assertEquals(summary.errors, []);
    assert(summary.backpressure.waits > 0);
    assert(summary.backpressure.ms >= 1000, `${summary.backpressure.ms} ms`);
  } finally {
    await ingest.close();
    await worker?.shutdown();
  }
});

// RELIABILITY item 51 (issue 15, item 7): per-connection bounds in messages
// and bytes, abusive sockets closed, a fixed number of Redis connections per
// process, a cap on concurrent uploads (503 + Retry-After), the password
// redacted in every form. The tests below run the example as a program.

/** The example as a program: `deno run --allow-net [extra] examples/edge_ingest.ts args`. */
class Example {
  readonly port = freePort();
  readonly child: Deno.ChildProcess;
  text = "";
  readonly #reading: Promise<void>;

  constructor(
    args: string[],
    { ulimit, permissions = [] }: { ulimit?: number; permissions?: string[] } =
      {},
  ) {
    const argv = [
      Deno.execPath(),
      "run",
      "--no-prompt",
      "--allow-net",
      ...permissions,
      `--import-map=${IMPORT_MAP}`,
      "examples/edge_ingest.ts",
      ...args,
      ...(args[0] === "worker" ? [] : ["--port", String(this.port)]),
    ];
    // With a file descriptor limit, through a shell that sets it and execs
    // deno: the pid stays deno's.
    const [command, ...rest] = ulimit === undefined
      ? argv
      : ["sh", "-c", `ulimit -n ${ulimit} && exec "$@"`, "sh", ...argv];
    this.child = new Deno.Command(command!, {
      args: rest,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const decoder = new TextDecoder();
    const sink = () =>
      new WritableStream<Uint8Array>({
        write: (bytes) => void (this.text += decoder.decode(bytes)),
      });
    this.#reading = Promise.all([
      this.child.stdout.pipeTo(sink()),
      this.child.stderr.pipeTo(sink()),
    ]).then(() => {});
  }

  /** Waits until its output holds `line`, for at most 20 s. */
  async until(line: string | RegExp, count = 1): Promise<void> {
    const seen = () =>
      typeof line === "string"
        ? this.text.split(line).length - 1
        : (this.text.match(new RegExp(line, "g"))?.length ?? 0);
    for (let i = 0; i < 800 && seen() < count; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert(seen() >= count, `never printed ${line} (${count}):\n${this.text}`);
  }

  /** Its resident memory, in MiB. */
  async rss(): Promise<number> {
    const status = await Deno.readTextFile(`/proc/${this.child.pid}/status`);
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
  }

  /** Its open file descriptors. */
  async fds(): Promise<number> {
    let n = 0;
    for await (const _ of Deno.readDir(`/proc/${this.child.pid}/fd`)) n++;
    return n;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // it has exited
    }
    await this.child.status;
    await this.#reading.catch(() => {});
  }
}

/** A WebSocket to the example, with its close event and messages kept. */
class Socket {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  readonly messages: string[] = [];

  constructor(url: string) {
    const ws = this.ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => void this.messages.push(String(event.data));
    this.opened = new Promise((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
    });
    this.closed = new Promise((resolve) => ws.onclose = resolve);
    this.opened.catch(() => {});
  }

  /** The bytes the last ack said were taken; 0 before any. */
  get acked(): number {
    for (let i = this.messages.length - 1; i >= 0; i--) {
      const message = JSON.parse(this.messages[i]!);
      if (typeof message.ack === "number") return message.ack;
    }
    return 0;
  }

  /** Closes it (if open) and waits for the close. */
  async close(): Promise<CloseEvent> {
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close();
    return await this.closed;
  }
}

/** Settles with `promise`, or rejects once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number, what: string) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: not within ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The clients connected to the server, as CLIENT LIST counts them. */
async function clients(admin: RedisClient): Promise<number> {
  const reply = await admin.command("CLIENT", "LIST");
  const text = typeof reply === "string"
    ? reply
    : new TextDecoder().decode(reply as Uint8Array);
  return text.split("\n").filter((line) => line.startsWith("id=")).length;
}

Deno.test({
  name:
    "edge ingest (the program) keeps its Redis connections and file descriptors fixed however many uploads are open",
  ignore,
}, async () => {
  await using redis = await RedisServer.start();
  const admin = await RedisClient.connect(redis.url);
  const worker = runWorker({
    url: redis.url,
    stream: "edge",
    module: MODEL,
    mode: "serial",
    log: () => {},
  });
  const idle: Socket[] = [];
  const hanging: AbortController[] = [];
  // 60 idle uploads under a limit of 128 descriptors: two Redis
  // connections per upload would need 120 more than the uploads' own.
  const N = 60;
  await using example = new Example(["--redis", redis.url], { ulimit: 128 });
  try {
    await example.until("listening on");
    const base = `http://127.0.0.1:${example.port}/ingest`;
    const wav = encodeWav(audio(), RATE) as Uint8Array<ArrayBuffer>;
    // A first upload: the producer is connected from now on.
    const first = await fetch(`${base}/first`, { method: "POST", body: wav });
    checkSummary(await first.json(), "first");
    const before = await clients(admin);
    const fdsBefore = await example.fds();

    for (let i = 0; i < N / 2; i++) {
      const socket = new Socket(`ws://127.0.0.1:${example.port}/ingest/ws${i}`);
      idle.push(socket);
      await socket.opened;
      socket.ws.send(wav.slice(0, 44 + RATE)); // header and 0.5 s, then nothing
      const controller = new AbortController();
      hanging.push(controller);
      fetch(`${base}/post${i}`, {
        method: "POST",
        signal: controller.signal,
        body: new ReadableStream({
          start(c) {
            c.enqueue(wav.slice(0, 44 + RATE)); // and never the end
          },
        }),
      }).then((r) => r.body?.cancel(), () => {});
    }
    await example.until(/\] (websocket|http) upload started/, N + 1);
    const during = await clients(admin);
    const fdsDuring = await example.fds();
    // Each upload holds its own socket, and nothing more.
    assertEquals(during, before, "Redis connections grew with the uploads");
    assert(
      fdsDuring - fdsBefore <= N + 4,
      `${fdsDuring - fdsBefore} descriptors for ${N} uploads`,
    );
    // With all of them open, an upload still runs its model chunks.
    const last = await fetch(`${base}/last`, { method: "POST", body: wav });
    checkSummary(await last.json(), "last");
    assertEquals(await clients(admin), before);
  } finally {
    await Promise.all(idle.map((socket) => socket.close()));
    for (const controller of hanging) controller.abort();
    await example[Symbol.asyncDispose]();
    await worker.shutdown();
    await admin.close();
  }
});

Deno.test({
  name:
    "edge ingest (the program) closes abusive WebSockets with 1008, 1009 or 1003, its memory bounded, and answers uploads past its cap with 503 and Retry-After",
  ignore,
}, async (t) => {
  // No worker: the model's fleet is behind, and the server stops taking.
  await using redis = await RedisServer.start();
  await using example = new Example([
    "--redis",
    redis.url,
    "--max-uploads",
    "3",
  ]);
  const ws = (name: string) =>
    new Socket(`ws://127.0.0.1:${example.port}/ingest/${name}`);
  await example.until("listening on");

  /** A socket that sent 12 s of audio: more than the fleet-less model takes
   * (one chunk out, four waiting), so the server has stopped taking. */
  const stalled = async (name: string) => {
    const socket = ws(name);
    await socket.opened;
    const piece = new Uint8Array(3200).map((_, i) => i * 7);
    for (let i = 0; i < 120; i++) socket.ws.send(piece);
    await example.until(`[${name}] websocket upload started`);
    // Until no ack comes any more.
    let acked = -1;
    while (acked !== socket.acked) {
      acked = socket.acked;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    const taken = acked / 3200;
    assert(taken < 120, `${taken} taken: the server never stopped taking`);
    return { socket, unacked: 120 - taken };
  };

  await t.step("one message past 256 unacknowledged: 1008", async () => {
    const { socket, unacked } = await stalled("count");
    // Tiny messages up to one past the bound, then nothing: a clean close.
    for (let i = unacked; i <= 256; i++) socket.ws.send(new Uint8Array(1));
    const closed = await within(socket.closed, 20_000, "the close");
    assertEquals([closed.code, closed.wasClean], [1008, true], example.text);
    assertStringIncludes(closed.reason, "wait for acks");
  });

  await t.step("a flood of tiny messages: closed, memory bounded", async () => {
    const { socket } = await stalled("flood");
    const before = await example.rss();
    // 200 000 one-byte messages would go nowhere but the server's memory.
    // (A client that goes on sending after the server's close frame sees
    // the connection drop rather than the code: the server's log says it.)
    const one = new Uint8Array(1);
    for (
      let i = 0;
      i < 200_000 && socket.ws.readyState === WebSocket.OPEN;
      i++
    ) {
      socket.ws.send(one);
      if (i % 1000 === 0) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
    await within(socket.closed, 20_000, "the flood's close");
    await example.until("[flood] closed with 1008: too far ahead");
    const after = await example.rss();
    assert(after - before < 64, `grew ${(after - before).toFixed(0)} MiB`);
  });

  await t.step("a message over 1 MiB: 1009", async () => {
    const socket = ws("big");
    await socket.opened;
    socket.ws.send(new Uint8Array(2 * 1024 * 1024));
    const closed = await within(socket.closed, 20_000, "the big close");
    assertEquals(closed.code, 1009, closed.reason);
  });

  await t.step("a text message other than end: 1003", async () => {
    const socket = ws("text");
    await socket.opened;
    socket.ws.send("hello");
    const closed = await within(socket.closed, 20_000, "the text close");
    assertEquals(closed.code, 1003, closed.reason);
  });

  await t.step("past --max-uploads: 503 with Retry-After", async () => {
    // The refused sockets' slots are free again.
    await example.until("[text] closed with 1003");
    const held = [ws("a"), ws("b"), ws("c")];
    try {
      await Promise.all(held.map((socket) => socket.opened));
      await example.until(/\[[abc]\] websocket upload started/, 3);
      const busy = await fetch(
        `http://127.0.0.1:${example.port}/ingest/more`,
        { method: "POST", body: new Uint8Array(0) },
      );
      assertEquals(busy.status, 503);
      assertEquals(busy.headers.get("retry-after"), "5");
      assertStringIncludes(await busy.text(), "3 uploads at once at most");
      // A WebSocket is refused before its upgrade.
      const refused = ws("more");
      await assertRejects(() => refused.opened);
      await refused.closed;
      // One ends: room for one more.
      await held.pop()!.close();
      await example.until("[c] done:");
      const room = await fetch(
        `http://127.0.0.1:${example.port}/ingest/more`,
        { method: "POST", body: new Uint8Array(0) },
      );
      assertEquals(room.status, 200);
      assertEquals((await room.json()).seconds, 0);
    } finally {
      await Promise.all(held.map((socket) => socket.close()));
    }
  });
});

Deno.test("redact() hides the password of a Redis URL in every form", () => {
  const cases: [string, string][] = [
    ["redis://s3cret@h:6379", "redis://***@h:6379"],
    ["redis://:s3cret@h:6379/2", "redis://:***@h:6379/2"],
    ["redis://alice:s3cret@h", "redis://alice:***@h"],
    ["rediss://alice:s3cret@h", "rediss://alice:***@h"],
    // What a URL parser would read as a port, a path or a fragment
    ["redis://alice:12#s3cret@h", "redis://alice:***@h"],
    ["redis://:s3/cret@h", "redis://:***@h"],
    ["redis://:s3@cret@h", "redis://:***@h"],
    ["redis://h:6379", "redis://h:6379"],
    // No URL at all: perhaps the password itself
    ["s3cret", "(not a URL: not shown)"],
  ];
  for (const [url, shown] of cases) assertEquals(redact(url), shown);
});

Deno.test({
  name:
    "edge ingest (the program) never prints the Redis password at start-up, whatever the URL's form",
  ignore,
}, async () => {
  const password = `pw${crypto.randomUUID().replaceAll("-", "")}`;
  await using redis = await RedisServer.start(["--requirepass", password]);
  const host = `127.0.0.1:${redis.port}`;
  const forms = [
    `redis://${password}@${host}`,
    `redis://:${password}@${host}`,
    `redis://default:${password}@${host}`,
  ];
  const examples = forms.map((url) => new Example(["--redis", url]));
  // The embedded worker prints the URL too.
  examples.push(
    new Example(["worker", "--redis", forms[0]!], {
      permissions: ["--allow-read=examples/edge_model.ts"],
    }),
  );
  try {
    for (const example of examples.slice(0, 3)) {
      await example.until("listening on");
    }
    await examples[3]!.until("worker ");
    for (const [i, example] of examples.entries()) {
      assert(
        !example.text.includes(password),
        `form ${i} printed the password:\n${example.text}`,
      );
      assertStringIncludes(example.text, `***@${host}`);
    }
  } finally {
    for (const example of examples) await example[Symbol.asyncDispose]();
  }
});

Deno.test({
  name:
    "createIngest() ends an upload that sends nothing for idleTimeout ms: a POST with 408 and what it sent, a WebSocket with 1008 after its summary",
  ignore,
}, async (t) => {
  await using redis = await RedisServer.start();
  let worker: ReturnType<typeof runWorker> | undefined;
  const ingest = createIngest({
    redis: redis.url,
    stream: "edge",
    idleTimeout: 300,
    log: () => {},
  });
  const wav = encodeWav(audio(), RATE) as Uint8Array<ArrayBuffer>;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    ingest.handler,
  );
  try {
    await t.step("waiting for the fleet is not idle", async () => {
      // 20 s of audio, there at once: with no worker the model stops
      // taking after about 10 s, and for a second nothing is read.
      const long = new Uint8Array(20 * RATE * 2).map((_, i) => i * 7);
      const posted = ingest.handler(
        new Request("http://edge/ingest/posted", {
          method: "POST",
          body: pieces(long, 3200),
        }),
      );
      const socket = new Socket(
        `ws://127.0.0.1:${server.addr.port}/ingest/socket`,
      );
      await socket.opened;
      for (let at = 0; at < long.length; at += 3200) {
        socket.ws.send(long.subarray(at, at + 3200));
      }
      // The socket waits for its acks (and sends nothing) for a second.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      worker = runWorker({
        url: redis.url,
        stream: "edge",
        module: MODEL,
        mode: "serial",
        log: () => {},
      });
      for (let i = 0; i < 800 && socket.acked < long.length; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assertEquals(socket.acked, long.length, "every message acknowledged");
      socket.ws.send("end");
      const response = await within(posted, 20_000, "the POST's answer");
      assertEquals(response.status, 200);
      const summary: Summary = await response.json();
      assertEquals([summary.seconds, summary.model.length], [20, 10]);
      assertEquals(summary.stopped, undefined);
      const closed = await within(socket.closed, 20_000, "the socket's end");
      assertEquals(closed.code, 1000, closed.reason);
      const last = JSON.parse(socket.messages.at(-1)!) as Summary;
      assertEquals([last.seconds, last.model.length], [20, 10]);
    });
    await t.step("a POST body that stops", async () => {
      let cancelled = false;
      const response = await within(
        ingest.handler(
          new Request("http://edge/ingest/stalled", {
            method: "POST",
            body: new ReadableStream({
              start(controller) {
                controller.enqueue(wav.slice(0, 44 + 3 * RATE * 2)); // 3 s
              },
              cancel() {
                cancelled = true;
              },
            }),
          }),
        ),
        10_000,
        "the answer",
      );
      assertEquals(response.status, 408);
      const summary: Summary = await response.json();
      assertEquals(summary.seconds, 3);
      assertEquals(summary.stopped, "no data for 300 ms");
      assertEquals(summary.model.length, 2);
      assert(cancelled);
    });
    await t.step("a WebSocket that sends nothing", async () => {
      const socket = new Socket(
        `ws://127.0.0.1:${server.addr.port}/ingest/quiet`,
      );
      await socket.opened;
      const closed = await within(socket.closed, 10_000, "the idle close");
      assertEquals(closed.code, 1008);
      assertEquals(closed.reason, "no data for 300 ms");
      assertEquals(JSON.parse(socket.messages.at(-1)!).seconds, 0);
    });
  } finally {
    await server.shutdown();
    await ingest.close();
    await worker?.shutdown();
  }
});

Deno.test("Acks sends no ack while one waits to leave, then one with the latest count", async () => {
  const sent: string[] = [];
  const socket = {
    readyState: WebSocket.OPEN as number,
    bufferedAmount: 0,
    send: (data: string) => void sent.push(data),
  } as unknown as WebSocket;
  const acks = new Acks(socket);
  acks.ack(3200);
  assertEquals(sent, [`{"ack":3200}`]);
  // A client that reads nothing: the socket holds what it sent.
  (socket as { bufferedAmount: number }).bufferedAmount = 20;
  for (let n = 2; n <= 1000; n++) acks.ack(n * 3200);
  assertEquals(sent.length, 1);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assertEquals(sent.length, 1);
  (socket as { bufferedAmount: number }).bufferedAmount = 0;
  await new Promise((resolve) => setTimeout(resolve, 60));
  assertEquals(sent, [`{"ack":3200}`, `{"ack":3200000}`]);
  acks.ack(3200001);
  acks.stop();
  acks.ack(3200002);
  assertEquals(sent.at(-1), `{"ack":3200001}`);
});
