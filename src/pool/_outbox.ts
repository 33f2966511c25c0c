// Copyright the @ocycle/core authors. MIT license.
// When the chunks for one batching slot (thread mode) leave, and in what
// batches. Under load the cost of a message, not of its bytes, bounds the
// rate: chunks given to a thread wait here until the current task of the main
// thread ends (a microtask) and leave together. A quick thread's outbox leaves
// when the thread runs low; a slow one's leaves in batches of half its chunks,
// so that it always has the next batch while it runs one, and each message,
// both ways, carries several chunks.

/**
 * Milliseconds per chunk above which a thread counts as slow: its outbox
 * leaves as soon as it holds half of the thread's chunks, so that the thread
 * always has a whole batch waiting while it runs the current one.
 */
const SLOW_MS = 0.1;

/** The outbox of one thread. */
export class Outbox<J> {
  /** The outbox leaves once the thread has at most this many chunks sent. */
  readonly #lowWater: number;
  /** A slow thread's outbox leaves once it holds this many chunks. */
  readonly #batch: number;
  /** Sends one batch to the thread. */
  readonly #send: (jobs: J[]) => void;
  #jobs: J[] = [];
  #flushing = false;
  /** Replies since the last turn, for the time per chunk. */
  #replies = 0;
  /** A moving average of the thread's milliseconds per chunk, message costs included. */
  #perChunk = 0;
  /** When it last replied, or got work while idle (performance.now()). */
  #since = 0;

  /**
   * @param concurrency Chunks the thread may hold.
   * @param send Sends one batch; called from a microtask.
   */
  constructor(concurrency: number, send: (jobs: J[]) => void) {
    // With two chunks per thread, batches of two beat a pipeline of single
    // messages; with more, a batch leaves while the thread still runs one.
    this.#lowWater = Math.floor((concurrency - 1) / 2);
    this.#batch = Math.max(1, Math.floor(concurrency / 2));
    this.#send = send;
  }

  /** Chunks waiting in it. */
  get length(): number {
    return this.#jobs.length;
  }

  /** Adds a chunk; `sent` is how many the thread holds already. */
  push(job: J, sent: number): void {
    this.#jobs.push(job);
    this.#schedule(sent);
  }

  /** The thread was sent chunks while it held `sent` before. */
  sending(sent: number): void {
    if (sent === 0) this.#since = performance.now();
  }

  /** The thread answered one chunk. */
  replied(): void {
    this.#replies++;
  }

  /** The replies of one message are in; the thread now holds `sent`. */
  turn(sent: number): void {
    if (this.#replies === 0) return;
    const now = performance.now();
    this.#perChunk += ((now - this.#since) / this.#replies - this.#perChunk) /
      4;
    this.#since = now;
    this.#replies = 0;
    this.#schedule(sent);
  }

  /** Empties it: the chunks that never left, oldest first. */
  clear(): J[] {
    const jobs = this.#jobs;
    this.#jobs = [];
    return jobs;
  }

  /**
   * Flushes at the end of the current task, unless the thread holds enough
   * chunks to keep busy: then the outbox grows until the replies bring it
   * down, or, for a slow thread, until it makes a whole batch.
   */
  #schedule(sent: number): void {
    if (
      !this.#flushing && this.#jobs.length > 0 &&
      (sent <= this.#lowWater ||
        (this.#perChunk > SLOW_MS && this.#jobs.length >= this.#batch))
    ) {
      this.#flushing = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushing = false;
    const jobs = this.clear();
    if (jobs.length === 0) return;
    // A slow thread gets batches of at most `#batch`: it replies to a whole
    // batch at once, so a larger one would leave it idle until the refill.
    const most = this.#perChunk > SLOW_MS ? this.#batch : jobs.length;
    if (jobs.length <= most) return this.#send(jobs);
    for (let at = 0; at < jobs.length; at += most) {
      this.#send(jobs.slice(at, at + most));
    }
  }
}
