// Copyright the @ocycle/core authors. MIT license.
// How a chunk and its result travel as Redis stream entries (wire/_entries.ts):
// round trips with `node:v8` as the codec, malformed entries refused, and one
// entry through a real redis-server (skipped, and said so, without one; failed
// under CI=true).

import { assert, assertEquals, assertThrows } from "@std/assert";
import { deserialize, serialize } from "node:v8";
import type { ChunkInfo } from "../src/chunk_info.ts";
import { RedisClient } from "../src/fleet/_client.ts";
import { xgroupCreate, xreadgroup } from "../src/fleet/_streams.ts";
import {
  decodeResultEntry,
  decodeTaskEntry,
  encodeResultEntry,
  encodeTaskEntry,
  type EntryFields,
  readFields,
} from "../src/wire/_entries.ts";
import { ProtocolError } from "../src/wire/_framing.ts";
import type { ChunkLayout } from "../src/wire/_layout.ts";
import { RedisServer, skipWithoutRedis } from "./_redis_server.ts";

const clone = (value: unknown) => new Uint8Array(serialize(value));
const parse = (bytes: Uint8Array) => deserialize(bytes);

const info = (length: number, more: Partial<ChunkInfo> = {}): ChunkInfo => ({
  index: 3,
  offset: 1024,
  length,
  t0: 1_764_000_000_123.5,
  reason: "maxWait",
  final: false,
  ...more,
});

function allBytes(): Uint8Array {
  return Uint8Array.from({ length: 256 }, (_, i) => i);
}

function roundTrip(layout: ChunkLayout, chunk: unknown, i: ChunkInfo) {
  return decodeTaskEntry(
    readFields(encodeTaskEntry("p1:42", i, layout, chunk, clone)),
    parse,
  );
}

/** Moves a field's value to an odd offset in a larger buffer, as a reader might hand it over. */
function atOddOffset(bytes: Uint8Array): Uint8Array {
  const host = new Uint8Array(bytes.length + 3);
  host.set(bytes, 1);
  return host.subarray(1, 1 + bytes.length);
}

Deno.test("a bytes chunk round-trips raw: every byte value, no base64", () => {
  const chunk = allBytes();
  const fields = encodeTaskEntry(
    "p1:42",
    info(256, { final: true, reason: "close" }),
    { kind: "bytes" },
    chunk,
    clone,
  );
  const map = readFields(fields);
  assertEquals([...map.keys()], ["v", "id", "info", "layout", "raw"]);
  assertEquals(map.get("raw"), chunk);
  assertEquals(map.get("info")!.length, 48);
  const task = decodeTaskEntry(map, parse);
  assertEquals(task.id, "p1:42");
  assertEquals(task.info, info(256, { final: true, reason: "close" }));
  assertEquals(task.layout, { kind: "bytes" });
  assert(task.chunk instanceof Uint8Array);
  assertEquals(task.chunk, chunk);
});

Deno.test("a subarray chunk travels as its own bytes only", () => {
  const host = allBytes();
  const task = roundTrip({ kind: "bytes" }, host.subarray(10, 20), info(10));
  assertEquals(task.chunk, host.slice(10, 20));
});

Deno.test("Int16 stereo samples round-trip, at odd byte offsets too", () => {
  const layout: ChunkLayout = {
    kind: "samples",
    type: "Int16Array",
    channels: 2,
  };
  const samples = Int16Array.from(
    { length: 8 },
    (_, i) => (i % 2 ? -1 : 1) * (i * 4099 + 1),
  );
  samples[0] = -32768;
  samples[1] = 32767;
  const fields = encodeTaskEntry("t", info(4), layout, samples, clone);
  const map = readFields(fields);
  assertEquals(map.get("raw")!.length, 16);
  const aligned = decodeTaskEntry(map, parse);
  assert(aligned.chunk instanceof Int16Array);
  assertEquals(aligned.chunk, samples);
  assertEquals(aligned.layout, layout);

  map.set("raw", atOddOffset(map.get("raw")!));
  assertEquals(map.get("raw")!.byteOffset % 2, 1);
  const odd = decodeTaskEntry(map, parse).chunk as Int16Array;
  assert(odd instanceof Int16Array);
  assertEquals(odd.byteOffset % 2, 0);
  assertEquals(odd, samples);

  const floats = Float64Array.from([0.5, -0, Infinity, NaN, 1e-300, -2]);
  const f = roundTrip(
    { kind: "samples", type: "Float64Array", channels: 3 },
    floats,
    info(2),
  );
  const got = f.chunk as Float64Array;
  assert(got instanceof Float64Array);
  assertEquals([...got].map(Object.is.bind(null, -0)), [
    false,
    true,
    false,
    false,
    false,
    false,
  ]);
  assertEquals(f.chunk, floats);
});

