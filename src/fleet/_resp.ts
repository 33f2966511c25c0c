// Copyright the @ocycle/core authors. MIT license.
// RESP, the Redis wire protocol: commands out as arrays of bulk strings, replies
// in through an incremental decoder that takes the bytes however they are split.
// Bulk strings stay bytes (binary-safe); a large one is filled in place, from
// the reads or by the reader itself (`bulkTarget`), never by joining buffers;
// short ones are copied side by side into a shared slab.

/** One argument of a command: bytes as they are, strings as UTF-8, numbers as decimal text. */
export type Arg = string | Uint8Array | number;

/**
 * A decoded reply: bulk strings are bytes, simple strings text, integers
 * numbers (bigint past 2^53), nil `null`, arrays (and RESP3 maps and sets,
 * flattened as RESP2 sends them) arrays, errors nested in arrays `ErrorReply`.
 */
export type Reply =
  | Uint8Array
  | string
  | number
  | bigint
  | boolean
  | null
  | ErrorReply
  | Reply[];

/** An error reply as the server sent it; the client turns it into a `RedisError` naming the command. */
export class ErrorReply {
  /** The server's message, e.g. "WRONGTYPE Operation against a key holding the wrong kind of value". */
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CR = 13;
const LF = 10;

/**
 * Commands encoded one after another into one growing buffer, to be written
 * in one write: an argument's bytes are copied once, straight into it (a
 * chunk of a fleet is 64 KiB or more: a buffer of its own per command, then
 * one joining them, were two more allocations, zero-filled, and a copy).
 */
export class CommandBuffer {
  #bytes: Uint8Array;
  #length = 0;

  constructor(capacity = 16 * 1024) {
    this.#bytes = new Uint8Array(capacity);
  }

  /** The buffer; its first `length` bytes are the commands. */
  get bytes(): Uint8Array {
    return this.#bytes;
  }

  get length(): number {
    return this.#length;
  }

  /** Appends one command; returns its size in bytes. */
  append(args: readonly Arg[]): number {
    const start = this.#length;
    // Checked first: a command that throws leaves nothing behind.
    for (const arg of args) if (typeof arg === "number") numberText(arg);
    this.#reserve(16);
    this.#head(0x2a, args.length);
    for (const arg of args) {
      if (arg instanceof Uint8Array) {
        this.#reserve(arg.length + 24);
        this.#head(0x24, arg.length);
        this.#bytes.set(arg, this.#length);
        this.#length += arg.length;
      } else {
        this.#text(typeof arg === "number" ? numberText(arg) : arg);
      }
      this.#bytes[this.#length++] = CR;
      this.#bytes[this.#length++] = LF;
    }
    return this.#length - start;
  }

  /** A string as a bulk string: ASCII straight in, anything else through a TextEncoder. */
  #text(text: string): void {
    this.#reserve(text.length + 24);
    const at = this.#length;
    this.#head(0x24, text.length);
    const bytes = this.#bytes;
    let i = this.#length;
    for (let c = 0; c < text.length; c++) {
      const code = text.charCodeAt(c);
      if (code >= 0x80) {
        // not ASCII: its UTF-8 length is not its length
        const utf8 = encoder.encode(text);
        this.#length = at;
        this.#reserve(utf8.length + 24);
        this.#head(0x24, utf8.length);
        this.#bytes.set(utf8, this.#length);
        this.#length += utf8.length;
        return;
      }
      bytes[i++] = code;
    }
    this.#length = i;
  }

