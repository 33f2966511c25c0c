// Copyright the @ocycle/core authors. MIT license.
// The Redis client against a real redis-server that each test starts on a free
// loopback port and stops. Without redis-server the server tests are skipped
// (and say why), except under CI=true, where they fail.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { deadline } from "@std/async";
import { RedisClient } from "../src/fleet/_client.ts";
import { RedisConnectionError, RedisError } from "../src/fleet/_errors.ts";
import {
  CommandBuffer,
  ErrorReply,
  type Reply,
  ReplyDecoder,
} from "../src/fleet/_resp.ts";
import { NOT_A_URL, parseRedisUrl, redactUrl } from "../src/fleet/_url.ts";
import { backoff, isRetryable } from "../src/run/_retry_policy.ts";
import {
  Script,
  xack,
  xadd,
  xautoclaim,
  xclaimJustId,
  xdel,
  xgroupCreate,
  xpending,
  xreadgroup,
} from "../src/fleet/_streams.ts";
import {
  freePort,
  hasOpenssl,
  RedisServer,
  skipWithoutRedis,
} from "./_redis_server.ts";

const ignore = skipWithoutRedis("redis_client_test.ts");

const encoder = new TextEncoder();
const text = (reply: Reply) => new TextDecoder().decode(reply as Uint8Array);

function allBytes(): Uint8Array {
  return Uint8Array.from({ length: 256 }, (_, i) => i);
}

function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)));
  }
  return bytes;
}

Deno.test("ReplyDecoder decodes replies fed one byte at a time", () => {
  const big = randomBytes(100_000);
  const wire = new Uint8Array([
    ...encoder.encode(
      "+OK\r\n-ERR bad thing\r\n:42\r\n:-7\r\n:9223372036854775807\r\n" +
        "$5\r\nhe\r\nl\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n" +
        "*3\r\n$1\r\na\r\n*2\r\n:1\r\n-NOPE x\r\n+s\r\n" +
        "_\r\n#t\r\n#f\r\n,1.5\r\n,inf\r\n(12345678901234567890\r\n" +
        "=8\r\ntxt:hiya\r\n!5\r\nERR x\r\n%1\r\n+k\r\n:1\r\n~2\r\n:1\r\n:2\r\n" +
        "|1\r\n+ttl\r\n:3\r\n:99\r\n",
    ),
    ...encoder.encode(`$${big.length}\r\n`),
    ...big,
    ...encoder.encode("\r\n"),
  ]);
  const expected: Reply[] = [
    "OK",
    new ErrorReply("ERR bad thing"),
    42,
    -7,
    9223372036854775807n,
    encoder.encode("he\r\nl"),
    new Uint8Array(),
    null,
    null,
    [],
    [encoder.encode("a"), [1, new ErrorReply("NOPE x")], "s"],
    null,
    true,
    false,
    1.5,
    Infinity,
    12345678901234567890n,
    encoder.encode("hiya"),
    new ErrorReply("ERR x"),
    ["k", 1],
    [1, 2],
    99,
    big,
  ];
  const whole = new ReplyDecoder();
  whole.feed(wire);
  assertEquals(whole.take(), expected);
  assert(!whole.partial);

  const byByte = new ReplyDecoder();
  const replies: Reply[] = [];
  for (let i = 0; i < wire.length; i++) {
    byByte.feed(wire.subarray(i, i + 1));
    replies.push(...byByte.take());
  }
  assertEquals(replies, expected);

  // random cuts, and a reader that fills bulk strings in place
  const cut = new ReplyDecoder();
  const direct: Reply[] = [];
  for (let at = 0; at < wire.length;) {
    const size = 1 + Math.floor(Math.random() * 5000);
    const target = cut.bulkTarget();
    if (target !== null && target.length > 0) {
      const n = Math.min(size, target.length);
      target.set(wire.subarray(at, at + n));
      cut.filled(n);
      at += n;
    } else {
      cut.feed(wire.subarray(at, at + size));
      at += size;
    }
    direct.push(...cut.take());
  }
  assertEquals(direct, expected);
});

Deno.test("ReplyDecoder copies what it keeps: short bulk strings (at most 256 bytes, in a shared slab) and longer ones alike", () => {
  // Enough short strings to fill several slabs, and the lengths at the edge.
  const strings = [
    ...Array.from({ length: 200 }, (_, i) => randomBytes(1 + (i * 37) % 256)),
    randomBytes(256),
    randomBytes(257),
    new Uint8Array(),
  ];
  const wire = new Uint8Array([
    ...encoder.encode(`*${strings.length}\r\n`),
    ...strings.flatMap((bytes) => [
      ...encoder.encode(`$${bytes.length}\r\n`),
      ...bytes,
      ...encoder.encode("\r\n"),
    ]),
  ]);
  const decoder = new ReplyDecoder();
  decoder.feed(wire);
  wire.fill(0x41); // the caller reuses its buffer
  const [reply] = decoder.take() as Uint8Array[][];
  assertEquals(reply, strings);
  // no two of them share bytes
  reply![0]![0] = reply![0]![0]! ^ 0xff;
  assertEquals(reply!.slice(1), strings.slice(1));
});

