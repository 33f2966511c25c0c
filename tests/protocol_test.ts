// Copyright the @ocycle/core authors. MIT license.
// The stdio framing of process mode, without any process: RELIABILITY.md
// items 11 to 14 at the decoder.

import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  CHILD_FRAME_TYPES,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameDecoder,
  FrameType,
  MAX_FRAME_BYTES,
  PARENT_FRAME_TYPES,
  ProtocolError,
  writeFrameHeader,
} from "../src/wire/_framing.ts";
import {
  decodeTaskBody,
  decodeTaskMeta,
  decodeValue,
  encodeTaskHead,
  encodeTaskMeta,
  taskRawOffset,
} from "../src/wire/_values.ts";
import { fromWireError, toWireError } from "../src/wire/_messages.ts";

function stream(): Uint8Array {
  const parts = [
    encodeFrame(FrameType.ready, 0),
    encodeFrame(FrameType.result, 1, new Uint8Array([1, 2, 3])),
    encodeFrame(FrameType.error, 2, new Uint8Array(70_000).fill(9)),
    encodeFrame(FrameType.result, 0xffffffff, new Uint8Array([4])),
  ];
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

function summary(frames: { type: number; id: number; body: Uint8Array }[]) {
  return frames.map((f) => ({
    type: f.type,
    id: f.id,
    length: f.body.length,
    sum: f.body.reduce((a, b) => a + b, 0),
  }));
}

function header(magic: number, type: number, id: number, length: number) {
  const bytes = new Uint8Array(FRAME_HEADER_BYTES);
  bytes[0] = magic;
  bytes[1] = type;
  new DataView(bytes.buffer).setUint32(2, id);
  new DataView(bytes.buffer).setUint32(6, length);
  return bytes;
}

Deno.test("FrameDecoder.push() yields the same frames for any split of the bytes", async (t) => {
  const bytes = stream();
  const whole = new FrameDecoder(CHILD_FRAME_TYPES).push(bytes);
  assertEquals(summary(whole), [
    { type: FrameType.ready, id: 0, length: 0, sum: 0 },
    { type: FrameType.result, id: 1, length: 3, sum: 6 },
    { type: FrameType.error, id: 2, length: 70_000, sum: 630_000 },
    { type: FrameType.result, id: 0xffffffff, length: 1, sum: 4 },
  ]);
  await t.step("one byte at a time", () => {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    const frames = [];
    for (let i = 0; i < bytes.length; i++) {
      frames.push(...decoder.push(bytes.subarray(i, i + 1)));
    }
    assertEquals(summary(frames), summary(whole));
    assertEquals(decoder.partial, undefined);
  });
  await t.step("a header split across reads, and random splits", () => {
    for (let seed = 1; seed <= 50; seed++) {
      let state = seed;
      const random = () => (state = (state * 48271) % 0x7fffffff) / 0x7fffffff;
      const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
      const frames = [];
      let at = 0;
      while (at < bytes.length) {
        const n = 1 + Math.floor(random() * (random() < 0.5 ? 12 : 9000));
        frames.push(...decoder.push(bytes.subarray(at, at + n)));
        at += n;
      }
      assertEquals(summary(frames), summary(whole), `seed ${seed}`);
    }
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    assertEquals(decoder.push(bytes.subarray(0, 3)), []);
    assertEquals(decoder.partial, { expected: 10, received: 3 });
    assertEquals(decoder.push(bytes.subarray(3, 10)).length, 1);
  });
  await t.step("empty pushes change nothing", () => {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    assertEquals(decoder.push(new Uint8Array(0)), []);
    assertEquals(decoder.partial, undefined);
  });
});

Deno.test("FrameDecoder.push() refuses malformed headers before allocating", async (t) => {
  await t.step("a 0xFFFFFFFF length", () => {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    assertThrows(
      () => decoder.push(header(FRAME_MAGIC, FrameType.result, 1, 0xffffffff)),
      ProtocolError,
      "a frame announced a body of 4294967295 bytes, over the limit of 1073741824 bytes",
    );
  });
  await t.step("a length over a smaller limit", () => {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES, 16);
    assertThrows(
      () => decoder.push(header(FRAME_MAGIC, FrameType.result, 1, 17)),
      ProtocolError,
      "over the limit of 16 bytes",
    );
  });
  await t.step(
    "a body of exactly the limit is accepted, one byte more is not",
    () => {
      const body = new Uint8Array(16).fill(7);
      const frames = new FrameDecoder(CHILD_FRAME_TYPES, 16).push(
        encodeFrame(FrameType.result, 1, body),
      );
      assertEquals(summary(frames), [
        { type: FrameType.result, id: 1, length: 16, sum: 112 },
      ]);
      assertThrows(
        () =>
          new FrameDecoder(CHILD_FRAME_TYPES, 16).push(
            encodeFrame(FrameType.result, 1, new Uint8Array(17)),
          ),
        ProtocolError,
        "a frame announced a body of 17 bytes, over the limit of 16 bytes",
      );
    },
  );
  await t.step("a bad magic byte", () => {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    assertThrows(
      () => decoder.push(new TextEncoder().encode("hello, world\n")),
      ProtocolError,
      "bad magic byte 0x68 (expected 0xc1)",
    );
  });
  await t.step("an unknown type, or one meant for the other side", () => {
    assertThrows(
      () =>
        new FrameDecoder(CHILD_FRAME_TYPES).push(header(FRAME_MAGIC, 99, 1, 0)),
      ProtocolError,
      "unknown message type 99",
    );
    assertThrows(
      () =>
        new FrameDecoder(CHILD_FRAME_TYPES).push(
          header(FRAME_MAGIC, FrameType.task, 1, 0),
        ),
      ProtocolError,
      "unknown message type 2",
    );
    assertEquals(
      new FrameDecoder(PARENT_FRAME_TYPES).push(
        header(FRAME_MAGIC, FrameType.task, 1, 0),
      ).length,
      1,
    );
  });
  await t.step("no resynchronisation after an error", () => {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    assertThrows(() => decoder.push(new Uint8Array(10)), ProtocolError);
    assertThrows(
      () => decoder.push(encodeFrame(FrameType.ready, 0)),
      ProtocolError,
      "bad magic byte 0x00",
    );
  });
});

