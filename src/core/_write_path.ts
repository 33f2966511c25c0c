// Copyright the @ocycle/core authors. MIT license.
// The write path: frames in, chunks out. It copies each frame into the buffer
// being filled and cuts a chunk once `size` is reached, carrying the overlap
// of `hop` windows, skipping the gaps between them, pausing for the sampler
// and emitting a partial chunk after `maxWait`. It counts elements and never
// looks inside a frame: the kind (core/_kinds.ts) does. What becomes of a
// chunk is the emitter's business: the path hands each one to `emit`.
//
// All counts are in scalars: bytes, items, characters, or samples (a frame of
// `unit` channels is `unit` scalars).
//
// The path is not re-entrant: a write or flush made while a chunk is being
// handed on (from a serial callback, onDone or onError) is deferred and applied,
// in order, once the outer write or flush is done, so that stream order holds;
// while the queue has no room for it (`maxQueued`), once it has.
// Sampler pauses run on the monotonic clock (performance.now()) unless the
// caller stamps its writes: a step of the wall clock never drops data.

import type { ChunkInfo } from "../chunk_info.ts";
import type { BufferPool } from "./_buffer_pool.ts";
import { badT0, firstBuffer, keepWrite, type Kind } from "./_kinds.ts";
import { checkPause } from "./_rules.ts";
import type { CutSettings, Later, Rest, Sink } from "./_write_types.ts";

export type { CutSettings, Emit, Fail, Room, Sink } from "./_write_types.ts";

/** Frames in, chunks out. */
export class WritePath<F, B, C> {
  // The fields every write reads come first, so that they share the first
  // cache lines of the object: with thousands of emitters written in turn,
  // each line is a miss.
  /** Set while a chunk is handed on: writes and flushes then wait in `#later`. */
  #emitting = false;
  readonly #kind: Kind<F, B, C>;
  #buffer: B | undefined;
  #fill = 0;
  /** Absolute offset of everything written so far. */
  #offset = 0;
  /** Absolute offset of the next window start that has no timestamp yet. */
  #nextStart = 0;
  readonly #size: number;
  /** Whether the next unemitted element must start the `maxWait` clock. */
  #unarmed: boolean;
  /** Elements written, dropped ones included. */
  written = 0;
  /**
   * Set by the emitter when the queue had room after a write, cleared by
   * every cut (only a cut adds to the queue): while set, a write that cuts
   * nothing need not ask the queue again.
   */
  open = false;
  /** What a write could not cut for want of room, cut as the queue drains. */
  #rest: Rest | undefined;

  /** Read, not copied: emitters made alike share them (core/_options.ts). */
  readonly #settings: CutSettings;
  readonly #pool: BufferPool<B> | undefined;
  /** Where chunks, late errors and the question of room go: the queue. */
  readonly #sink: Sink<C>;
  /** Absolute offset of the buffer's first element. */
  #winStart = 0;
  /** Absolute offset up to which everything has been emitted. */
  #emittedTo = 0;
  /** The oldest uncut window start's timestamp (NaN: none); later ones in `#t0More`. */
  #t0 = NaN;
  #t0More: number[] | undefined;
  /** The monotonic time (performance.now()) before which the sampler drops writes. */
  #resumeAt: number | undefined;
  /** The same in the caller's clock, when the write that paused had a `t0`. */
  #resumeAtT0: number | undefined;
  #index = 0;
  /**
   * The `maxWait` timer, which runs on from one chunk to the next: a cut does
   * not clear it, and when it fires early for the partial chunk now being
   * filled it waits again for the rest. So a steady stream sets one timer
   * per `maxWait`, not one per chunk.
   */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When (performance.now()) the first unemitted element was written. */
  #firstAt = 0;
  #draining = false;
  /** Set by `halt()`: the current write stops and what waits is dropped. */
  #halted = false;
  /** What was asked while a chunk was handed on, made when first needed. */
  #later: Later[] | undefined;

  /** Elements dropped by the sampler or with the tail. */
  dropped = 0;
  /** Elements skipped between windows when `hop > size`. */
  skipped = 0;
  /** Called before the `maxWait` timer acts: the emitter settles a loan. */
  readonly #collect: (() => void) | undefined;