Deno.test("ReplyDecoder takes a 1 MiB bulk string in one allocation", () => {
  const value = randomBytes(1 << 20);
  const wire = new Uint8Array([
    ...encoder.encode(`$${value.length}\r\n`),
    ...value,
    ...encoder.encode("\r\n"),
  ]);
  const decoder = new ReplyDecoder();
  const started = performance.now();
  for (let at = 0; at < wire.length; at += 1000) {
    decoder.feed(wire.subarray(at, at + 1000));
  }
  const [reply] = decoder.take();
  const ms = performance.now() - started;
  assertEquals(reply, value);
  console.log(`  1 MiB bulk string in 1000-byte reads: ${ms.toFixed(1)} ms`);
  assert(ms < 1000, `decoding took ${ms} ms`);
});

Deno.test("ReplyDecoder refuses a reply line that never ends", () => {
  const decoder = new ReplyDecoder();
  const chunk = new TextEncoder().encode("+" + "x".repeat(64 * 1024 - 1));
  assertThrows(
    () => {
      for (let i = 0; i < 17; i++) decoder.feed(chunk);
    },
    RangeError,
    "a line runs past 1048576 bytes without CRLF",
  );
  // One just under the bound is read.
  const ok = new ReplyDecoder();
  ok.feed(new TextEncoder().encode("+" + "y".repeat(1024 * 1024 - 4)));
  ok.feed(new TextEncoder().encode("\r\n"));
  assertEquals((ok.take()[0] as string).length, 1024 * 1024 - 4);
});

Deno.test("ReplyDecoder rejects a malformed reply", () => {
  const decoder = new ReplyDecoder();
  let error: unknown;
  try {
    decoder.feed(encoder.encode("?what\r\n"));
  } catch (e) {
    error = e;
  }
  assertInstanceOf(error, RangeError);
});

Deno.test("ReplyDecoder refuses a bulk string not followed by CRLF, short (the slab's) or long, whole or split", () => {
  const long = "x".repeat(300);
  for (
    const wire of [
      "$3\r\nabcXY\r\n",
      "$3\r\nabc\rX",
      `$${long.length}\r\n${long}XY\r\n`,
    ]
  ) {
    const bytes = encoder.encode(wire);
    assertThrows(
      () => new ReplyDecoder().feed(bytes),
      RangeError,
      "a bulk string is not followed by CRLF",
      wire,
    );
    const split = new ReplyDecoder();
    assertThrows(
      () => {
        for (let i = 0; i < bytes.length; i++) {
          split.feed(bytes.subarray(i, i + 1));
        }
      },
      RangeError,
      "a bulk string is not followed by CRLF",
      wire,
    );
  }
});

/** The bytes of one command, as the client writes them. */
function encodeCommand(
  args: Parameters<CommandBuffer["append"]>[0],
): Uint8Array {
  const out = new CommandBuffer(64);
  out.append(args);
  return out.bytes.slice(0, out.length);
}

Deno.test("CommandBuffer writes strings, bytes and numbers as bulk strings", () => {
  assertEquals(
    new TextDecoder().decode(
      encodeCommand(["SET", "k\u00e9", new Uint8Array([0, 13, 10]), 12]),
    ),
    "*4\r\n$3\r\nSET\r\n$3\r\nk\u00e9\r\n$3\r\n\0\r\n\r\n$2\r\n12\r\n",
  );
});

Deno.test("CommandBuffer writes commands one after another, lengths as decimal, and cuts one out", () => {
  const out = new CommandBuffer(4);
  const text = (from = 0, to = out.length) =>
    new TextDecoder().decode(out.bytes.subarray(from, to));
  const first = out.append(["SET", "x", 0]);
  const second = out.append(["ECHO", new Uint8Array(10), "\u00e9t\u00e9", 105]);
  assertEquals(first, 27);
  assertEquals(text(0, first), "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\n0\r\n");
  assertEquals(
    text(first),
    "*4\r\n$4\r\nECHO\r\n$10\r\n\0\0\0\0\0\0\0\0\0\0\r\n$5\r\n\u00e9t\u00e9\r\n$3\r\n105\r\n",
  );
  assertEquals(out.length, first + second);
  // a command that throws leaves nothing behind
  assertThrows(() => out.append(["SET", "y", NaN]), TypeError, "non-finite");
  assertEquals(out.length, first + second);
  out.remove(0, first);
  assertEquals(out.length, second);
  assertEquals(text(0, 14), "*4\r\n$4\r\nECHO\r\n");
  out.clear();
  assertEquals(out.length, 0);
  out.append(["PING"]);
  assertEquals(text(), "*1\r\n$4\r\nPING\r\n");
});