Deno.test("FrameDecoder.end() says how many bytes a cut frame expected and got", () => {
  const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
  decoder.push(header(FRAME_MAGIC, FrameType.result, 1, 100));
  decoder.push(new Uint8Array(10));
  assertEquals(decoder.partial, { expected: 110, received: 20 });
  assertThrows(
    () => decoder.end(),
    ProtocolError,
    "the stream ended in the middle of a frame: expected 110 bytes, received 20",
  );
  const clean = new FrameDecoder(CHILD_FRAME_TYPES);
  clean.push(encodeFrame(FrameType.ready, 0));
  clean.end();
});

Deno.test("encodeTaskHead() aligns the raw bytes so a child can view them as any typed array", () => {
  for (const metaLength of [0, 1, 3, 4, 5, 11, 12, 13]) {
    const meta = new Uint8Array(metaLength).fill(7);
    const raw = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const head = encodeTaskHead(5, meta, raw.length);
    assertEquals(taskRawOffset(metaLength) % 8, 0);
    const wire = new Uint8Array(head.length + raw.length);
    wire.set(head);
    wire.set(raw, head.length);
    const [frame] = new FrameDecoder(PARENT_FRAME_TYPES).push(wire);
    assertEquals(frame!.id, 5);
    const body = decodeTaskBody(frame!.body);
    assertEquals(body.meta, meta);
    assertEquals(body.raw, raw);
    assertEquals(body.raw.byteOffset % 8, 0);
  }
  assertThrows(
    () => decodeTaskBody(new Uint8Array([0, 0, 1, 0])),
    ProtocolError,
    "announced 256 bytes of meta but its body holds 4 bytes",
  );
});

Deno.test("encodeFrame() refuses lengths and ids the header cannot hold", () => {
  assertThrows(
    () => encodeFrame(FrameType.result, -1),
    RangeError,
    "task id must be a u32: received -1",
  );
  assertThrows(
    () => encodeFrame(FrameType.result, 2 ** 32),
    RangeError,
    "received 4294967296",
  );
});

Deno.test("writeFrameHeader() writes up to the maximum length and refuses one byte more, a negative or a fractional length", () => {
  const target = new Uint8Array(FRAME_HEADER_BYTES + 2);
  writeFrameHeader(target, 1, FrameType.result, 7, MAX_FRAME_BYTES);
  assertEquals(
    [...target],
    [0, FRAME_MAGIC, FrameType.result, 0, 0, 0, 7, 0x40, 0, 0, 0, 0],
  );
  for (const length of [MAX_FRAME_BYTES + 1, -1, 1.5, NaN]) {
    assertThrows(
      () => writeFrameHeader(target, 0, FrameType.result, 7, length),
      RangeError,
      `body must be 0 to ${MAX_FRAME_BYTES} bytes: received ${length}`,
    );
  }
});

