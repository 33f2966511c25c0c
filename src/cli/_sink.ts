// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line's stdout: outputs in input order or as they come.

/**
 * Writes outputs to stdout, in input order or as they come, and bounds how
 * many chunks may be read but not yet written out, so that a slow first
 * chunk under --keep-order cannot make memory grow without limit.
 */
export class Sink {
  readonly #keepOrder: boolean;
  readonly #limit: number;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #held = new Map<number, Uint8Array | undefined>();
  #next = 0;
  #admitted = 0;
  #delivered = 0;
  #chain: Promise<void> = Promise.resolve();
  #waiters: (() => void)[] = [];
  #drained: (() => void)[] = [];
  error: unknown;
  outputBytes = 0;

  constructor(
    keepOrder: boolean,
    limit: number,
    writer: WritableStreamDefaultWriter<Uint8Array>,
  ) {
    this.#keepOrder = keepOrder;
    this.#limit = limit;
    this.#writer = writer;
  }

  /** Counts a chunk handed on; resolve `room` before handing on more. */
  admit(): void {
    this.#admitted++;
  }

  /** Resolves when fewer than `limit` chunks wait to be written out. */
  get room(): Promise<void> {
    if (this.#admitted - this.#delivered < this.#limit) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Takes chunk `index`'s output (`undefined` for none). */
  deliver(index: number, output: Uint8Array | undefined): void {
    this.#delivered++;
    if (!this.#keepOrder) this.#write(output);
    else {
      this.#held.set(index, output);
      while (this.#held.has(this.#next)) {
        const next = this.#held.get(this.#next);
        this.#held.delete(this.#next++);
        this.#write(next);
      }
    }
    if (this.#admitted - this.#delivered < this.#limit) {
      for (const resolve of this.#waiters.splice(0)) resolve();
    }
    if (this.#admitted === this.#delivered) {
      for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  /** Resolves once every admitted chunk is delivered and written. */
  async drain(): Promise<void> {
    if (this.#admitted !== this.#delivered) {
      await new Promise<void>((resolve) => this.#drained.push(resolve));
    }
    await this.#chain;
  }

  #write(output: Uint8Array | undefined): void {
    if (output === undefined || output.length === 0) return;
    this.#chain = this.#chain.then(async () => {
      if (this.error !== undefined) return;
      try {
        await this.#writer.write(output);
        this.outputBytes += output.length;
      } catch (error) {
        this.error = error;
      }
    });
  }
}