Deno.test("CommandBuffer writes U+0080 and up as UTF-8, makes room for a long one, and writes an empty string as $0", () => {
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assertEquals(
    encodeCommand(["ECHO", "\u0080", "\u007f"]),
    new Uint8Array([
      ...encoder.encode("*3\r\n$4\r\nECHO\r\n$2\r\n"),
      0xc2,
      0x80,
      ...encoder.encode("\r\n$1\r\n\x7f\r\n"),
    ]),
  );
  // 1000 characters, 2000 bytes of UTF-8, into a buffer of 16 bytes
  const long = "\u00e9".repeat(1000);
  const out = new CommandBuffer(16);
  out.append(["SET", long]);
  assertEquals(
    decode(out.bytes.subarray(0, out.length)),
    `*2\r\n$3\r\nSET\r\n$2000\r\n${long}\r\n`,
  );
  assertEquals(
    decode(encodeCommand(["SET", "k", "", new Uint8Array()])),
    "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$0\r\n\r\n",
  );
});

Deno.test("the retry policy: a crash or a timeout is retried, nothing else; backoff() doubles from its base up to its cap, less up to half (equal jitter)", () => {
  assertEquals(
    ([
      "callback",
      "onDone",
      "timeout",
      "crash",
      "protocol",
      "aborted",
      "startup",
    ] as const).filter(isRetryable),
    ["timeout", "crash"],
  );
  // the client's reconnection defaults: minDelay 50, maxDelay 2000
  assertEquals(backoff(50, 1, 2000, 0), 25);
  assertEquals(backoff(50, 1, 2000, 0.5), 37.5);
  assertEquals(backoff(50, 2, 2000, 0), 50);
  assertEquals(backoff(50, 3, 2000, 0.5), 150);
  assertEquals(backoff(50, 6, 2000, 0.5), 1200);
  assertEquals(backoff(50, 7, 2000, 0), 1000); // 3200, capped at 2000
  assertEquals(backoff(50, 7, 2000, 0.5), 1500);
  assertEquals(backoff(50, 5000, 2000, 0.5), 1500);
});

Deno.test("RedisClient refuses a timeout or a delay that is not a positive number of milliseconds a timer can take, naming it", async () => {
  const names = [
    "connectTimeout",
    "minDelay",
    "maxDelay",
    "commandTimeout",
  ] as const;
  for (const name of names) {
    for (const value of [0, -1, NaN, Infinity, 2 ** 31]) {
      assertThrows(
        () => new RedisClient("redis://127.0.0.1:1", { [name]: value }),
        RangeError,
        `Cannot create RedisClient as '${name}' must be a positive number of milliseconds up to 2147483647: received ${value}`,
      );
    }
    // the longest a timer takes is taken
    await new RedisClient("redis://127.0.0.1:1", { [name]: 2 ** 31 - 1 })
      .close();
  }
});

Deno.test("parseRedisUrl() reads user, password, port and db, and redacts the password", () => {
  assertEquals(parseRedisUrl("redis://alice:s%40cret@example.com:6380/3"), {
    hostname: "example.com",
    port: 6380,
    tls: false,
    username: "alice",
    password: "s@cret",
    db: 3,
    redacted: "redis://alice:***@example.com:6380/3",
  });
  const plain = parseRedisUrl("rediss://[::1]");
  assertEquals([plain.hostname, plain.port, plain.tls, plain.db], [
    "::1",
    6379,
    true,
    0,
  ]);
  assertEquals(parseRedisUrl("redis://:pw@h").password, "pw");
  assertEquals(redactUrl("redis://u:p/w@d@h:1/0"), "redis://u:***@h:1/0");
  assertEquals(redactUrl("redis://secret@h"), "redis://***@h");
  // A value with no scheme may be the bare password: not shown at all.
  assertEquals(redactUrl("hunter2"), NOT_A_URL);
  assertEquals(redactUrl("redis:hunter2@h"), NOT_A_URL);
  assertEquals(redactUrl("hunter2 ://h"), NOT_A_URL);
  assertEquals(
    redactUrl("redis://u:p@h:1/0?password=pw#x"),
    "redis://u:***@h:1/0?***",
  );
  assertEquals(redactUrl("redis://h#pw"), "redis://h#***");
  for (
    const bad of [
      "http://u:hunter2@h",
      "redis://u:hunter2@h/x",
      "nope",
      "hunter2",
      "redis:hunter2@h",
      // the form other clients read (redis-py, ioredis): refused, not shown
      "redis://h?password=hunter2",
      "redis://u@h/0?password=hunter2",
      "redis://h#hunter2",
    ]
  ) {
    const error = (() => {
      try {
        parseRedisUrl(bad);
      } catch (e) {
        return e;
      }
    })();
    if (!(error instanceof TypeError)) throw new Error(`no TypeError: ${bad}`);
    assert(!error.message.includes("hunter2"), error.message);
    assertStringIncludes(error.message, redactUrl(bad));
  }
  assertThrows(
    () => new RedisClient("redis://h", { connectTimeout: 0 }),
    RangeError,
    "connectTimeout",
  );
});

