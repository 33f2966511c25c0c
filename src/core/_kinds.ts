// Copyright the @ocycle/core authors. MIT license.
// How each kind of data is checked, stored, copied and handed over. The write
// path (core/_write_path.ts) counts elements and never looks inside a frame; a
// kind is the only thing that knows whether an element is a byte, a sample
// frame, an item or a character.

import {
  type ChunkLayout,
  type TypedArray,
  type TypedArrayConstructor,
  typedArrayType,
} from "../wire/_layout.ts";
import type { BufferPool } from "./_buffer_pool.ts";
import type { LaterWrite } from "./_write_types.ts";

export type { TypedArray, TypedArrayConstructor } from "../wire/_layout.ts";

/** The typed arrays whose elements are numbers, for `set` and `subarray` casts. */
type NumericArray = Exclude<TypedArray, BigInt64Array | BigUint64Array>;

/**
 * One kind of data. `F` is a checked frame, `B` a buffer being filled, `C` a
 * chunk. Lengths and positions are in scalars: bytes, samples (a frame of
 * `unit` channels is `unit` scalars), items or UTF-16 code units for text are
 * never mixed; the emitter scales by `unit` where it reports frames.
 */
export interface Kind<F, B, C> {
  /** Scalars per element (channels for samples, else 1). */
  readonly unit: number;
  /** Whether buffers can be recycled, and so may be borrowed. */
  readonly pooled: boolean;
  /** What a Worker or child needs to rebuild chunks. */
  readonly layout: ChunkLayout;
  /** Checks and normalises one written frame. Throws TypeError naming the value. */
  frame(data: unknown, owner: string): F;
  /** The frame's length in scalars. */
  length(frame: F): number;
  /**
   * Checks a frame of length 0, which is written as nothing unless it is
   * empty only because its memory is gone. Throws TypeError naming the value.
   */
  empty(frame: F, owner: string): void;
  /**
   * A copy of a checked frame, from scalar `from` on, that `frame()` takes
   * again, for a write that must wait: the caller may change its data once
   * `write()` returns.
   */
  keep(frame: F, from?: number): unknown;
  /** A new, empty buffer with room for `capacity` scalars. */
  alloc(capacity: number): B;
  /** How many scalars the buffer holds at most. */
  capacity(buffer: B): number;
  /** Copies `frame[from, to)` into `buffer` at `at`. The buffer has room. */
  put(buffer: B, at: number, frame: F, from: number, to: number): void;
  /** Copies `source[from, to)` to the start of `target` (the overlap of hop windows). */
  carry(source: B, from: number, to: number, target: B): void;
  /** The chunk made of `buffer[0, length)`. */
  chunk(buffer: B, length: number): C;
}

const encoder = new TextEncoder();

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") {
    return value.length <= 40
      ? `string ${JSON.stringify(value)}`
      : `a string of length ${value.length}`;
  }
  if (typeof value === "object") {
    const name = (value as { constructor?: { name?: string } }).constructor
      ?.name;
    const length = (value as { length?: unknown }).length;
    return typeof length === "number"
      ? `${name ?? "object"} of length ${length}`
      : name ?? "object";
  }
  return `${typeof value} ${String(value)}`;
}

/** A readable description of a value for error messages. */
export { describe as describeValue };

/** The error for a write's `t0` that is not a finite number. */
export function badT0(owner: string, t0: unknown): RangeError {
  return new RangeError(
    `Cannot write to ${owner} as 't0' must be a finite number of milliseconds: received ${
      describe(t0)
    }`,
  );
}

/**
 * A write made while a chunk is handed on, checked now as `write()` checks
 * one and copied for later; `undefined` for an empty frame.
 *
 * @throws {TypeError} If `data` is not of the kind.
 * @throws {RangeError} If `t0` is not finite.
 */
export function keepWrite<F>(
  kind: Kind<F, unknown, unknown>,
  data: unknown,
  t0: number | undefined,
  wall: boolean,
  owner: string,
): LaterWrite | undefined {
  const frame = kind.frame(data, owner);
  if (t0 !== undefined && !Number.isFinite(t0)) throw badT0(owner, t0);
  const n = kind.length(frame);
  if (n !== 0) return { data: kind.keep(frame), n, t0, wall };
  kind.empty(frame, owner);
  return undefined;
}

/** Whether a buffer is an ArrayBuffer that was transferred (`transfer()`, postMessage). */
function isDetached(buffer: ArrayBufferLike): boolean {
  return (buffer as ArrayBuffer).detached === true;
}

function detachedError(owner: string, data: unknown): TypeError {
  return new TypeError(
    `Cannot write to ${owner} as 'data' must not be a view of a detached ArrayBuffer (one that was transferred): received ${
      describe(data)
    } over a detached buffer`,
  );
}

