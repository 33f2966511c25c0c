// Copyright the @ocycle/core authors. MIT license.
// The framing of process mode's stdio: how a byte stream becomes messages and
// back, whatever the split of the bytes. What a frame's body holds is
// wire/_values.ts's business.

// Every message between the parent and a child process is one frame:
//
//   byte 0      FRAME_MAGIC: 0xC0 | protocol version (1)
//   byte 1      the message type (FrameType)
//   bytes 2-5   the task id, u32 big-endian (0 when there is no task)
//   bytes 6-9   the body's length in bytes, u32 big-endian
//   bytes 10-   the body
//
// A decoder checks the magic byte, the type and the length before it allocates the body,
// and never tries to resynchronise: after a bad frame the stream is dead.

/** The first byte of every frame: the magic bits and the protocol version. */
export const FRAME_MAGIC = 0xc1;

/** Bytes in a frame header. */
export const FRAME_HEADER_BYTES = 10;

/** The largest body a frame may announce (1 GiB): anything larger is refused unread. */
export const MAX_FRAME_BYTES = 1 << 30;

/**
 * A line a child writes to its stderr just before each error frame. The
 * parent reads its child's stdout and stderr apart; it reports an error once
 * it has read stderr up to this line, so that the stderr tail of the error
 * holds all the callback printed before it threw. Never forwarded.
 */
export const STDERR_SYNC = "\u0000ocycle:stderr-sync";

/** The message type of a frame. */
export const FrameType = {
  /** Parent to child: an init message (id 0). */
  init: 1,
  /** Parent to child: a task (wire/_values.ts). */
  task: 2,
  /** Child to parent: ready (id 0, empty body). */
  ready: 3,
  /** Child to parent: the module could not be loaded (id 0, a WireError). */
  startupError: 4,
  /** Child to parent: a result (the value). */
  result: 5,
  /** Child to parent: the callback threw (a WireError). */
  error: 6,
} as const;

/** One of the values of {@linkcode FrameType}. */
export type FrameTypeValue = typeof FrameType[keyof typeof FrameType];

/** The frame types a parent may send. */
export const PARENT_FRAME_TYPES: ReadonlySet<number> = new Set([
  FrameType.init,
  FrameType.task,
]);

/** The frame types a child may send. */
export const CHILD_FRAME_TYPES: ReadonlySet<number> = new Set([
  FrameType.ready,
  FrameType.startupError,
  FrameType.result,
  FrameType.error,
]);

/** A decoded frame. */
export interface Frame {
  readonly type: FrameTypeValue;
  readonly id: number;
  /** The body, in a buffer of its own that starts at offset 0. */
  readonly body: Uint8Array;
}

/** A stream of frames broke the protocol; the stream cannot be trusted again. */
export class ProtocolError extends Error {
  /** The error's name. */
  override readonly name = "ProtocolError";
}

/** Writes a frame header into `target` at `at`. */
export function writeFrameHeader(
  target: Uint8Array,
  at: number,
  type: FrameTypeValue,
  id: number,
  length: number,
): void {
  if (!(Number.isInteger(length) && length >= 0 && length <= MAX_FRAME_BYTES)) {
    throw new RangeError(
      `Cannot write a frame as its body must be 0 to ${MAX_FRAME_BYTES} bytes: received ${length}`,
    );
  }
  if (!(Number.isInteger(id) && id >= 0 && id <= 0xffffffff)) {
    throw new RangeError(
      `Cannot write a frame as its task id must be a u32: received ${id}`,
    );
  }
  target[at] = FRAME_MAGIC;
  target[at + 1] = type;
  const view = new DataView(target.buffer, target.byteOffset + at + 2, 8);
  view.setUint32(0, id);
  view.setUint32(4, length);
}