Deno.test({
  name: "RedisClient round-trips bytes, pipelines, and names errors",
  ignore,
  async fn(t) {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url);
    try {
      await t.step(
        "all 256 byte values and 1 MiB, in keys and values",
        async () => {
          const key = new Uint8Array([0, 255, 13, 10, 36]);
          assertEquals(await client.command("SET", key, allBytes()), "OK");
          assertEquals(await client.command("GET", key), allBytes());
          const big = randomBytes(1 << 20);
          const started = performance.now();
          await client.command("SET", "big", big);
          assertEquals(await client.command("GET", "big"), big);
          console.log(
            `  1 MiB SET + GET: ${(performance.now() - started).toFixed(1)} ms`,
          );
          assertEquals(await client.command("GET", "missing"), null);
        },
      );

      await t.step("1000 concurrent INCRs come back in order", async () => {
        const started = performance.now();
        const replies = await Promise.all(
          Array.from({ length: 1000 }, () => client.command("INCR", "counter")),
        );
        console.log(
          `  1000 pipelined INCRs: ${
            (performance.now() - started).toFixed(1)
          } ms`,
        );
        assertEquals(replies, Array.from({ length: 1000 }, (_, i) => i + 1));
        const piped = await client.pipeline([
          ["SET", "p", "1"],
          ["LPUSH", "p", "x"],
          ["INCRBY", "p", 41],
        ]);
        assertEquals(piped[0], "OK");
        assertInstanceOf(piped[1], RedisError);
        assertEquals(piped[2], 42);
      });

      await t.step(
        "3000 commands in flight at once come back in order (the queue of those in flight compacts as they are answered)",
        async () => {
          // each checked as it comes: a command left behind is never answered
          await deadline(
            Promise.all(
              Array.from(
                { length: 3000 },
                async (_, i) =>
                  assertEquals(
                    text(await client.command("ECHO", String(i))),
                    String(i),
                  ),
              ),
            ),
            5000,
          );
        },
      );

      await t.step(
        "sent() resolves once what was queued is written, before its reply",
        async () => {
          await client.sent(); // nothing queued
          const reply = client.command("SET", "sent", "v");
          await deadline(client.sent(), 5000);
          assertEquals(await reply, "OK");
        },
      );

      await t.step(
        "a wrong-type command is a RedisError naming it",
        async () => {
          await client.command("SET", "str", "v");
          const error = await assertRejects(
            () => client.command("lpush", "str", "x"),
            RedisError,
            "Redis replied to LPUSH with an error: WRONGTYPE",
          );
          assertEquals(error.code, "WRONGTYPE");
          assertEquals(error.command, "LPUSH");
          assertStringIncludes(error.serverMessage, "wrong kind of value");
          // the connection goes on
          assertEquals(await client.command("PING"), "PONG");
        },
      );

      await t.step("stream commands carry binary fields", async () => {
        assertEquals(
          await client.command("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"),
          "OK",
        );
        const id = (await client.command(
          "XADD",
          "s",
          "*",
          "data",
          allBytes(),
          "info",
          new Uint8Array([1, 2, 3]),
        )) as Uint8Array;
        assertInstanceOf(id, Uint8Array);
        const read = await client.command(
          "XREADGROUP",
          "GROUP",
          "g",
          "c1",
          "COUNT",
          10,
          "BLOCK",
          100,
          "STREAMS",
          "s",
          ">",
        );
        assertEquals(read, [[encoder.encode("s"), [[id, [
          encoder.encode("data"),
          allBytes(),
          encoder.encode("info"),
          new Uint8Array([1, 2, 3]),
        ]]]]]);
        // nothing new: BLOCK times out with nil
        assertEquals(
          await client.command(
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "BLOCK",
            50,
            "STREAMS",
            "s",
            ">",
          ),
          null,
        );
        // another consumer claims what c1 holds
        const claimed = await client.command(
          "XAUTOCLAIM",
          "s",
          "g",
          "c2",
          0,
          "0-0",
          "COUNT",
          10,
          "JUSTID",
        ) as Reply[];
        assertEquals(claimed[1], [id]);
        assertEquals(await client.command("XACK", "s", "g", id), 1);
        const pending = await client.command("XPENDING", "s", "g") as Reply[];
        assertEquals(pending[0], 0);
        assertEquals(await client.command("XDEL", "s", id), 1);
      });
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  name:
    "RedisClient reads what npm:redis wrote, and the reverse, byte for byte",
  ignore,
  // node-redis leaves its socket ops to settle after quit()
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using server = await RedisServer.start();
    const { createClient, commandOptions } = await import("npm:redis@^4");
    const theirs = createClient({ url: server.url });
    await theirs.connect();
    const ours = await RedisClient.connect(server.url);
    try {
      const value = new Uint8Array([...allBytes(), ...randomBytes(100_000)]);
      await ours.command("SET", "ours", value);
      const read = await theirs.get(
        commandOptions({ returnBuffers: true }),
        "ours",
      );
      assertEquals(new Uint8Array(read!), value);

      await theirs.set("theirs", Buffer.from(value));
      assertEquals(await ours.command("GET", "theirs"), value);

      await ours.command("XADD", "xs", "*", "data", allBytes());
      const entries = await theirs.xRange(
        commandOptions({ returnBuffers: true }),
        "xs",
        "-",
        "+",
      );
      assertEquals(new Uint8Array(entries[0]!.message.data!), allBytes());
      console.log("  npm:redis cross-check: 100 KiB value and a stream entry");
    } finally {
      await ours.close();
      await theirs.quit();
    }
  },
});