Deno.test("items and text go through the clone codec", () => {
  const items = [{ a: 1, b: [new Date(5), new Map([["k", 2n]])] }, null, "x"];
  const task = roundTrip({ kind: "items" }, items, info(3));
  assertEquals(task.chunk, items);
  const fields = readFields(
    encodeTaskEntry("t", info(7), { kind: "text" }, "héllo\0!", clone),
  );
  assertEquals([...fields.keys()], ["v", "id", "info", "layout", "value"]);
  assertEquals(decodeTaskEntry(fields, parse).chunk, "héllo\0!");
});

Deno.test("results round-trip: number, string, object, bytes, undefined", () => {
  const values: unknown[] = [
    42.5,
    -0,
    "a résumé",
    { n: 1, nested: { list: [1, "2"] } },
    allBytes(),
    undefined,
    null,
    true,
    false,
  ];
  for (const value of values) {
    const fields = encodeResultEntry(
      "p1:9",
      { worker: "host-a:123", value },
      clone,
    );
    const result = decodeResultEntry(readFields(fields), parse);
    assertEquals(result, { id: "p1:9", worker: "host-a:123", value });
    assert(
      "value" in result && Object.is(result.value, value) ||
        typeof value === "object",
    );
  }
});

Deno.test("text fields round-trip whatever their characters and length: ASCII, accented, emoji, past 64 bytes", () => {
  for (
    const worker of [
      "host-a:123",
      "h\u00f4te-\u00e9t\u00e9:7",
      "w\u{1f680}",
      "x".repeat(64),
      "y".repeat(65) + "\u00e9",
    ]
  ) {
    const fields = encodeResultEntry(
      `p\u00e9:${worker.length}`,
      { worker, value: 1 },
      clone,
    );
    assertEquals(decodeResultEntry(readFields(fields), parse), {
      id: `p\u00e9:${worker.length}`,
      worker,
      value: 1,
    });
  }
});

Deno.test("an error round-trips as a WireError naming the worker", () => {
  const error = {
    name: "TypeError",
    message: "boom",
    stack: "TypeError: boom\n  at x",
  };
  const fields = encodeResultEntry("p1:9", { worker: "w-7", error }, clone);
  assertEquals([...readFields(fields).keys()], ["v", "id", "worker", "error"]);
  assertEquals(decodeResultEntry(readFields(fields), parse), {
    id: "p1:9",
    worker: "w-7",
    error,
    kind: "callback",
    attempts: 1,
  });
});

Deno.test("an error result carries its kind and attempts; a task its retry policy", () => {
  const error = { name: "Error", message: "child died" };
  const fields = encodeResultEntry(
    "p1:9",
    { worker: "w-7", error, kind: "crash", attempts: 3 },
    clone,
  );
  assertEquals(
    [...readFields(fields).keys()],
    ["v", "id", "worker", "error", "kind", "attempts"],
  );
  const back = decodeResultEntry(readFields(fields), parse);
  assertEquals(back, {
    id: "p1:9",
    worker: "w-7",
    error,
    kind: "crash",
    attempts: 3,
  });
  const task = readFields(
    encodeTaskEntry("t", info(2), { kind: "bytes" }, new Uint8Array(2), clone, {
      retries: 2,
      retryDelay: 50,
    }),
  );
  const read = decodeTaskEntry(task, parse);
  assertEquals([read.retries, read.retryDelay], [2, 50]);
  const plain = decodeTaskEntry(
    readFields(
      encodeTaskEntry(
        "t",
        info(2),
        { kind: "bytes" },
        new Uint8Array(2),
        clone,
      ),
    ),
    parse,
  );
  assertEquals([plain.retries, plain.retryDelay], [0, 100]);
  task.set("retries", new TextEncoder().encode("-1"));
  refused(task, "field 'retries' must be a whole number");
  const odd = readFields(fields);
  odd.set("kind", new TextEncoder().encode("bogus"));
  refused(odd, "field 'kind' must be one of", true);
});