  /** `*N\r\n` or `$N\r\n` (room reserved). */
  #head(mark: number, n: number): void {
    const bytes = this.#bytes;
    let at = this.#length;
    bytes[at++] = mark;
    if (n === 0) bytes[at++] = 0x30;
    else {
      let digits = 0;
      for (let rest = n; rest > 0; rest = Math.floor(rest / 10)) digits++;
      for (let i = at + digits - 1; i >= at; i--, n = Math.floor(n / 10)) {
        bytes[i] = 0x30 + n % 10;
      }
      at += digits;
    }
    bytes[at++] = CR;
    bytes[at++] = LF;
    this.#length = at;
  }

  /** Cuts out `size` bytes at `start` (a command that will not be sent). */
  remove(start: number, size: number): void {
    this.#bytes.copyWithin(start, start + size, this.#length);
    this.#length -= size;
  }

  /** Empties it; a buffer grown past `keep` bytes is let go. */
  clear(keep = 4 * 1024 * 1024): void {
    this.#length = 0;
    if (this.#bytes.length > keep) this.#bytes = new Uint8Array(16 * 1024);
  }

  #reserve(size: number): void {
    const need = this.#length + size;
    if (need <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(need, this.#bytes.length * 2));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }
}

function numberText(n: number): string {
  if (!Number.isFinite(n)) {
    throw new TypeError(
      `Cannot send a non-finite number to Redis: received ${n}`,
    );
  }
  return String(n);
}

interface Frame {
  items: Reply[];
  remaining: number;
  /** RESP3 attributes describe the next reply and are dropped. */
  discard: boolean;
}

/** How a bulk payload becomes a reply once complete. */
type BulkKind = "bulk" | "verbatim" | "error";

/**
 * The longest reply line kept (a type, a length, a simple string or an
 * error): a server or a man in the middle that never ends one cannot make
 * the client hold an unbounded buffer.
 */
export const MAX_LINE = 1024 * 1024;

/**
 * A bulk string this short is copied into a slab shared with others (field
 * names, ids, small values) rather than a buffer of its own: a fleet entry
 * has a dozen, and each buffer of its own was an allocation for the GC.
 */
const SMALL_BULK = 256;
const SLAB_SIZE = 8 * 1024;

/**
 * The incremental RESP2/RESP3 decoder: `feed()` bytes as they come, in any
 * split, and take the complete replies with `take()`.
 */
export class ReplyDecoder {
  #replies: Reply[] = [];
  #stack: Frame[] = [];
  #line = new Uint8Array(64);
  #lineLength = 0;
  #bulk: Uint8Array | null = null;
  #bulkFilled = 0;
  #bulkKind: BulkKind = "bulk";
  /** The bytes of `\r\n` still to skip after a bulk payload. */
  #trailer = 0;
  /** Where short bulk strings are copied, one after another. */
  #slab = new Uint8Array(SLAB_SIZE);
  #slabUsed = 0;

  /** Decodes `bytes`; the decoder copies what it keeps, so the caller may reuse them. */
  feed(bytes: Uint8Array): void {
    let i = 0;
    const end = bytes.length;
    while (i < end) {
      if (this.#trailer > 0) {
        const expected = this.#trailer === 2 ? CR : LF;
        if (bytes[i] !== expected) {
          throw new RangeError(
            "Cannot decode a Redis reply: a bulk string is not followed by CRLF",
          );
        }
        i++;
        if (--this.#trailer === 0) this.#endBulk();
        continue;
      }
      if (this.#bulk !== null) {
        const n = Math.min(this.#bulk.length - this.#bulkFilled, end - i);
        this.#bulk.set(bytes.subarray(i, i + n), this.#bulkFilled);
        this.#bulkFilled += n;
        i += n;
        this.#bulkDone();
        continue;
      }
      const lf = bytes.indexOf(LF, i);
      if (lf === -1) {
        this.#keep(bytes.subarray(i, end));
        return;
      }
      if (this.#lineLength === 0) {
        const next = this.#fast(bytes, i, lf, end);
        if (next !== -1) {
          i = next;
          continue;
        }
      }
      let line: Uint8Array;
      if (this.#lineLength > 0) {
        this.#keep(bytes.subarray(i, lf + 1));
        line = this.#line.subarray(0, this.#lineLength);
        this.#lineLength = 0;
      } else {
        line = bytes.subarray(i, lf + 1);
      }
      i = lf + 1;
      this.#header(line);
    }
  }

  /**
   * The rest of the bulk string being read, for a reader to fill directly
   * (then `filled(n)`), or `null` when no bulk string is open.
   */
  bulkTarget(): Uint8Array | null {
    return this.#bulk === null || this.#trailer > 0
      ? null
      : this.#bulk.subarray(this.#bulkFilled);
  }

  /** Records that `n` bytes were read into `bulkTarget()`. */
  filled(n: number): void {
    this.#bulkFilled += n;
    this.#bulkDone();
  }

  /** The complete replies decoded so far, in order; the decoder forgets them. */
  take(): Reply[] {
    const replies = this.#replies;
    this.#replies = [];
    return replies;
  }

  /** Whether the decoder holds part of a reply. */
  get partial(): boolean {
    return this.#stack.length > 0 || this.#bulk !== null ||
      this.#trailer > 0 || this.#lineLength > 0;
  }

  /**
   * The common lines, read in place: an array's length, or a bulk string's
   * length and, when it is short and all here, the string itself (copied to
   * a shared slab: no buffer of its own). Returns where it stopped, or -1 to
   * leave the line to `#header`. `lf` is the line's LF, in `bytes`.
   */
  #fast(bytes: Uint8Array, i: number, lf: number, end: number): number {
    const type = bytes[i]!;
    if (
      (type !== 0x24 && type !== 0x2a) || lf - i < 3 || bytes[lf - 1] !== CR
    ) {
      return -1;
    }
    let n = 0;
    for (let at = i + 1; at < lf - 1; at++) {
      const digit = bytes[at]! - 0x30;
      if (digit < 0 || digit > 9 || at - i > 15) return -1;
      n = n * 10 + digit;
    }
    if (type === 0x2a) {
      this.#aggregate(n, false);
      return lf + 1;
    }
    const from = lf + 1;
    if (n > SMALL_BULK || from + n + 2 > end) return -1;
    if (bytes[from + n] !== CR || bytes[from + n + 1] !== LF) return -1;
    if (this.#slabUsed + n > this.#slab.length) {
      this.#slab = new Uint8Array(SLAB_SIZE);
      this.#slabUsed = 0;
    }
    const value = this.#slab.subarray(this.#slabUsed, this.#slabUsed + n);
    this.#slabUsed += n;
    value.set(bytes.subarray(from, from + n));
    this.#value(value);
    return from + n + 2;
  }

  #keep(bytes: Uint8Array): void {
    const need = this.#lineLength + bytes.length;
    if (need > MAX_LINE) {
      throw new RangeError(
        `Cannot decode a Redis reply: a line runs past ${MAX_LINE} bytes without CRLF`,
      );
    }
    if (need > this.#line.length) {
      const grown = new Uint8Array(Math.max(need, this.#line.length * 2));
      grown.set(this.#line.subarray(0, this.#lineLength));
      this.#line = grown;
    }
    this.#line.set(bytes, this.#lineLength);
    this.#lineLength = need;
  }

  #bulkDone(): void {
    if (this.#bulk !== null && this.#bulkFilled === this.#bulk.length) {
      this.#trailer = 2;
    }
  }

  #endBulk(): void {
    const bytes = this.#bulk!;
    this.#bulk = null;
    this.#bulkFilled = 0;
    switch (this.#bulkKind) {
      case "bulk":
        return this.#value(bytes);
      case "verbatim": // "txt:" or "mkd:", then the text
        return this.#value(bytes.subarray(4));
      case "error":
        return this.#value(new ErrorReply(decoder.decode(bytes)));
    }
  }

  #startBulk(length: number, kind: BulkKind): void {
    this.#bulk = new Uint8Array(length);
    this.#bulkFilled = 0;
    this.#bulkKind = kind;
    this.#bulkDone();
  }

  /** One header line, `\r\n` included. */
  #header(line: Uint8Array): void {
    if (line.length < 3 || line[line.length - 2] !== CR) {
      throw new RangeError(
        `Cannot decode a Redis reply: malformed line ${
          JSON.stringify(decoder.decode(line.subarray(0, 40)))
        }`,
      );
    }
    const type = line[0]!;
    const body = line.subarray(1, line.length - 2);
    switch (type) {
      case 0x2b: // + simple string
        return this.#value(decoder.decode(body));
      case 0x2d: // - error
        return this.#value(new ErrorReply(decoder.decode(body)));
      case 0x3a: // : integer
        return this.#value(integer(body));
      case 0x24: // $ bulk string
      case 0x3d: // = verbatim string
      case 0x21: { // ! bulk error
        const length = Number(integer(body));
        if (length < 0) return this.#value(null);
        return this.#startBulk(
          length,
          type === 0x24 ? "bulk" : type === 0x3d ? "verbatim" : "error",
        );
      }
      case 0x2a: // * array
      case 0x7e: // ~ set
      case 0x3e: // > push
        return this.#aggregate(Number(integer(body)), false);
      case 0x25: // % map
        return this.#aggregate(2 * Number(integer(body)), false);
      case 0x7c: // | attribute
        return this.#aggregate(2 * Number(integer(body)), true);
      case 0x5f: // _ null
        return this.#value(null);
      case 0x23: // # boolean
        return this.#value(body[0] === 0x74);
      case 0x2c: // , double
        return this.#value(double(decoder.decode(body)));
      case 0x28: // ( big number
        return this.#value(BigInt(decoder.decode(body)));
      default:
        throw new RangeError(
          `Cannot decode a Redis reply: unknown type byte ${type}`,
        );
    }
  }

  #aggregate(count: number, discard: boolean): void {
    if (count < 0) return this.#value(null);
    if (count === 0) return discard ? undefined : this.#value([]);
    this.#stack.push({ items: [], remaining: count, discard });
  }

  /** A complete value: into the open aggregate, or out as a reply. */
  #value(value: Reply): void {
    for (;;) {
      const top = this.#stack.at(-1);
      if (top === undefined) {
        this.#replies.push(value);
        return;
      }
      top.items.push(value);
      if (--top.remaining > 0) return;
      this.#stack.pop();
      if (top.discard) return;
      value = top.items;
    }
  }
}