Deno.test({
  name:
    "RedisClient authenticates with the user and password of the URL, and selects the db",
  ignore,
  async fn(t) {
    await using server = await RedisServer.start([
      "--requirepass",
      "topsecret",
      "--user",
      "alice",
      "on",
      ">wonder land",
      "~*",
      "&*",
      "+@all",
    ]);
    await t.step("user, password and db", async () => {
      const client = await RedisClient.connect(
        `redis://alice:wonder%20land@127.0.0.1:${server.port}/2`,
      );
      try {
        await client.command("SET", "where", "db2");
        assertEquals(text(await client.command("ACL", "WHOAMI")), "alice");
      } finally {
        await client.close();
      }
      const other = await RedisClient.connect(
        `redis://:topsecret@127.0.0.1:${server.port}`,
      );
      try {
        assertEquals(await other.command("GET", "where"), null);
        await other.command("SELECT", 2);
        assertEquals(text(await other.command("GET", "where")), "db2");
      } finally {
        await other.close();
      }
    });

    await t.step("a wrong password is a clear error, redacted", async () => {
      const url = `redis://alice:hunter2@127.0.0.1:${server.port}`;
      const started = performance.now();
      const error = await assertRejects(
        () => RedisClient.connect(url),
        RedisConnectionError,
        "WRONGPASS",
      );
      assert(performance.now() - started < 2000, "failed at once");
      assert(!error.message.includes("hunter2"), error.message);
      assertStringIncludes(
        error.message,
        `redis://alice:***@127.0.0.1:${server.port}`,
      );
      assertStringIncludes(error.message, "AUTH");
      assertEquals(error.url, `redis://alice:***@127.0.0.1:${server.port}`);
    });

    await t.step(
      "attempts refused by AUTH leave no connection open: close() ends",
      async () => {
        const client = new RedisClient(
          `redis://alice:hunter2@127.0.0.1:${server.port}`,
          { minDelay: 1, maxDelay: 1 },
        );
        // each PING waits for the next attempt, which fails it
        for (let i = 0; i < 3; i++) {
          await assertRejects(
            () => client.command("PING"),
            RedisConnectionError,
            "WRONGPASS",
          );
        }
        await deadline(client.close(), 5000);
      },
    );

    await t.step("no password is a clear error", async () => {
      await assertRejects(
        () => RedisClient.connect(`redis://127.0.0.1:${server.port}`),
        RedisError,
        "NOAUTH",
      );
    });
  },
});

Deno.test({
  name:
    "RedisClient fails what was in flight when the server dies, and reconnects",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const url = server.url;
    const client = await RedisClient.connect(url, { connectTimeout: 10_000 });
    try {
      await client.command("SET", "k", "before");
      // a blocking read stays in flight until the server dies
      const inFlight = client.command("BLPOP", "never", 0);
      const failed = assertRejects(
        () => inFlight,
        RedisConnectionError,
        `Lost the connection to ${url} with BLPOP in flight`,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      await server.stop("SIGKILL");
      await failed;
      assert(!client.connected);

      // sent while the server is down: waits for the next connection
      const waiting = client.command("GET", "k");
      const down = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 300));
      await server.restart();
      const restarted = performance.now();
      assertEquals(await waiting, null); // a new, empty server
      const back = performance.now();
      assert(client.connected);
      assertEquals(client.connections, 2);
      assertEquals(await client.command("SET", "k", "after"), "OK");
      console.log(
        `  down ${(restarted - down).toFixed(0)} ms; reply ${
          (back - restarted).toFixed(0)
        } ms after the server was up again`,
      );
      assert(back - restarted < 2500, "reconnected within the backoff bound");
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  name:
    "RedisClient fails a command after connectTimeout when no server answers",
  async fn() {
    const port = freePort();
    const url = `redis://u:pw123@127.0.0.1:${port}`;
    const started = performance.now();
    const error = await assertRejects(
      () => RedisClient.connect(url, { connectTimeout: 300 }),
      RedisConnectionError,
      `Cannot send PING as redis://u:***@127.0.0.1:${port} was not reachable within 300 ms`,
    );
    const ms = performance.now() - started;
    assert(!error.message.includes("pw123"));
    assertStringIncludes(error.message, "last error");
    assert(ms < 1500, `took ${ms} ms`);
  },
});