function refused(
  fields: Map<string, Uint8Array>,
  pattern: string,
  result = false,
) {
  const error = assertThrows(
    () =>
      result
        ? decodeResultEntry(fields, parse)
        : decodeTaskEntry(fields, parse),
    ProtocolError,
  );
  assert(error.message.includes(pattern), error.message);
}

/** The fields of a well-formed task entry: 4 frames of 2 Int16Array samples. */
function good(): Map<string, Uint8Array> {
  return readFields(
    encodeTaskEntry(
      "t",
      info(4),
      { kind: "samples", type: "Int16Array", channels: 2 },
      new Int16Array(8),
      clone,
    ),
  );
}

Deno.test("malformed task entries are refused, naming the field", () => {
  const text = new TextEncoder();
  for (const name of ["v", "id", "info", "layout", "raw"]) {
    const fields = good();
    fields.delete(name);
    refused(fields, `field '${name}'`);
  }
  let fields = good();
  fields.set("v", text.encode("2"));
  refused(fields, "field 'v' must be the format version 1");
  fields = good();
  fields.set("info", new Uint8Array(47));
  refused(fields, "field 'info' must hold 48 bytes");
  fields = good();
  const badReason = fields.get("info")!.slice();
  new DataView(badReason.buffer).setFloat64(32, 9, true);
  fields.set("info", badReason);
  refused(fields, "field 'info'");
  fields = good();
  fields.set("raw", new Uint8Array(15));
  refused(fields, "field 'raw' must hold 16 bytes");
  fields = good();
  fields.set(
    "layout",
    text.encode('{"kind":"samples","type":"Foo","channels":2}'),
  );
  refused(fields, "field 'layout'");
  fields = good();
  fields.set("layout", text.encode("not json"));
  refused(fields, "field 'layout'");
  fields = good();
  fields.set("value", new Uint8Array(1));
  refused(fields, "field 'value' must be absent");
  fields = readFields(
    encodeTaskEntry("t", info(1), { kind: "items" }, [1], clone),
  );
  fields.set("value", new Uint8Array([1, 2, 3]));
  refused(fields, "field 'value' cannot be decoded");
  fields.delete("value");
  refused(fields, "field 'value'");
});

Deno.test("malformed result entries are refused, naming the field", () => {
  const good = () =>
    readFields(encodeResultEntry("t", { worker: "w", value: 1 }, clone));
  for (const name of ["v", "id", "worker"]) {
    const fields = good();
    fields.delete(name);
    refused(fields, `field '${name}'`, true);
  }
  let fields = good();
  fields.delete("value");
  refused(fields, "exactly one of the fields 'value' and 'error'", true);
  fields = good();
  fields.set("error", clone({ name: "E", message: "m" }));
  refused(fields, "exactly one of the fields 'value' and 'error'", true);
  fields = good();
  fields.set("value", new Uint8Array([99]));
  refused(fields, "field 'value' cannot be decoded", true);
  fields = good();
  fields.delete("value");
  fields.set("error", clone({ message: 3 }));
  refused(fields, "field 'error' must be an object", true);
  // short text fields are not UTF-8 from byte 0x80 on, a lone 0x80 included
  for (const byte of [0x80, 0xc3, 0xff]) {
    fields = good();
    fields.set("worker", new Uint8Array([0x77, byte]));
    refused(fields, "field 'worker' must be UTF-8 text", true);
  }
});

Deno.test("the info field is six little-endian float64s, whole numbers past 2^32, a negative t0 with a fraction", () => {
  const wide: ChunkInfo = {
    index: 2 ** 40 + 1,
    offset: 2 ** 53 - 1,
    length: 2,
    t0: -1234.5,
    reason: "flush",
    final: true,
  };
  const map = readFields(
    encodeTaskEntry("t", wide, { kind: "bytes" }, new Uint8Array(2), clone),
  );
  const bytes = map.get("info")!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 48);
  assertEquals(
    Array.from({ length: 6 }, (_, i) => view.getFloat64(i * 8, true)),
    [2 ** 40 + 1, 2 ** 53 - 1, 2, -1234.5, 2, 1],
  );
  // decoded after another info went through the codec
  roundTrip({ kind: "bytes" }, new Uint8Array(0), info(0));
  assertEquals(decodeTaskEntry(map, parse).info, wide);
  const reasons: ChunkInfo["reason"][] = ["size", "maxWait", "flush", "close"];
  for (const [n, reason] of reasons.entries()) {
    const fields = readFields(
      encodeTaskEntry(
        "t",
        info(0, { reason }),
        { kind: "bytes" },
        new Uint8Array(0),
        clone,
      ),
    );
    const got = fields.get("info")!;
    assertEquals(
      new DataView(got.buffer, got.byteOffset).getFloat64(32, true),
      n,
    );
  }
});