/** A RESP integer: a number when it is safe, a bigint past 2^53. */
function integer(body: Uint8Array): number | bigint {
  let n = 0;
  let i = 0;
  const negative = body[0] === 0x2d;
  if (negative || body[0] === 0x2b) i = 1;
  if (i === body.length) throw badInteger(body);
  for (; i < body.length; i++) {
    const digit = body[i]! - 0x30;
    if (digit < 0 || digit > 9) throw badInteger(body);
    n = n * 10 + digit;
  }
  if (!Number.isSafeInteger(n)) return BigInt(decoder.decode(body));
  return negative ? -n : n;
}

function badInteger(body: Uint8Array): RangeError {
  return new RangeError(
    `Cannot decode a Redis reply: not an integer ${
      JSON.stringify(decoder.decode(body.subarray(0, 40)))
    }`,
  );
}

function double(text: string): number {
  if (text === "inf") return Infinity;
  if (text === "-inf") return -Infinity;
  if (text === "nan") return NaN;
  return Number(text);
}

/** Milliseconds XREAD or XREADGROUP may block by its BLOCK (0: forever). */
export function blockOf(name: string, args: readonly Arg[]): number {
  if (name !== "XREAD" && name !== "XREADGROUP") return 0;
  for (let i = 1; i + 1 < args.length; i++) {
    const arg = args[i];
    if (typeof arg === "string" && arg.toUpperCase() === "BLOCK") {
      const ms = Number(args[i + 1]);
      return ms === 0 ? Infinity : ms;
    }
  }
  return 0;
}

/** The command's name for messages: its first argument, never the others (they may hold a password). */
export function commandName(args: readonly Arg[]): string {
  const first = args[0];
  if (first === undefined) return "(empty command)";
  const text = first instanceof Uint8Array
    ? new TextDecoder().decode(first.subarray(0, 32))
    : String(first);
  return text.toUpperCase();
}