Deno.test({
  name:
    "RedisClient: a command that timed out waiting for a connection is never sent; those behind it get their own replies",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    await server.stop();
    const client = new RedisClient(server.url, {
      connectTimeout: 1500,
      maxDelay: 50,
    });
    try {
      const first = client.command("ECHO", "first");
      await new Promise((resolve) => setTimeout(resolve, 700));
      const second = client.command("ECHO", "second");
      await assertRejects(() => first, RedisConnectionError, "not reachable");
      // the first is gone from what waits to be written; the second waits on
      await server.restart();
      assertEquals(text(await second), "second");
      assertEquals(text(await client.command("ECHO", "third")), "third");
    } finally {
      await client.close();
    }
  },
});

Deno.test({
  name:
    "RedisClient.close() ends with a blocking command in flight, and for good",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url);
    const blocked = client.command("XREAD", "BLOCK", 0, "STREAMS", "none", "$");
    const failed = assertRejects(
      () => blocked,
      RedisConnectionError,
      "is closed",
    );
    const started = performance.now();
    await client.close();
    await failed;
    assert(performance.now() - started < 1000);
    await assertRejects(
      () => client.command("PING"),
      RedisConnectionError,
      "Cannot complete PING as the client of",
    );
    // a pipeline fails as a whole: only error replies take a command's place
    await assertRejects(
      () => client.pipeline([["PING"], ["GET", "k"]]),
      RedisConnectionError,
      "Cannot complete PING as the client of",
    );
    await client.close(); // again: nothing left to do

    // closed while connecting (nothing listens): ends too
    const lonely = new RedisClient(`redis://127.0.0.1:${freePort()}`);
    const ping = assertRejects(
      () => lonely.command("PING"),
      RedisConnectionError,
    );
    await lonely.close();
    await ping;
  },
});

Deno.test({
  name: "RedisClient speaks TLS to a rediss:// URL",
  ignore: ignore || !hasOpenssl,
  async fn() {
    await using server = await RedisServer.start([], { tls: true });
    const client = await RedisClient.connect(server.url, {
      caCerts: [server.caCert!],
    });
    try {
      const value = randomBytes(300_000);
      await client.command("SET", "tls", value);
      assertEquals(await client.command("GET", "tls"), value);
    } finally {
      await client.close();
    }
    // without the CA the certificate is refused, and the error says where
    const refused = await assertRejects(
      () => RedisClient.connect(server.url, { connectTimeout: 300 }),
      RedisConnectionError,
      server.url,
    );
    console.log(`  without the CA: ${refused.message}`);
  },
});

Deno.test({
  name:
    "the stream helpers type what XADD, XREADGROUP, XAUTOCLAIM and friends return",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url);
    try {
      assertEquals(await xgroupCreate(client, "jobs", "workers"), true);
      assertEquals(await xgroupCreate(client, "jobs", "workers"), false);
      const ids = [
        await xadd(client, "jobs", [["data", allBytes()], ["n", 1]]),
        await xadd(client, "jobs", [["data", new Uint8Array([0])]]),
      ];
      const read = await xreadgroup(client, "jobs", "workers", "w1", {
        count: 10,
        block: 100,
      });
      assertEquals(read.map((e) => e.id), ids);
      assertEquals(read[0]!.fields!.get("data"), allBytes());
      assertEquals(read[0]!.fields!.get("n"), encoder.encode("1"));
      assertEquals(
        await xreadgroup(client, "jobs", "workers", "w1", { block: 20 }),
        [],
      );
      // w1's heartbeat keeps its claim; w2 takes only what went stale
      assertEquals(
        await xclaimJustId(client, "jobs", "workers", "w1", 0, ids),
        ids,
      );
      assertEquals(
        (await xautoclaim(client, "jobs", "workers", "w2", 60_000)).entries,
        [],
      );
      await xdel(client, "jobs", [ids[1]!]);
      const claimed = await xautoclaim(client, "jobs", "workers", "w2", 0);
      assertEquals(claimed.entries.map((e) => e.id), [ids[0]]);
      assertEquals(claimed.deleted, [ids[1]]);
      assertEquals(claimed.next, "0-0");
      const pending = await xpending(client, "jobs", "workers");
      assertEquals(pending.count, 1);
      assertEquals(pending.consumers, new Map([["w2", 1]]));
      assertEquals(await xack(client, "jobs", "workers", ids), 1);
      assertEquals((await xpending(client, "jobs", "workers")).count, 0);

      const script = new Script(
        "return redis.call('INCRBY', KEYS[1], ARGV[1])",
      );
      assertEquals(await script.run(client, ["sum"], [2]), 2); // EVAL, on NOSCRIPT
      assertEquals(
        text(await client.command("SCRIPT", "LOAD", script.source)),
        await script.sha(),
      );
      assertEquals(await script.run(client, ["sum"], [3]), 5); // EVALSHA
      await client.command("SCRIPT", "FLUSH");
      assertEquals(await script.run(client, ["sum"], [4]), 9);
    } finally {
      await client.close();
    }
  },
});