Deno.test("samples of every typed array type round-trip as that type", () => {
  const types = [
    Int8Array,
    Uint8Array,
    Uint8ClampedArray,
    Int16Array,
    Uint16Array,
    Int32Array,
    Uint32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
  ];
  for (const type of types) {
    const samples = type === BigInt64Array || type === BigUint64Array
      ? new type([1n, 2n, 3n, 4n, 5n, 6n])
      : new (type as Float64ArrayConstructor)([1, 2, 3, 4, 5, 200]);
    const layout: ChunkLayout = {
      kind: "samples",
      type: type.name,
      channels: 3,
    };
    const task = roundTrip(layout, samples, info(2));
    assertEquals(task.chunk?.constructor, type, type.name);
    assertEquals(task.chunk, samples);
    assertEquals(task.layout, layout);
  }
});

Deno.test("a raw chunk gets a buffer of its own even when the field's bytes start a larger one", () => {
  const map = readFields(
    encodeTaskEntry(
      "t",
      info(4),
      { kind: "bytes" },
      allBytes().subarray(0, 4),
      clone,
    ),
  );
  const host = new Uint8Array(64);
  host.set(map.get("raw")!);
  map.set("raw", host.subarray(0, 4));
  const chunk = decodeTaskEntry(map, parse).chunk as Uint8Array;
  assertEquals(chunk, Uint8Array.from([0, 1, 2, 3]));
  assertEquals([chunk.byteOffset, chunk.buffer.byteLength], [0, 4]);
});

Deno.test("every error kind round-trips; a stack that is not text and unknown properties are dropped", () => {
  for (
    const kind of [
      "callback",
      "timeout",
      "crash",
      "protocol",
      "startup",
      "oversize",
      "aborted",
    ] as const
  ) {
    const error = { name: "Error", message: kind };
    const back = decodeResultEntry(
      readFields(encodeResultEntry("t", { worker: "w", error, kind }, clone)),
      parse,
    );
    assertEquals(back, { id: "t", worker: "w", error, kind, attempts: 1 });
  }
  const fields = readFields(
    encodeResultEntry("t", { worker: "w", value: 1 }, clone),
  );
  fields.delete("value");
  fields.set(
    "error",
    clone({ name: "E", message: "m", stack: 5, extra: true }),
  );
  assertEquals(decodeResultEntry(fields, parse), {
    id: "t",
    worker: "w",
    error: { name: "E", message: "m" },
    kind: "callback",
    attempts: 1,
  });
});

