// Copyright the @ocycle/core authors. MIT license.
// RELIABILITY item 23: every bad argument is a TypeError or RangeError at
// once, naming the argument and the value.
import { assertEquals, assertThrows } from "@std/assert";
import { BufferEmit, type BufferEmitOptions, SampleEmit } from "../mod.ts";

const cb = () => {};

Deno.test("BufferEmit rejects bad arguments, naming them", async (t) => {
  const cases: [string, () => unknown, ErrorConstructor, string][] = [
    [
      "size -3",
      () => new BufferEmit(cb, -3),
      RangeError,
      "Cannot create BufferEmit as 'size' must be a positive integer: received number -3",
    ],
    [
      "size 1.5",
      () => new BufferEmit(cb, 1.5),
      RangeError,
      "'size' must be a positive integer: received number 1.5",
    ],
    [
      "size NaN",
      () => new BufferEmit(cb, NaN),
      RangeError,
      "received number NaN",
    ],
    [
      "size string",
      () => new BufferEmit(cb, "8" as never),
      RangeError,
      'received string "8"',
    ],
    [
      // A float above 2 ** 53 is an integer, but not a safe one.
      "size 2 ** 53",
      () => new BufferEmit(cb, 2 ** 53),
      RangeError,
      "'size' must be a positive integer: received number 9007199254740992",
    ],
    [
      "hop 0",
      () => new BufferEmit(cb, 8, { clip: true, hop: 0 }),
      RangeError,
      "'hop' must be a positive integer: received number 0",
    ],
    [
      "hop without clip",
      () => new BufferEmit(cb, 8, { hop: 2 }),
      TypeError,
      "'hop' requires 'clip: true'",
    ],
    [
      "hop equal to size without clip",
      () => new BufferEmit(cb, 8, { hop: 8 }),
      TypeError,
      "'hop' requires 'clip: true': received hop 8 without clip",
    ],
    [
      "sampler -1",
      () => new BufferEmit(cb, 8, { sampler: -1 }),
      RangeError,
      "'sampler' must be a finite number of milliseconds >= 0 or a function: received number -1",
    ],
    [
      "sampler NaN",
      () => new BufferEmit(cb, 8, { sampler: NaN }),
      RangeError,
      "received number NaN",
    ],
    [
      "sampler Infinity",
      () => new BufferEmit(cb, 8, { sampler: Infinity }),
      RangeError,
      "'sampler' must be a finite number of milliseconds >= 0 or a function: received number Infinity",
    ],
    [
      "mode",
      () => new BufferEmit(cb, 8, { mode: "fiber" as never }),
      TypeError,
      `'mode' must be "serial", "thread", "process" or "redis": received string "fiber"`,
    ],
    [
      "pool",
      () => new BufferEmit(cb, 8, { pool: 0 }),
      RangeError,
      "'pool' must be a positive integer: received number 0",
    ],
    [
      "concurrency",
      () => new BufferEmit(cb, 8, { concurrency: -1 }),
      RangeError,
      "'concurrency' must be a positive integer",
    ],
    [
      "maxPending",
      () => new BufferEmit(cb, 8, { maxPending: -1 }),
      RangeError,
      "'maxPending' must be an integer >= 0 or Infinity: received number -1",
    ],
    [
      "maxQueued 0",
      () => new BufferEmit(cb, 8, { maxPending: 0, maxQueued: 0 }),
      RangeError,
      "'maxQueued' must be a positive integer or Infinity: received number 0",
    ],
    [
      "maxQueued below maxPending",
      () => new BufferEmit(cb, 8, { maxPending: 8, maxQueued: 4 }),
      RangeError,
      "Cannot create BufferEmit as 'maxQueued' must be at least 'maxPending' (8): received 4",
    ],
    [
      "overflow",
      () => new BufferEmit(cb, 8, { overflow: "spill" as never }),
      TypeError,
      "'overflow' must be",
    ],
    [
      "maxWait",
      () => new BufferEmit(cb, 8, { maxWait: 0 }),
      RangeError,
      "'maxWait' must be a number of milliseconds > 0: received number 0",
    ],
    [
      "timeout",
      () => new BufferEmit(cb, 8, { timeout: -5 }),
      RangeError,
      "'timeout' must be a number of milliseconds > 0: received number -5",
    ],
    [
      "startTimeout",
      () => new BufferEmit(cb, 8, { startTimeout: 0 }),
      RangeError,
      "'startTimeout' must be a number of milliseconds > 0: received number 0",
    ],
    [
      "idleTimeout",
      () => new BufferEmit(cb, 8, { idleTimeout: -1 }),
      RangeError,
      "'idleTimeout' must be a number of milliseconds > 0: received number -1",
    ],
    [
      "retries",
      () => new BufferEmit(cb, 8, { retries: -1 }),
      RangeError,
      "'retries' must be an integer >= 0: received number -1",
    ],
    [
      "retries, not an integer",
      () => new BufferEmit(cb, 8, { retries: 1.5 }),
      RangeError,
      "'retries' must be an integer >= 0: received number 1.5",
    ],
    [
      "retryDelay",
      () => new BufferEmit(cb, 8, { retryDelay: -1 }),
      RangeError,
      "'retryDelay' must be a finite number of milliseconds >= 0: received number -1",
    ],
    [
      "retryDelay, infinite",
      () => new BufferEmit(cb, 8, { retryDelay: Infinity }),
      RangeError,
      "'retryDelay' must be a finite number of milliseconds >= 0: received number Infinity",
    ],
    [
      "onDone",
      () => new BufferEmit(cb, 8, { onDone: 3 as never }),
      TypeError,
      "'onDone' must be a function: received number 3",
    ],
    [
      "onError",
      () => new BufferEmit(cb, 8, { onError: "log" as never }),
      TypeError,
      `'onError' must be a function: received string "log"`,
    ],
    [
      "exportName empty",
      () => new BufferEmit(cb, 8, { exportName: "" }),
      TypeError,
      `'exportName' must be a non-empty string: received string ""`,
    ],
    [
      "signal",
      () => new BufferEmit(cb, 8, { signal: {} as never }),
      TypeError,
      "'signal' must be an AbortSignal",
    ],
    [
      "clip",
      () => new BufferEmit(cb, 8, { clip: "yes" as never }),
      TypeError,
      "'clip' must be a boolean",
    ],
    [
      "callback",
      () => new BufferEmit(42 as never, 8),
      TypeError,
      "'callback' must be a function or the URL of a module that exports one: received number 42",
    ],
    [
      "function in thread mode",
      () => new BufferEmit(cb, 8, { mode: "thread" }),
      TypeError,
      "a function cannot cross into a Worker",
    ],
    [
      "function in process mode",
      () => new BufferEmit(cb, 8, { mode: "process" }),
      TypeError,
      "a function cannot cross into a child process",
    ],
    [
      "permissions",
      () =>
        new BufferEmit(
          cb,
          8,
          { permissions: { hack: true } as never } as BufferEmitOptions,
        ),
      TypeError,
      "'permissions.hack' is not a Deno permission",
    ],
    [
      "permissions with a comma",
      () =>
        new BufferEmit(cb, 8, {
          permissions: { write: ["/tmp/out", "/tmp/a,b"] },
        }),
      TypeError,
      "'permissions.write' holds a value with a comma, which Deno's --allow-write list cannot express: received string \"/tmp/a,b\"",
    ],
    [
      // Deno refuses --allow-write= with an empty path when the child starts.
      "permissions with an empty path",
      () =>
        new BufferEmit(cb, 8, {
          permissions: { write: ["/tmp/out", ""] },
        }),
      TypeError,
      `'permissions.write' holds an empty string, which Deno's --allow-write list refuses: received ["/tmp/out",""]`,
    ],
    [
      "a process-mode module path with a comma",
      () =>
        new BufferEmit(new URL("file:///tmp/a,b/callback.ts"), 8, {
          mode: "process",
        }),
      TypeError,
      "the path of its callback module has a comma, which Deno's --allow-read list cannot express: move or rename /tmp/a,b/callback.ts, or grant permissions.read: true",
    ],
    [
      "v8Flags",
      () => new BufferEmit(cb, 8, { v8Flags: [1] as never }),
      TypeError,
      "'v8Flags' must be an array of strings",
    ],
    [
      // Item 35: not V8's bare "Array buffer allocation failed".
      "a size that cannot be allocated",
      () => new BufferEmit(cb, Number.MAX_SAFE_INTEGER),
      RangeError,
      "Cannot create BufferEmit as 'size' must be small enough to allocate a buffer of that many elements: received 9007199254740991",
    ],
    [
      "a size too large to allocate for one sample",
      () => new SampleEmit(cb, 2 ** 40, { type: Float64Array, channels: 8 }),
      RangeError,
      "Cannot create SampleEmit as 'size' must be small enough to allocate a buffer of that many elements of 8 channels: received 1099511627776",
    ],
  ];
  for (const [name, fn, type, fragment] of cases) {
    await t.step(name, () => {
      assertThrows(fn, type, fragment);
    });
  }
});

