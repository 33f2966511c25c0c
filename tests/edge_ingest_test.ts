// Copyright the @ocycle/core authors. MIT license.
// The edge ingest example (examples/edge_ingest.ts) against a real
// redis-server and a real fleet worker: a streamed WAV upload, a WebSocket,
// a WAV in the wrong format, and the example as a program with --allow-net
// only, stopped by SIGINT.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { runWorker } from "../redis.ts";
import { encodeWav } from "../examples/audio/wav.ts";
import {
  createIngest,
  MODEL,
  send,
  type Summary,
} from "../examples/edge_ingest.ts";
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