/** The pid of the redis-server `admin` is connected to (INFO server). */
async function serverPid(admin: RedisClient): Promise<number> {
  const info = new TextDecoder().decode(
    await admin.command("INFO", "server") as Uint8Array,
  );
  return Number(/process_id:(\d+)/.exec(info)![1]);
}

Deno.test({
  name:
    "RedisClient fails commands within commandTimeout (past a BLOCK) when the server stops answering (SIGSTOP), reconnects once it answers, and close() ends meanwhile",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url, {
      commandTimeout: 300,
      connectTimeout: 1000,
    });
    const pid = await serverPid(client);
    Deno.kill(pid, "SIGSTOP");
    try {
      let started = performance.now();
      await assertRejects(
        () => deadline(client.command("PING"), 5000),
        RedisConnectionError,
        "no reply to PING within 300 ms (its 'commandTimeout')",
      );
      let ms = performance.now() - started;
      assert(ms >= 250 && ms < 2000, `PING failed after ${ms} ms`);
      // A blocking read is given its BLOCK on top.
      started = performance.now();
      await assertRejects(
        () => client.command("XREAD", "BLOCK", 400, "STREAMS", "none", "$"),
        RedisConnectionError,
        "no reply to XREAD within 700 ms",
      );
      ms = performance.now() - started;
      assert(ms >= 600 && ms < 3000, `XREAD failed after ${ms} ms`);
      // close() with a command stuck in a frozen server ends at once.
      const stuck = new RedisClient(server.url, { commandTimeout: 60_000 });
      const ping = stuck.command("PING");
      ping.catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      started = performance.now();
      await stuck.close();
      await assertRejects(() => ping, RedisConnectionError);
      assert(performance.now() - started < 1000);
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    assertEquals(await client.command("PING"), "PONG");
    assert(client.connections >= 2, `${client.connections} connections`);
    await client.close();
  },
});

Deno.test({
  name:
    "RedisClient keeps a connection that answers, however long it is never idle: each reply restarts commandTimeout",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url, {
      commandTimeout: 500,
    });
    const admin = await RedisClient.connect(server.url);
    try {
      // Two BLPOPs always in flight: each is sent while the one before it
      // waits, and each is answered when `admin` pushes; for 4 commandTimeouts.
      const blpop = () => {
        const reply = client.command("BLPOP", "q", 0);
        reply.catch(() => {}); // awaited in its turn
        return reply;
      };
      const inFlight = [blpop(), blpop()];
      const started = performance.now();
      while (performance.now() - started < 2000) {
        await admin.command("LPUSH", "q", "x");
        assertEquals(await deadline(inFlight.shift()!, 5000), [
          encoder.encode("q"),
          encoder.encode("x"),
        ]);
        inFlight.push(blpop());
      }
      await admin.command("LPUSH", "q", "x", "x");
      await Promise.all(inFlight);
      assertEquals(client.connections, 1);
    } finally {
      await client.close();
      await admin.close();
    }
  },
});

Deno.test({
  name:
    "RedisClient gives a blocking read of XREADGROUP its BLOCK, BLOCK 0 (forever) included, before commandTimeout, and looks again every commandTimeout meanwhile",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url, {
      commandTimeout: 100,
    });
    const admin = await RedisClient.connect(server.url);
    // The delays of the timers set meanwhile: a read that is never due must
    // not set one of Infinity, which a timer takes as 1 ms (a busy loop).
    const delays: unknown[] = [];
    const setTimer = globalThis.setTimeout;
    globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
      delays.push(args[1]);
      return setTimer(...args);
    }) as typeof setTimeout;
    try {
      await xgroupCreate(client, "s", "g");
      const read = client.command(
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "BLOCK",
        0,
        "STREAMS",
        "s",
        ">",
      );
      read.catch(() => {}); // awaited below
      // Nothing to await: the read must outlast several commandTimeouts.
      await new Promise((resolve) => setTimeout(resolve, 400));
      globalThis.setTimeout = setTimer;
      const id = await admin.command("XADD", "s", "*", "f", "v");
      assertEquals(await read, [[encoder.encode("s"), [[id, [
        encoder.encode("f"),
        encoder.encode("v"),
      ]]]]]);
      assertEquals(client.connections, 1);
      // one look per commandTimeout, each for at most commandTimeout
      assert(
        delays.length <= 10 &&
          delays.every((ms) => typeof ms === "number" && ms <= 400),
        `timers set: ${delays}`,
      );
    } finally {
      globalThis.setTimeout = setTimer;
      await client.close();
      await admin.close();
    }
  },
});