class TypedKind<T extends TypedArray> implements Kind<T, T, T> {
  readonly pooled = true;
  readonly layout: ChunkLayout;
  readonly unit: number;
  readonly #type: TypedArrayConstructor<T>;
  readonly #bytes: boolean;

  constructor(type: TypedArrayConstructor<T>, channels: number) {
    this.#type = type;
    this.unit = channels;
    this.#bytes = (type as unknown) === Uint8Array && channels === 1;
    this.layout = this.#bytes
      ? { kind: "bytes" }
      : { kind: "samples", type: type.name, channels };
  }

  frame(data: unknown, owner: string): T {
    if (data instanceof this.#type) {
      if (this.unit !== 1 && (data as T).length % this.unit !== 0) {
        throw new TypeError(
          `Cannot write to ${owner} as 'data' must hold whole frames of ${this.unit} channels: received ${
            describe(data)
          }`,
        );
      }
      return data as T;
    }
    if (this.#bytes) {
      if (typeof data === "string") return encoder.encode(data) as T;
      if (ArrayBuffer.isView(data)) {
        if (isDetached(data.buffer)) throw detachedError(owner, data);
        return new Uint8Array(
          data.buffer,
          data.byteOffset,
          data.byteLength,
        ) as T;
      }
      if (
        data instanceof ArrayBuffer ||
        (typeof SharedArrayBuffer !== "undefined" &&
          data instanceof SharedArrayBuffer)
      ) {
        if (isDetached(data)) {
          throw new TypeError(
            `Cannot write to ${owner} as 'data' must not be a detached ArrayBuffer (one that was transferred): received a detached ArrayBuffer`,
          );
        }
        return new Uint8Array(data) as T;
      }
      throw new TypeError(
        `Cannot write to ${owner} as 'data' must be a Uint8Array, an ArrayBufferView, an ArrayBuffer or a string: received ${
          describe(data)
        }`,
      );
    }
    const name = this.#type.name;
    // SampleEmit reads a Uint8Array as the samples' bytes.
    const or = (this.#type as unknown) === Uint8Array
      ? ""
      : " or a Uint8Array of its little-endian bytes";
    throw new TypeError(
      `Cannot write to ${owner} as 'data' must be ${
        /^[AEIO]/.test(name) ? "an" : "a"
      } ${name}${or}: received ${describe(data)}`,
    );
  }

  length(frame: T): number {
    return frame.length;
  }

  empty(frame: T, owner: string): void {
    // A view of a transferred buffer reads as empty: it is a mistake, not
    // an empty frame.
    if (isDetached(frame.buffer)) throw detachedError(owner, frame);
  }

  keep(frame: T, from = 0): T {
    return frame.slice(from) as T;
  }

  alloc(capacity: number): T {
    return new this.#type(capacity);
  }

  capacity(buffer: T): number {
    return buffer.length;
  }

  put(buffer: T, at: number, frame: T, from: number, to: number): void {
    if (from === 0 && to === frame.length) {
      (buffer as NumericArray).set(frame as NumericArray, at);
    } else {
      (buffer as NumericArray).set(
        (frame as NumericArray).subarray(from, to),
        at,
      );
    }
  }

  carry(source: T, from: number, to: number, target: T): void {
    (target as NumericArray).set((source as NumericArray).subarray(from, to));
  }

  chunk(buffer: T, length: number): T {
    return (length === buffer.length
      ? buffer
      : buffer.subarray(0, length)) as T;
  }
}

class ItemsKind<T> implements Kind<readonly T[], T[], T[]> {
  readonly unit = 1;
  readonly pooled = false;
  readonly layout: ChunkLayout = { kind: "items" };