Deno.test("FrameDecoder.end() refuses a frame cut at every byte, and the decoder stays broken", () => {
  const frame = encodeFrame(FrameType.result, 3, new Uint8Array([1, 2, 3]));
  for (let cut = 1; cut < frame.length; cut++) {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    assertEquals(decoder.push(frame.subarray(0, cut)), []);
    const expected = cut < FRAME_HEADER_BYTES
      ? FRAME_HEADER_BYTES
      : frame.length;
    const error = assertThrows(
      () => decoder.end(),
      ProtocolError,
      `expected ${expected} bytes, received ${cut}`,
    );
    // the rest of the frame, arriving late, is not taken as a frame
    assertThrows(() => decoder.push(frame.subarray(cut)), ProtocolError);
    assertEquals(decoder.missingBody(), undefined);
    assert(assertThrows(() => decoder.push(frame)) === error);
  }
});

Deno.test("FrameDecoder.missingBody() and filled() receive a body in place, in any split", () => {
  const body = Uint8Array.from({ length: 10 }, (_, i) => i + 1);
  const frame = encodeFrame(FrameType.result, 9, body);
  for (let split = 0; split <= body.length; split++) {
    const decoder = new FrameDecoder(CHILD_FRAME_TYPES);
    assertEquals(decoder.missingBody(), undefined);
    assertEquals(decoder.push(frame.subarray(0, FRAME_HEADER_BYTES)), []);
    let missing = decoder.missingBody()!;
    assertEquals(missing.length, 10);
    missing.set(body.subarray(0, split));
    assertEquals(decoder.filled(split), split === 10 ? [expectedFrame()] : []);
    if (split === 10) continue;
    missing = decoder.missingBody()!;
    assertEquals(missing.length, 10 - split);
    assertThrows(() => decoder.filled(-1), RangeError, "with -1 bytes");
    assertThrows(
      () => decoder.filled(10 - split + 1),
      RangeError,
      "too many",
    );
    missing.set(body.subarray(split));
    assertEquals(decoder.filled(10 - split), [expectedFrame()]);
    assertEquals(decoder.missingBody(), undefined);
    assertThrows(() => decoder.filled(0), RangeError, "no body");
    decoder.end();
  }
  function expectedFrame() {
    return { type: FrameType.result, id: 9, body };
  }
});

Deno.test("decodeTaskBody() and decodeTaskMeta() refuse bodies too short to hold what they announce", () => {
  for (const length of [0, 1, 3]) {
    assertThrows(
      () => decodeTaskBody(new Uint8Array(length)),
      ProtocolError,
      `must hold at least 4 bytes: received ${length}`,
    );
  }
  // a task with no raw bytes (items, text) ends where its meta does
  const meta = encodeTaskMeta(
    { index: 1, offset: 2, length: 3, t0: 4, reason: "size", final: false },
    undefined,
  );
  const head = encodeTaskHead(1, meta, 0);
  const [frame] = new FrameDecoder(PARENT_FRAME_TYPES).push(head);
  const task = decodeTaskBody(frame!.body);
  assertEquals(task.raw.length, 0);
  assertEquals(decodeTaskMeta(task.meta, () => assert(false)), {
    info: {
      index: 1,
      offset: 2,
      length: 3,
      t0: 4,
      reason: "size",
      final: false,
    },
  });
  assertThrows(
    () => decodeTaskMeta(meta.subarray(0, 47), () => undefined),
    ProtocolError,
    "at least 48 bytes: received 47",
  );
});

Deno.test("decodeValue() refuses a number body of any size but 9 bytes, and an empty body", () => {
  const parse = () => assert(false);
  assertEquals(
    decodeValue(new Uint8Array([3, 0x40, 0x45, 0, 0, 0, 0, 0, 0]), parse),
    42,
  );
  for (const length of [0, 8, 10]) {
    const body = new Uint8Array(length);
    if (length > 0) body[0] = 3;
    assertThrows(
      () => decodeValue(body, parse),
      ProtocolError,
      `in ${length} bytes`,
    );
  }
});

Deno.test("toWireError() and fromWireError() carry an error's name, message and stack", () => {
  const thrown = new RangeError("chunk 1 is bad");
  const wire = toWireError(thrown);
  assertEquals(wire, {
    name: "RangeError",
    message: "chunk 1 is bad",
    stack: thrown.stack!,
  });
  const back = fromWireError(structuredClone(wire));
  assert(back instanceof Error);
  assertEquals(
    [back.name, back.message, back.stack],
    ["RangeError", "chunk 1 is bad", thrown.stack],
  );
  const custom = new Error("m");
  custom.name = "CustomError";
  delete custom.stack;
  assertEquals(toWireError(custom), { name: "CustomError", message: "m" });
  assertEquals(toWireError("plain text"), {
    name: "Error",
    message: "plain text",
  });
  assertEquals(toWireError(42), { name: "Error", message: "42" });
  const noStack = fromWireError({ name: "E", message: "m" });
  assertEquals([noStack.name, noStack.message], ["E", "m"]);
});