Deno.test("hostile task and result entries are refused at the exact boundary", () => {
  const text = new TextEncoder();
  for (const v of ["10", "1x", " 1", ""]) {
    const fields = good();
    fields.set("v", text.encode(v));
    refused(fields, "field 'v' must be the format version 1");
  }
  for (const reason of [1.5, -1, 4, NaN]) {
    const fields = good();
    const bytes = fields.get("info")!.slice();
    new DataView(bytes.buffer).setFloat64(32, reason, true);
    fields.set("info", bytes);
    refused(fields, `reason must be 0 to 3: received ${reason}`);
  }
  // The other numbers of the info: counts whole from 0, t0 finite, final 0 or 1.
  for (
    const [at, value, says] of [
      [0, NaN, "index must be a whole number from 0: received NaN"],
      [0, 2 ** 53, `index must be a whole number from 0: received ${2 ** 53}`],
      [8, -1, "offset must be a whole number from 0: received -1"],
      [16, 1.5, "length must be a whole number from 0: received 1.5"],
      [24, Infinity, "t0 must be a finite number: received Infinity"],
      [24, NaN, "t0 must be a finite number: received NaN"],
      [40, 2, "final must be 0 or 1: received 2"],
      [40, 0.5, "final must be 0 or 1: received 0.5"],
    ] as const
  ) {
    const fields = good();
    const bytes = fields.get("info")!.slice();
    new DataView(bytes.buffer).setFloat64(at, value, true);
    fields.set("info", bytes);
    refused(fields, says);
  }
  {
    // The edges each accepts: index and offset 0, a negative t0 with a
    // fraction (the caller's clock), final 1.
    const fields = good();
    const bytes = fields.get("info")!.slice();
    const view = new DataView(bytes.buffer);
    for (const at of [0, 8]) view.setFloat64(at, 0, true);
    view.setFloat64(24, -1.5, true);
    view.setFloat64(40, 1, true);
    fields.set("info", bytes);
    const task = decodeTaskEntry(fields, parse);
    assertEquals(
      [task.info.index, task.info.offset, task.info.length, task.info.t0],
      [0, 0, 4, -1.5],
    );
    assertEquals(task.info.final, true);
  }
  let fields = good();
  fields.set("info", new Uint8Array(49));
  refused(fields, "field 'info' must hold 48 bytes: received 49");
  fields = good();
  fields.set("raw", new Uint8Array(17));
  refused(
    fields,
    "field 'raw' must hold 16 bytes for 4 frames of 2 Int16Array samples: received 17",
  );
  for (
    const layout of [
      '{"kind":"samples","type":"Int16Array","channels":0}',
      '{"kind":"samples","type":"Int16Array","channels":1.5}',
      '{"kind":"samples","type":"Int16Array"}',
      '{"kind":"samples","type":"constructor","channels":2}',
      '{"kind":"samples","type":"toString","channels":2}',
      '{"kind":"samples","type":["Int16Array"],"channels":2}',
      '{"kind":"raw"}',
      "null",
    ]
  ) {
    fields = good();
    fields.set("layout", text.encode(layout));
    refused(fields, "field 'layout' must be a chunk layout");
  }
  fields = readFields(
    encodeTaskEntry("t", info(1), { kind: "items" }, [1], clone),
  );
  fields.set("raw", new Uint8Array(2));
  refused(fields, "field 'raw' must be absent for a items chunk");
  const result = () => {
    const fields = readFields(
      encodeResultEntry("t", { worker: "w", value: 1 }, clone),
    );
    fields.delete("value");
    return fields;
  };
  for (
    const error of [{ name: 3, message: "m" }, { message: "m" }, "m", null]
  ) {
    fields = result();
    fields.set("error", clone(error));
    refused(fields, "field 'error' must be an object", true);
  }
});

// --- against a real redis-server ---

const ignore = skipWithoutRedis("entries_test.ts");

Deno.test({
  name: "a task entry goes through redis-server raw and decodes identically",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const client = await RedisClient.connect(server.url);
    try {
      const chunk = new Uint8Array(1 << 16);
      for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7919) & 255;
      const layout: ChunkLayout = {
        kind: "samples",
        type: "Int16Array",
        channels: 2,
      };
      const samples = new Int16Array(chunk.buffer);
      const sent: EntryFields = encodeTaskEntry(
        "p1:1",
        info(samples.length / 2),
        layout,
        samples,
        clone,
      );
      assert(await xgroupCreate(client, "chunks", "workers", "0"));
      await client.command("XADD", "chunks", "*", ...sent);
      const [entry] = await xreadgroup(client, "chunks", "workers", "w1", {
        count: 1,
      });
      const task = decodeTaskEntry(entry!.fields!, parse);
      assertEquals(task.id, "p1:1");
      assertEquals(task.info, info(samples.length / 2));
      assertEquals(task.layout, layout);
      assert(task.chunk instanceof Int16Array);
      assertEquals(task.chunk, samples);
      // stored raw: the bytes read back are the chunk's, and the whole
      // entry is the chunk plus a small header (base64 would be 4/3 of it)
      const stored = [...entry!.fields!.values()].reduce(
        (sum, value) => sum + value.length,
        0,
      );
      assert(stored <= chunk.length + 200, `${stored} bytes stored`);
      assertEquals(entry!.fields!.get("raw"), chunk);
    } finally {
      await client.close();
    }
  },
});
