// Copyright the @ocycle/core authors. MIT license.
// The `ocycle` command line's stdout. Each chunk's output is held until its
// chunk has succeeded (in memory up to SPOOL_MEMORY bytes, then in a
// temporary file, so that memory stays bounded however much a command
// writes), then written whole; a failed chunk's output is discarded and
// counted. With `stream` (--keep-failed) an output is written as it comes
// while its chunk owns stdout, and a failed chunk's output is written too.
// With --keep-order the chunk that owns stdout is the next in input order;
// without it, the first to be done (or, streaming, to write) while stdout is
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
  /** Set when its chunk failed: unless the sink streams, its output is dropped. */
  failed = false;
  /** Bytes it was given. */
  bytes = 0;
  /** Set once the sink is through with it: what comes after is dropped. */
  #closed = false;

  constructor(index: number, sink: Sink) {
    this.index = index;
    this.#sink = sink;
  }

  /** Whether it owns stdout and has written out all it held. */
  get live(): boolean {
    return this.#live;
  }

  /** Takes more of the output; resolves once it is written, held or dropped. */
  write(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return this.#chain;
    // What a failed command writes on its way out (killed after --timeout),
    // or any output once it is through: counted, never written.
    if (this.#closed || (this.failed && !this.#sink.stream)) {
      this.#sink.discarded += bytes.length;
      return this.#chain;
    }
    this.bytes += bytes.length;
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

  /**
   * Its turn: what it holds goes out first (or, failed, is dropped), then it
   * writes as it comes.
   */
  own(): Promise<void> {
    return this.#chain = this.#chain.then(async () => {
      if (this.failed && !this.#sink.stream) {
        this.#sink.discarded += this.bytes;
        await this.#drop();
      }
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

  /** The sink is through with it. */
  close(): void {
    this.#closed = true;
  }

  /** Drops what it holds; called in its turn, on its chain. */
  async #drop(): Promise<void> {
    this.#held = [];
    this.#heldBytes = 0;
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
  /** Whether outputs are written as they come, failed ones too (--keep-failed). */
  readonly stream: boolean;
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
  /** Bytes of failed chunks' output that were not written. */
  discarded = 0;

  /**
   * @param keepOrder Outputs go in input order.
   * @param limit Chunks handed on but not yet written out, at most.
   * @param writer Standard output.
   * @param stream Write an output as it comes, and a failed chunk's too.
   */
  constructor(
    keepOrder: boolean,
    limit: number,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    stream = false,
  ) {
    this.stream = stream;
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

  /**
   * Chunk `index` failed: its output is dropped (unless the sink streams) and
   * it ends. Returns the bytes of output it had so far.
   */
  fail(index: number): number {
    const output = this.output(index);
    output.failed = true;
    output.finish();
    return output.bytes;
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
    // Held, an output goes out once its chunk is done, never before.
    const ready = output.done || (this.stream && output.wrote);
    const turn = this.#keepOrder
      ? output.index === this.#next && (this.stream || output.done)
      : ready;
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
    output.close();
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