/** A whole frame: its header followed by `body`. */
export function encodeFrame(
  type: FrameTypeValue,
  id: number,
  body: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  writeFrameHeader(frame, 0, type, id, body.length);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

const EMPTY = new Uint8Array(0);

/**
 * Turns a byte stream into frames, whatever the split of the bytes: one byte
 * at a time, or a header cut across reads. The header is checked before the
 * body is allocated. After a ProtocolError the decoder refuses everything.
 */
export class FrameDecoder {
  readonly #types: ReadonlySet<number>;
  readonly #maxBytes: number;
  readonly #header = new Uint8Array(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #type: FrameTypeValue = FrameType.init;
  #id = 0;
  #body: Uint8Array | undefined;
  #bodyFill = 0;
  #broken: ProtocolError | undefined;

  /**
   * @param types The frame types this side may receive.
   * @param maxBytes The largest body accepted.
   */
  constructor(types: ReadonlySet<number>, maxBytes: number = MAX_FRAME_BYTES) {
    this.#types = types;
    this.#maxBytes = maxBytes;
  }

  /**
   * Feeds bytes; returns the frames they complete, in order.
   *
   * @throws {ProtocolError} On a bad magic byte, an unknown type or a length over the limit.
   */
  push(bytes: Uint8Array): Frame[] {
    if (this.#broken !== undefined) throw this.#broken;
    const frames: Frame[] = [];
    let pos = 0;
    const n = bytes.length;
    while (pos < n) {
      const body = this.#body;
      if (body === undefined) {
        const take = Math.min(FRAME_HEADER_BYTES - this.#headerFill, n - pos);
        this.#header.set(bytes.subarray(pos, pos + take), this.#headerFill);
        this.#headerFill += take;
        pos += take;
        if (this.#headerFill < FRAME_HEADER_BYTES) break;
        this.#startBody(frames);
      } else {
        const take = Math.min(body.length - this.#bodyFill, n - pos);
        body.set(bytes.subarray(pos, pos + take), this.#bodyFill);
        this.#bodyFill += take;
        pos += take;
        if (this.#bodyFill === body.length) this.#finish(frames, body);
      }
    }
    return frames;
  }

  /**
   * While a body is being received: the part of it still missing, so that a
   * reader can read straight into it (saving a copy); report what was read
   * with {@linkcode FrameDecoder.filled}.
   */
  missingBody(): Uint8Array | undefined {
    if (this.#broken !== undefined || this.#body === undefined) {
      return undefined;
    }
    return this.#body.subarray(this.#bodyFill);
  }

  /** Says that `n` bytes were read into {@linkcode FrameDecoder.missingBody}; returns the frame if it is complete. */
  filled(n: number): Frame[] {
    const body = this.#body;
    if (body === undefined || n < 0 || this.#bodyFill + n > body.length) {
      throw new RangeError(
        `Cannot fill a frame body with ${n} bytes: ${
          body === undefined ? "no body is being received" : "too many"
        }`,
      );
    }
    this.#bodyFill += n;
    const frames: Frame[] = [];
    if (this.#bodyFill === body.length) this.#finish(frames, body);
    return frames;
  }

  #startBody(frames: Frame[]): void {
    const header = this.#header;
    if (header[0] !== FRAME_MAGIC) {
      this.#fail(
        `bad magic byte 0x${hex(header[0]!)} (expected 0x${
          hex(FRAME_MAGIC)
        }): the stream holds something other than frames, such as user output`,
      );
    }
    const type = header[1]!;
    if (!this.#types.has(type)) {
      this.#fail(`unknown message type ${type}`);
    }
    const view = new DataView(header.buffer);
    const id = view.getUint32(2);
    const length = view.getUint32(6);
    if (length > this.#maxBytes) {
      this.#fail(
        `a frame announced a body of ${length} bytes, over the limit of ${this.#maxBytes} bytes`,
      );
    }
    this.#type = type as FrameTypeValue;
    this.#id = id;
    this.#headerFill = 0;
    if (length === 0) {
      frames.push({ type: this.#type, id, body: EMPTY });
    } else {
      this.#body = new Uint8Array(length);
      this.#bodyFill = 0;
    }
  }

  #finish(frames: Frame[], body: Uint8Array): void {
    frames.push({ type: this.#type, id: this.#id, body });
    this.#body = undefined;
    this.#bodyFill = 0;
  }

  #fail(detail: string): never {
    this.#broken = new ProtocolError(detail);
    throw this.#broken;
  }

  /**
   * The frame cut short, if the bytes so far end inside one: how many bytes
   * it needs in all (header included, or only the header while the header is
   * incomplete) and how many came.
   */
  get partial(): { expected: number; received: number } | undefined {
    if (this.#body !== undefined) {
      return {
        expected: FRAME_HEADER_BYTES + this.#body.length,
        received: FRAME_HEADER_BYTES + this.#bodyFill,
      };
    }
    if (this.#headerFill > 0) {
      return { expected: FRAME_HEADER_BYTES, received: this.#headerFill };
    }
    return undefined;
  }

  /**
   * Says the stream ended.
   *
   * @throws {ProtocolError} If it ended inside a frame.
   */
  end(): void {
    const partial = this.partial;
    if (partial !== undefined) {
      this.#fail(
        `the stream ended in the middle of a frame: expected ${partial.expected} bytes, received ${partial.received}`,
      );
    }
  }
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}