  frame(data: unknown, owner: string): readonly T[] {
    if (Array.isArray(data)) return data;
    throw new TypeError(
      `Cannot write to ${owner} as 'data' must be an array of items: received ${
        describe(data)
      }`,
    );
  }
  length(frame: readonly T[]): number {
    return frame.length;
  }
  empty(): void {}
  keep(frame: readonly T[], from = 0): T[] {
    return frame.slice(from);
  }
  alloc(): T[] {
    return [];
  }
  capacity(): number {
    return Infinity;
  }
  put(buffer: T[], at: number, frame: readonly T[], from: number, to: number) {
    buffer.length = at;
    for (let i = from; i < to; i++) buffer.push(frame[i] as T);
  }
  carry(source: T[], from: number, to: number, target: T[]): void {
    target.length = 0;
    for (let i = from; i < to; i++) target.push(source[i] as T);
  }
  chunk(buffer: T[], length: number): T[] {
    buffer.length = length;
    return buffer;
  }
}

/**
 * Text is counted in Unicode code points, so a chunk boundary can never fall
 * inside a surrogate pair. A frame keeps its string and, only when it has
 * surrogates, the code-unit index of every code point.
 */
interface TextFrame {
  readonly text: string;
  readonly length: number;
  /** Code-unit index of each code point and of the end, or undefined when every code point is one code unit. */
  readonly units: Uint32Array | undefined;
}

const SURROGATE = /[\uD800-\uDFFF]/;

function textFrame(text: string): TextFrame {
  if (!SURROGATE.test(text)) {
    return { text, length: text.length, units: undefined };
  }
  const units: number[] = [];
  for (let i = 0; i < text.length; i++) {
    units.push(i);
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  const length = units.length;
  units.push(text.length);
  return { text, length, units: Uint32Array.from(units) };
}

function sliceText(frame: TextFrame, from: number, to: number): string {
  if (from === 0 && to === frame.length) return frame.text;
  const u = frame.units;
  return u === undefined
    ? frame.text.slice(from, to)
    : frame.text.slice(u[from], u[to]);
}

/** A text buffer: the pieces written so far, and how many code points they hold. */
interface TextBuffer {
  parts: string[];
  length: number;
}

class TextKind implements Kind<TextFrame, TextBuffer, string> {
  readonly unit = 1;
  readonly pooled = false;
  readonly layout: ChunkLayout = { kind: "text" };

  frame(data: unknown, owner: string): TextFrame {
    if (typeof data === "string") return textFrame(data);
    throw new TypeError(
      `Cannot write to ${owner} as 'data' must be a string: received ${
        describe(data)
      }`,
    );
  }
  length(frame: TextFrame): number {
    return frame.length;
  }
  empty(): void {}
  keep(frame: TextFrame, from = 0): string {
    return sliceText(frame, from, frame.length);
  }
  alloc(): TextBuffer {
    return { parts: [], length: 0 };
  }
  capacity(): number {
    return Infinity;
  }
  put(
    buffer: TextBuffer,
    at: number,
    frame: TextFrame,
    from: number,
    to: number,
  ) {
    if (at !== buffer.length) throw new RangeError("text buffer out of step");
    buffer.parts.push(sliceText(frame, from, to));
    buffer.length += to - from;
  }
  carry(source: TextBuffer, from: number, to: number, target: TextBuffer) {
    const whole = textFrame(source.parts.join(""));
    target.parts = [sliceText(whole, from, to)];
    target.length = to - from;
  }
  chunk(buffer: TextBuffer, length: number): string {
    const text = buffer.parts.join("");
    if (length === buffer.length) return text;
    return sliceText(textFrame(text), 0, length);
  }
}

/**
 * The first buffer, which shows whether `size` can be allocated at all.
 *
 * @throws {RangeError} If it cannot, naming `size`.
 */
export function firstBuffer<B>(
  kind: Kind<unknown, B, unknown>,
  pool: BufferPool<B> | undefined,
  scalars: number,
  settings: { readonly owner: string; readonly size: number },
): B {
  try {
    return pool ? pool.take() : kind.alloc(scalars);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    const unit = kind.unit === 1 ? "" : ` of ${kind.unit} channels`;
    throw new RangeError(
      `Cannot create ${settings.owner} as 'size' must be small enough to allocate a buffer of that many elements${unit}: received ${settings.size} (${error.message})`,
      { cause: error },
    );
  }
}

/** The kinds of data an emitter can hold. */
export type EmitterKind = "bytes" | "samples" | "items" | "text";

/** Options only {@linkcode SampleEmit} reads. */
export interface SampleKindOptions {
  type?: unknown;
  channels?: unknown;
}

// deno-lint-ignore no-explicit-any
type AnyKind = Kind<any, any, any>;

const BYTES: AnyKind = new TypedKind(Uint8Array, 1);

/** Makes each kind, checking the options it reads. */
const KINDS: Record<
  EmitterKind,
  (options: SampleKindOptions, owner: string) => AnyKind
> = {
  // One for every emitter: a kind holds no state, and thousands of emitters
  // then share one object that stays in the cache.
  bytes: () => BYTES,
  samples: ({ type = Float32Array, channels = 1 }, owner) => {
    if (
      typeof type !== "function" ||
      typedArrayType(type.name) !== (type as unknown)
    ) {
      throw new TypeError(
        `Cannot create ${owner} as 'type' must be a typed array constructor such as Int16Array: received ${
          describe(type)
        }`,
      );
    }
    if (!Number.isSafeInteger(channels) || (channels as number) <= 0) {
      throw new RangeError(
        `Cannot create ${owner} as 'channels' must be a positive integer: received ${
          describe(channels)
        }`,
      );
    }
    return new TypedKind(
      type as TypedArrayConstructor<TypedArray>,
      channels as number,
    );
  },
  items: () => new ItemsKind(),
  text: () => new TextKind(),
};

/**
 * The kind of data of that name.
 *
 * @throws {TypeError} If `type` is not a typed array constructor (samples).
 * @throws {RangeError} If `channels` is not a positive integer (samples).
 */
export function createKind(
  name: EmitterKind,
  options: SampleKindOptions,
  owner: string,
): AnyKind {
  return KINDS[name](options, owner);
}