Deno.test({
  name:
    "RedisClient: commands sent while a large write is under way go out after it; if the connection drops meanwhile they wait for connectTimeout",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url, {
      connectTimeout: 300,
      commandTimeout: 2000,
    });
    // More than the socket buffers hold: the write waits while the server is frozen.
    const big = new Uint8Array(16 << 20);
    try {
      server.signal("SIGSTOP");
      const set = client.command("SET", "big", big);
      await new Promise((resolve) => setTimeout(resolve, 0)); // the write starts
      const ping = client.command("PING");
      server.signal("SIGCONT");
      assertEquals(await set, "OK");
      assertEquals(await ping, "PONG");

      server.signal("SIGSTOP");
      const lost = assertRejects(
        () => client.command("SET", "big", big),
        RedisConnectionError,
        "Lost the connection",
      );
      await new Promise((resolve) => setTimeout(resolve, 0));
      const waiting = client.command("PING");
      await server.stop("SIGKILL");
      await lost;
      await assertRejects(
        () => deadline(waiting, 5000),
        RedisConnectionError,
        "Cannot send PING as",
      );
    } finally {
      server.signal("SIGCONT");
      await client.close();
    }
  },
});

Deno.test({
  name:
    "RedisClient reconnects after a drop from its first delay again, however many attempts the connection before took",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    await server.stop();
    // Attempts every 1, 2, 4... ms: after 1 s without a server, the next
    // delay is beyond connectTimeout; once connected it starts from 1 ms again.
    const client = new RedisClient(server.url, {
      minDelay: 1,
      maxDelay: 60_000,
      connectTimeout: 250,
    });
    let admin: RedisClient | undefined;
    try {
      for (let i = 0; i < 4; i++) {
        await assertRejects(
          () => client.command("PING"),
          RedisConnectionError,
          "not reachable",
        );
      }
      await server.restart();
      for (;;) {
        const reply = await client.command("PING").catch((error) => error);
        if (reply === "PONG") break;
        assertInstanceOf(reply, RedisConnectionError);
      }
      admin = await RedisClient.connect(server.url);
      const blocked = client.command("BLPOP", "never", 0);
      const lost = assertRejects(
        () => blocked,
        RedisConnectionError,
        "Lost the connection",
      );
      await new Promise((resolve) => setTimeout(resolve, 0)); // BLPOP in flight
      await admin.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
      await lost;
      assertEquals(await client.command("PING"), "PONG");
      assertEquals(client.connections, 2);
    } finally {
      await client.close();
      await admin?.close();
    }
  },
});

/**
 * A server on a loopback port of its own that hands each connection it
 * accepts, numbered from 0, to `serve`; disposing of it closes everything.
 */
function fakeServer(
  serve: (conn: Deno.Conn, index: number) => Promise<void>,
): { url: string } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const served: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        served.push(serve(conn, conns.push(conn) - 1).catch(() => {}));
      }
    } catch {
      // closed
    }
  })();
  return {
    url: `redis://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed by its handler
        }
      }
      await Promise.all(served);
    },
  };
}

Deno.test("RedisClient gives AUTH commandTimeout too: a server that accepts and never answers is named as the last error", async () => {
  await using silent = fakeServer(async (conn) => {
    const buffer = new Uint8Array(1024);
    while ((await conn.read(buffer)) !== null) {
      // read, never answer
    }
  });
  const client = new RedisClient(silent.url.replace("//", "//:pw@"), {
    connectTimeout: 500,
    commandTimeout: 100,
  });
  try {
    await assertRejects(
      () => client.command("PING"),
      RedisConnectionError,
      "no reply to AUTH within 100 ms",
    );
  } finally {
    await client.close();
  }
});

Deno.test("RedisClient tears down a connection whose server sends a reply to no command, and reconnects", async () => {
  await using chatty = fakeServer(async (conn, index) => {
    const buffer = new Uint8Array(1024);
    for (let n = 0; (await conn.read(buffer)) !== null; n++) {
      const reply = index > 0
        ? "+NEW\r\n"
        : n === 0
        ? "+PONG\r\n+STRAY\r\n"
        : "+SAME\r\n";
      await conn.write(encoder.encode(reply));
    }
  });
  const client = await RedisClient.connect(chatty.url);
  try {
    assertEquals(await client.command("PING"), "NEW");
    assertEquals(client.connections, 2);
  } finally {
    await client.close();
  }
});