  constructor(
    kind: Kind<F, B, C>,
    settings: CutSettings,
    pool: BufferPool<B> | undefined,
    sink: Sink<C>,
    collect?: () => void,
  ) {
    this.#kind = kind;
    this.#collect = collect;
    this.#settings = settings;
    this.#size = settings.size * kind.unit;
    this.#unarmed = settings.maxWait !== Infinity;
    this.#pool = pool;
    this.#sink = sink;
    this.#buffer = firstBuffer(kind, pool, this.#size, settings);
  }

  /**
   * Writes one frame; cuts every chunk it completes. While a chunk is being
   * handed on, the frame is checked, copied and written once the outer write
   * or flush is done.
   *
   * @param wall Whether `t0` was read from the wall clock (by `fanout`)
   * rather than given as the data's own clock, which the sampler then uses.
   * @returns `open` when the frame only went into the partial chunk, else
   * `false`: the caller then asks the queue whether there is room.
   * @throws {TypeError} If `data` is not of the kind.
   * @throws {RangeError} If `t0` is not finite, or the sampler returns a bad
   * value; nothing of the frame was written then.
   */
  write(data: unknown, t0: number | undefined, wall: boolean): boolean {
    if (this.#emitting) {
      // Checked now, written once the outer write or flush is done.
      const later = keepWrite(this.#kind, data, t0, wall, this.#settings.owner);
      if (later !== undefined) (this.#later ??= []).push(later);
      return false;
    }
    const kind = this.#kind, owner = this.#settings.owner;
    const frame = kind.frame(data, owner);
    if (t0 !== undefined && !Number.isFinite(t0)) throw badT0(owner, t0);
    const n = kind.length(frame);
    if (n === 0) {
      kind.empty(frame, owner);
      return false;
    }
    const start = this.#offset;
    // The common case, kept short: the whole frame lands in the partial chunk
    // and neither completes it nor starts a window that needs a timestamp. A
    // partial chunk is never filled during a sampler pause. Every buffer
    // holds at least `size`, so the frame fits.
    const fill0 = this.#fill;
    if (
      fill0 > 0 && fill0 + n < this.#size && this.#nextStart >= start + n
    ) {
      this.#offset = start + n;
      this.written += n;
      if (this.#unarmed) this.#arm();
      kind.put(this.#buffer!, fill0, frame, 0, n);
      this.#fill = fill0 + n;
      return this.open;
    }
    this.#cutWrite(frame, n, start, t0, wall);
    return false;
  }

  /**
   * Lends the buffer being filled (`lent`, at `fill`) to the emitter, which
   * then copies the common write itself: with thousands of emitters each
   * object a write reaches is a cache miss. Returns the fill it may copy up
   * to (a frame then neither completes the chunk nor starts a window), or 0:
   * not bytes, busy, halted, no room, a `maxWait` clock to start, a sampler
   * pause or an empty buffer. Nothing else is asked until `settle()`.
   */
  lend(): number {
    const fill = this.#fill;
    // `open` is false while a write waits; a pause or a halt empties the tail.
    if (
      this.#kind.layout.kind !== "bytes" || fill === 0 || !this.open ||
      this.#emitting || this.#unarmed
    ) return 0;
    return Math.min(this.#size - 1, fill + (this.#nextStart - this.#offset));
  }
  get lent(): B {
    return this.#buffer!;
  }
  get fill(): number {
    return this.#fill;
  }

  /** The emitter copied frames into the lent buffer up to `fill`. */
  settle(fill: number): void {
    const n = fill - this.#fill;
    this.#fill = fill;
    this.#offset += n;
    this.written += n;
  }

  /**
   * The rest of `write()`, apart so that its common case stays small enough
   * to inline: a frame that completes a chunk, starts a window or meets a
   * sampler pause.
   */
  #cutWrite(
    frame: F,
    n: number,
    start: number,
    t0: number | undefined,
    wall: boolean,
  ): void {
    // A write that may complete a chunk while the queue is full is refused
    // whole: memory stays bounded even for a writer that ignores `false`.
    const full = this.#rest === undefined ? this.#sink.room() : this.#full();
    if (full !== undefined) throw full;
    // The sampler's clock: the caller's t0, else the monotonic clock.
    const own = wall ? undefined : t0;
    const resuming = this.#resumeAt !== undefined;
    if (resuming && this.#paused(own)) {
      this.#offset = start + n;
      this.written += n;
      this.dropped += n;
      return;
    }
    // The sampler is asked before anything changes, so that a sampler that
    // throws fails the write with nothing of it emitted; only by a write that
    // completes a chunk. No gap of `hop > size` windows is ever skipped then:
    // every window that starts after a cut starts after a pause, with the
    // write that resumes.
    let pause = -1, pausedAt = 0;
    if (
      this.#settings.sampler !== undefined &&
      (resuming ? 0 : this.#fill) + n >= this.#size
    ) {
      pause = checkPause(this.#settings.sampler(), this.#settings.owner);
      pausedAt = performance.now();
    }
    this.#offset = start + n;
    this.written += n;
    if (resuming) {
      this.#resumeAt = this.#resumeAtT0 = undefined;
      this.#winStart = this.#nextStart = this.#emittedTo = start;
    }
    if (this.#unarmed) this.#arm();
    this.#cutFrom(frame, n, start, t0, own, pause, pausedAt);
    if (this.#later !== undefined && this.#rest === undefined) this.#drain();
  }

  /**
   * Cuts the chunks a frame of `n` scalars completes, the frame starting at
   * absolute offset `start`. With `pause >= 0` the sampler pauses after the
   * first cut. When the queue has no room for another chunk, the rest of the
   * frame is copied and waits for `resume()`.
   */
  #cutFrom(
    frame: F,
    n: number,
    start: number,
    t0: number | undefined,
    own: number | undefined,
    pause: number,
    pausedAt: number,
  ): void {
    const kind = this.#kind;
    let stamp = t0;
    const size = this.#size, clip = this.#settings.clip;
    let pos = 0;
    while (pos < n) {
      let fill = this.#fill;
      if (fill === 0 && start + pos < this.#winStart) {
        // The gap between two windows when hop > size.
        const k = Math.min(this.#winStart - start - pos, n - pos);
        this.skipped += k;
        pos += k;
        continue;
      }
      const end = clip ? Math.min(n, pos + size - fill) : n;
      if (this.#nextStart < start + end) {
        stamp ??= Date.now();
        if (clip) {
          do {
            this.#pushT0(stamp);
            this.#nextStart += this.#settings.hop * this.#kind.unit;
          } while (this.#nextStart < start + end);
        } else {
          this.#pushT0(stamp);
          this.#nextStart = Infinity;
        }
      }
      if (this.#unarmed) this.#arm();
      let buffer: B = this.#buffer!;
      if (!clip && fill + end - pos > kind.capacity(buffer)) {
        const grown = this.#pool
          ? this.#pool.grow(Math.max(2 * fill, fill + end - pos))
          : kind.alloc(fill + end - pos);
        kind.carry(buffer, 0, fill, grown);
        this.#buffer = buffer = grown;
      }
      kind.put(buffer, fill, frame, pos, end);
      this.#fill = fill += end - pos;
      pos = end;
      if (fill >= size) {
        this.#cut("size", false);
        if (this.#halted) {
          // Aborted from the chunk's callback: the rest never reaches one.
          this.dropped += n - pos;
          break;
        }
        if (pause >= 0) {
          this.#pause(pausedAt + pause, own === undefined ? own : own + pause);
          this.dropped += n - pos;
          break;
        }
        if (pos < n && this.#sink.room() !== undefined) {
          this.#rest = {
            data: kind.keep(frame, pos),
            n: n - pos,
            start: start + pos,
            stamp,
            own,
          };
          break;
        }
      }
    }
  }

  /**
   * Emits the partial chunk, if it holds anything not yet emitted; while a
   * chunk is being handed on, once the outer write or flush is done; while
   * part of a write waits for room, once that part is cut.
   */
  flush(reason: "flush" | "close" | "maxWait"): void {
    // In stream order: after the chunk being handed on, and after the rest
    // of a write that waits for room (cut as the queue drains).
    if (this.#emitting || this.#rest !== undefined) {
      (this.#later ??= []).push(() => this.flush(reason));
      return;
    }
    if (this.#halted) return;
    this.#disarm();
    if (this.#winStart + this.#fill > this.#emittedTo && this.#fill > 0) {
      this.#cut(reason, reason === "close");
    }
    if (this.#later !== undefined) this.#drain();
  }

  /** Whether a chunk is being handed on: what is asked now must wait for `defer`. */
  get busy(): boolean {
    return this.#emitting;
  }

  /** Runs `op` once the outer write or flush is done, after what was deferred before it. */
  defer(op: () => void): void {
    (this.#later ??= []).push(op);
  }

  /**
   * Whether part of a write, or a write deferred from a callback, waits for
   * room in the queue.
   */
  get waiting(): boolean {
    return this.#rest !== undefined ||
      (this.#later !== undefined && !this.#emitting && !this.#draining);
  }

  /**
   * Cuts what a write left for want of room, then applies the writes
   * deferred behind it, as far as the queue has room now.
   */
  resume(): void {
    if (this.#emitting || this.#halted) return;
    const rest = this.#rest;
    if (rest !== undefined) {
      this.#rest = undefined;
      const frame = this.#kind.frame(rest.data, this.#settings.owner);
      this.#cutFrom(frame, rest.n, rest.start, rest.stamp, rest.own, -1, 0);
    }
    if (this.#later !== undefined && this.#rest === undefined) this.#drain();
  }

  /**
   * Stops at once (the emitter is aborted): the tail is dropped, the write
   * being cut stops after the chunk being handed on, and deferred writes and
   * what waits for room are dropped; all of it is counted.
   */
  halt(): void {
    this.dropTail();
    this.#halted = true;
    if (this.#rest !== undefined) {
      this.dropped += this.#rest.n;
      this.#rest = undefined;
    }
    // What waited behind it is counted (and a deferred close() settles);
    // while a chunk is handed on, once the write that cut it is done.
    if (!this.#emitting) this.#drain();
  }

  /** The error for a write made while part of an earlier one waits for room. */
  #full(): Error {
    return this.#sink.room() ?? new RangeError(
      `Cannot write to ${this.#settings.owner} as part of an earlier write still waits for room in the queue: await 'ready' before writing more`,
    );
  }

  /** Drops the part of the partial chunk not yet emitted, counting it. */
  dropTail(): void {
    this.#disarm();
    this.#clearTimer();
    this.dropped += this.#winStart + this.#fill - this.#unemittedFrom();
    this.#fill = 0;
  }

  /** Stops for good: no timer, and the buffer back to the pool. */
  stop(): void {
    this.#clearTimer();
    this.#unarmed = false;
    if (this.#pool !== undefined && this.#buffer !== undefined) {
      this.#pool.release(this.#buffer);
    }
    this.#buffer = undefined;
    this.#fill = 0;
  }

  /** Where the unemitted part of the buffer starts. */
  #unemittedFrom(): number {
    return Math.min(
      Math.max(this.#emittedTo, this.#winStart),
      this.#winStart + this.#fill,
    );
  }

  /**
   * Applies what was deferred, in order, including what that defers in turn,
   * up to a write the queue has no room for.
   * A deferred write that fails (its sampler throws) is counted as dropped,
   * and its error goes to `fail`: its caller has returned, and the caller of
   * the outer write must not hear of it as a failure of its own frame.
   */
  #drain(): void {
    const later = this.#later;
    if (this.#draining || later === undefined) return;
    this.#draining = true;
    for (let i = 0; i < later.length; i++) {
      const op = later[i]!;
      if (
        typeof op !== "function" && !this.#halted &&
        this.#sink.room() !== undefined
      ) {
        // No room for what it may cut (as when part of a write drained here
        // waits): this write and what comes after wait, in order, for
        // resume().
        this.#later = later.slice(i);
        this.#draining = false;
        return;
      }
      try {
        if (typeof op === "function") op();
        else if (!this.#halted) this.write(op.data, op.t0, op.wall);
        else {
          this.written += op.n;
          this.dropped += op.n;
        }
      } catch (error) {
        if (typeof op !== "function") {
          this.written += op.n;
          this.dropped += op.n;
        }
        this.#sink.report(error);
      }
    }
    // Let go once drained: a stream deferred to once holds no array after.
    this.#later = undefined;
    this.#draining = false;
  }

  /** Whether a write stamped `t0` (or now, without) falls in the sampler's pause. */
  #paused(t0: number | undefined): boolean {
    return t0 !== undefined && this.#resumeAtT0 !== undefined
      ? t0 < this.#resumeAtT0
      : performance.now() < this.#resumeAt!;
  }

  /**
   * Starts a sampler pause until `resumeAt` on the monotonic clock and, when
   * the write that paused had a `t0`, until `resumeAtT0` in the caller's.
   */
  #pause(resumeAt: number, resumeAtT0: number | undefined): void {
    this.#disarm();
    this.#resumeAt = resumeAt;
    this.#resumeAtT0 = resumeAtT0;
    // A gap in the data must not be stitched over: the carry goes too, and
    // what of it was never emitted is counted (not the gap of `hop > size`
    // windows, which holds nothing yet).
    this.dropped += this.#winStart + this.#fill - this.#unemittedFrom();
    this.#fill = 0;
    this.#t0 = NaN;
    this.#t0More = undefined;
  }

  /** Emits `buffer[0, fill)` and sets up the next buffer. */
  #cut(reason: ChunkInfo["reason"], final: boolean): void {
    const kind = this.#kind;
    const buffer = this.#buffer!;
    const length = this.#fill;
    const winStart = this.#winStart;
    const unit = this.#kind.unit;
    const t0 = this.#shiftT0() ?? Date.now();
    const info: ChunkInfo = {
      index: this.#index++,
      offset: winStart / unit,
      length: length / unit,
      t0,
      reason,
      final,
    };
    this.#emittedTo = winStart + length;
    // The next buffer is taken before the chunk leaves only when the overlap
    // of the next window must be carried out of it; otherwise after, so that
    // a callback that is done with a borrowed chunk when it returns hands its
    // buffer back in time to be filled again: one buffer per emitter, and a
    // second only while a callback really holds the first.
    let next: B | undefined;
    if (reason === "size" && this.#settings.clip) {
      const hop = this.#settings.hop * this.#kind.unit, size = this.#size;
      if (hop < size) {
        next = this.#take();
        kind.carry(buffer, hop, size, next);
        this.#fill = size - hop;
      } else this.#fill = 0;
      this.#winStart = winStart + hop;
    } else {
      this.#fill = 0;
      this.#winStart = this.#nextStart = winStart + length;
      this.#t0 = NaN;
      this.#t0More = undefined;
    }
    // The carry was emitted already: `maxWait` counts from the next element.
    this.#disarm();
    this.#buffer = next;
    this.open = false;
    this.#emitting = true;
    try {
      this.#sink.submit(kind.chunk(buffer, length), info, buffer);
    } finally {
      this.#emitting = false;
      this.#buffer ??= this.#take();
    }
  }

  /** Queues the timestamp of a window start. */
  #pushT0(t0: number): void {
    if (Number.isNaN(this.#t0)) this.#t0 = t0;
    else (this.#t0More ??= []).push(t0);
  }

  /** The oldest queued timestamp, taken off the queue; `undefined` for none. */
  #shiftT0(): number | undefined {
    const t0 = this.#t0, more = this.#t0More;
    this.#t0 = more !== undefined && more.length !== 0 ? more.shift()! : NaN;
    return Number.isNaN(t0) ? undefined : t0;
  }

  #take(): B {
    return this.#pool ? this.#pool.take() : this.#kind.alloc(this.#size);
  }

  /** The first unemitted element came: `maxWait` counts from now. */
  #arm(): void {
    this.#unarmed = false;
    this.#firstAt = performance.now();
    this.#timer ??= setTimeout(() => this.#expire(), this.#settings.maxWait);
  }

  /**
   * The timer fired: the partial chunk is emitted if its first element
   * waited `maxWait`; one begun after the timer was set waits out the rest.
   */
  #expire(): void {
    this.#timer = undefined;
    this.#collect?.();
    if (this.#unarmed || this.#buffer === undefined) return;
    const left = this.#firstAt + this.#settings.maxWait - performance.now();
    if (left > 0) {
      this.#timer = setTimeout(() => this.#expire(), Math.ceil(left));
    } else this.flush("maxWait");
  }

  /** Nothing unemitted waits now: the next element starts the clock again. */
  #disarm(): void {
    this.#unarmed = this.#settings.maxWait !== Infinity &&
      this.#buffer !== undefined;
  }

  /** Clears the timer, for good. */
  #clearTimer(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}
