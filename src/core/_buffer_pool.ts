// Copyright the @ocycle/core authors. MIT license.
// Recycled buffers. Every buffer the pool makes is, at any moment, exactly
// one of: free (on the stack), out (being filled or with a callback), given
// away (an owned chunk now belongs to the user), discarded (let go to the
// garbage collector) or lost (it died with a Worker). `created` is the sum of
// the five, which the tests check.

/** Counts of the pool's buffers. */
export interface BufferCounts {
  /** Buffers ever made. */
  readonly created: number;
  /** Buffers on the free stack, ready to be filled. */
  readonly free: number;
  /** Buffers being filled or held by a running or queued chunk. */
  readonly out: number;
  /** Buffers handed to callbacks as owned chunks: they belong to the user now. */
  readonly given: number;
  /** Buffers let go to the garbage collector: outgrown, or beyond the free stack's bound. */
  readonly discarded: number;
  /** Buffers lost with a Worker that died; each was replaced on demand. */
  readonly lost: number;
}

/** A stack of reusable buffers of at least `capacity` elements. */
export class BufferPool<B> {
  // The free stack: its top in `#top`, the rest in `#below`, which is made
  // only when a second buffer is free. An emitter whose callback hands its
  // buffer back in time has one buffer and never more than one free: then
  // no array, which with thousands of emitters is memory each.
  #top: B | undefined;
  #below: B[] | undefined;
  #created = 0;
  #out = 0;
  #given = 0;
  #lost = 0;
  #discarded = 0;
  /** Makes buffers: the emitter's kind, an object shared by every emitter, not a closure each. */
  readonly #maker: { alloc(capacity: number): B };
  readonly #capacity: number;
  readonly #keep: number;

  /**
   * @param maker Makes a buffer of the given capacity (`maker.alloc()`).
   * @param capacity The capacity of every new buffer.
   * @param keep How many free buffers to keep at most; extra ones are let go.
   */
  constructor(
    maker: { alloc(capacity: number): B },
    capacity: number,
    keep: number,
  ) {
    this.#maker = maker;
    this.#capacity = capacity;
    this.#keep = keep;
  }

  /** Takes a free buffer, or makes one. */
  take(): B {
    this.#out++;
    const b = this.#top;
    if (b !== undefined) {
      this.#top = this.#below?.pop();
      return b;
    }
    this.#created++;
    return this.#maker.alloc(this.#capacity);
  }

  /** Makes a buffer of a larger capacity to replace one that is out, which is let go. */
  grow(capacity: number): B {
    this.#created++;
    this.#discarded++;
    return this.#maker.alloc(capacity);
  }

  /** Returns a buffer for reuse. */
  release(buffer: B): void {
    this.#out--;
    if (this.#freeCount() >= this.#keep) {
      this.#discarded++;
      return;
    }
    if (this.#top !== undefined) (this.#below ??= []).push(this.#top);
    this.#top = buffer;
  }

  /** Records that a buffer now belongs to the user. */
  give(): void {
    this.#out--;
    this.#given++;
  }

  /** Records that a buffer was lost (it died with a Worker). */
  lose(): void {
    this.#out--;
    this.#lost++;
  }

  #freeCount(): number {
    return this.#top === undefined ? 0 : 1 + (this.#below?.length ?? 0);
  }

  /** The pool's counts. */
  counts(): BufferCounts {
    return {
      created: this.#created,
      free: this.#freeCount(),
      out: this.#out,
      given: this.#given,
      discarded: this.#discarded,
      lost: this.#lost,
    };
  }
}
