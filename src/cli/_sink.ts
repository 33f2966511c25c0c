// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line's stdout. Each chunk's output is written as it
// comes when the chunk owns stdout, and held otherwise: in memory up to
// SPOOL_MEMORY bytes, then in a temporary file, so that memory stays bounded
// however much a command writes. With --keep-order the chunk that owns stdout
// is the next in input order; without it, the first to write while stdout is
// free. The outputs of two chunks never interleave.

/** Bytes of one chunk's output held in memory before the rest goes to a file. */
export const SPOOL_MEMORY = 1 << 20;

/** One chunk's output, written to stdout as it comes or held until its turn. */
export class Output {
  /** The chunk's index. */
  readonly index: number;
  readonly #sink: Sink;
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  #file: Deno.FsFile | undefined;
  #path: string | undefined;
  /** Set while it owns stdout: its bytes go there at once. */
  #live = false;
  /** Writes in order: each waits for the one before. */
  #chain: Promise<void> = Promise.resolve();
  /** Set once the chunk is done: nothing more will come. */
  done = false;
  /** Set once it wrote anything. */
  wrote = false;
  /** Set when it was done and written whole before its turn came. */
  waiting = false;

  constructor(index: number, sink: Sink) {
    this.index = index;
    this.#sink = sink;
  }

  /** Whether it owns stdout and has written out all it held. */
  get live(): boolean {
    return this.#live;
  }

  /** Takes more of the output; resolves once it is written or held. */
  write(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return this.#chain;
    this.wrote = true;
    this.#sink.claim(this);
    return this.#chain = this.#chain.then(() =>
      this.#live ? this.#sink.out(bytes) : this.#hold(bytes)
    );
  }

  /** The chunk is done: once its turn comes, the next one's begins. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    this.#chain = this.#chain.then(() => this.#sink.finished(this));
  }

  /** Its turn: what it holds goes out first, then it writes as it comes. */
  own(): Promise<void> {
    return this.#chain = this.#chain.then(async () => {
      for (const bytes of this.#held) await this.#sink.out(bytes);
      this.#held = [];
      this.#heldBytes = 0;
      if (this.#file !== undefined) {
        await this.#file.seek(0, Deno.SeekMode.Start);
        for await (const bytes of this.#file.readable) {
          await this.#sink.out(bytes);
        }
        this.#file = undefined;
        await Deno.remove(this.#path!).catch(() => {});
      }
      this.#live = true;
      if (this.waiting) {
        this.waiting = false;
        this.#sink.finished(this);
      }
    });
  }

  /** Drops what it holds (after a fatal error). */
  async discard(): Promise<void> {
    await this.#chain.catch(() => {});
    this.#held = [];
    if (this.#file !== undefined) {
      this.#file.close();
      this.#file = undefined;
      await Deno.remove(this.#path!).catch(() => {});
    }
  }

  async #hold(bytes: Uint8Array): Promise<void> {
    if (
      this.#file === undefined && this.#heldBytes + bytes.length <= SPOOL_MEMORY
    ) {
      // A copy: the reader may reuse its buffer.
      this.#held.push(bytes.slice());
      this.#heldBytes += bytes.length;
      return;
    }
    if (this.#file === undefined) {
      this.#path = await Deno.makeTempFile({ prefix: "ocycle-output-" });
      this.#file = await Deno.open(this.#path, { read: true, write: true });
      for (const held of this.#held) await writeAll(this.#file, held);
      this.#held = [];
      this.#heldBytes = 0;
    }
    await writeAll(this.#file, bytes);
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await file.write(bytes.subarray(at));
  }
}

/**
 * Writes outputs to stdout, in input order or one chunk at a time as they
 * come, and bounds how many chunks may be read but not yet written out, so
 * that a slow first chunk under --keep-order cannot hold back without limit.
 */
export class Sink {
  readonly #keepOrder: boolean;
  readonly #limit: number;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Outputs not yet written out whole, by chunk index. */
  readonly #outputs = new Map<number, Output>();
  /** The output that owns stdout. */
  #owner: Output | undefined;
  /** With --keep-order: the index whose output is next. */
  #next = 0;
  #admitted = 0;
  #delivered = 0;
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

  /** The output of chunk `index`, made on first use. */
  output(index: number): Output {
    let output = this.#outputs.get(index);
    if (output === undefined) {
      output = new Output(index, this);
      this.#outputs.set(index, output);
      this.claim(output);
    }
    return output;
  }

  /** Takes chunk `index`'s whole output (`undefined` for none), and ends it. */
  deliver(index: number, bytes: Uint8Array | undefined): void {
    const output = this.output(index);
    if (bytes !== undefined) output.write(bytes);
    output.finish();
  }

  /** Resolves once every admitted chunk is written out. */
  async drain(): Promise<void> {
    if (this.#admitted !== this.#delivered) {
      await new Promise<void>((resolve) => this.#drained.push(resolve));
    }
  }

  /** Gives stdout to `output` if it is its turn and stdout is free. */
  claim(output: Output): void {
    if (this.#owner !== undefined) return;
    const turn = this.#keepOrder
      ? output.index === this.#next
      : output.wrote || output.done;
    if (!turn) return;
    this.#owner = output;
    output.own();
  }

  /** Writes to stdout; after a failure, drops what comes. */
  async out(bytes: Uint8Array): Promise<void> {
    if (this.error !== undefined) return;
    try {
      await this.#writer.write(bytes);
      this.outputBytes += bytes.length;
    } catch (error) {
      this.error = error;
    }
  }

  /**
   * An output is done. Once it owns stdout and has written out what it held,
   * the next output's turn begins; before, it waits for its turn (and says
   * so again then).
   */
  finished(output: Output): void {
    if (this.#owner !== output || !output.live) {
      // Its turn has not come: once it has written out what it holds, it
      // says so again.
      output.waiting = true;
      if (this.#owner === undefined) this.claim(output);
      return;
    }
    this.#outputs.delete(output.index);
    this.#owner = undefined;
    this.#delivered++;
    if (this.#keepOrder) this.#next = output.index + 1;
    if (this.#admitted - this.#delivered < this.#limit) {
      for (const resolve of this.#waiters.splice(0)) resolve();
    }
    if (this.#admitted === this.#delivered) {
      for (const resolve of this.#drained.splice(0)) resolve();
    }
    this.#handOn();
  }

  /** Gives stdout to the next output whose turn it is. */
  #handOn(): void {
    if (this.#keepOrder) {
      const next = this.#outputs.get(this.#next);
      if (next !== undefined) this.claim(next);
      return;
    }
    // The oldest that is done, else the oldest that wrote anything.
    let pick: Output | undefined;
    for (const output of this.#outputs.values()) {
      if (output.done) {
        pick = output;
        break;
      }
      if (output.wrote) pick ??= output;
    }
    if (pick !== undefined) this.claim(pick);
  }
}