Deno.test("BufferEmit accepts every option at the edge of its range", async (t) => {
  const cases: [string, BufferEmitOptions][] = [
    ["maxPending 0", { maxPending: 0 }],
    ["maxPending Infinity", { maxPending: Infinity }],
    ["maxQueued Infinity", { maxPending: 4, maxQueued: Infinity }],
    ["maxQueued equal to maxPending", { maxPending: 4, maxQueued: 4 }],
    ["sampler 0", { sampler: 0 }],
    ["retries 0", { retries: 0 }],
    ["retryDelay 0", { retries: 1, retryDelay: 0 }],
    ["timeout Infinity", { timeout: Infinity }],
    ["hop above size", { clip: true, hop: 9 }],
  ];
  for (const [name, options] of cases) {
    await t.step(name, async () => {
      const buff = new BufferEmit(cb, 8, options);
      buff.write(new Uint8Array(8));
      await buff.close();
      assertEquals(buff.stats.done, 1);
    });
  }
});

Deno.test("BufferEmit.write() rejects data that is not bytes and bad timestamps", async () => {
  const buff = new BufferEmit(cb, 8);
  assertThrows(
    () => buff.write(123 as never),
    TypeError,
    "Cannot write to BufferEmit as 'data' must be a Uint8Array, an ArrayBufferView, an ArrayBuffer or a string: received number 123",
  );
  assertThrows(() => buff.write(null as never), TypeError, "received null");
  assertThrows(
    () => buff.write([1, 2] as never),
    TypeError,
    "received Array of length 2",
  );
  assertThrows(
    () => buff.write(new Uint8Array(1), NaN),
    RangeError,
    "'t0' must be a finite number of milliseconds: received number NaN",
  );
  assertThrows(
    () => buff.write(new Uint8Array(1), Infinity),
    RangeError,
    "received number Infinity",
  );
  await buff.close();
  // Nothing the user wrote was lost: bad writes were refused before counting.
  if (buff.stats.written !== 0) throw new Error("a refused write was counted");
});

Deno.test("BufferEmit.write() refuses a view of a detached buffer, naming 'data'", async (t) => {
  // RELIABILITY item 35: a transferred buffer reads as 0 bytes, which must
  // not pass for an empty frame.
  const detached = <T extends ArrayBufferView>(view: T): T => {
    (view.buffer as ArrayBuffer).transfer();
    return view;
  };
  const cases: [string, () => unknown][] = [
    ["a Uint8Array", () => detached(new Uint8Array(8))],
    ["an Int16Array", () => detached(new Int16Array(4))],
    ["a DataView", () => detached(new DataView(new ArrayBuffer(8)))],
    ["an ArrayBuffer", () => {
      const buffer = new ArrayBuffer(8);
      buffer.transfer();
      return buffer;
    }],
  ];
  for (const [name, make] of cases) {
    await t.step(name, async () => {
      const buff = new BufferEmit(cb, 4);
      assertThrows(
        () => buff.write(make() as Uint8Array),
        TypeError,
        "Cannot write to BufferEmit as 'data' must not be",
      );
      buff.write(new Uint8Array(0)); // a real empty frame is still nothing
      await buff.close();
      assertEquals(buff.stats.written, 0);
    });
  }
});
