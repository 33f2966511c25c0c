// Copyright the @ocycle/core authors. MIT license.
/**
 * {@linkcode closeOnSignals}: flush and close emitters when the program is
 * asked to stop (Ctrl-C, `kill`, `docker stop`, systemd).
 *
 * @module
 */

/** Anything {@linkcode closeOnSignals} can close: every emitter, and a `fanout`. */
export interface Closable {
  /** Flushes, waits for every callback, and closes. */
  close(): Promise<void>;
  /** Stops now. */
  abort(reason?: unknown): Promise<void>;
}

/** What a signal does to the targets: the first one closes them, a later one aborts them. */
export type SignalAction = "close" | "abort";

/** Options for {@linkcode closeOnSignals}. */
export interface CloseOnSignalsOptions {
  /**
   * The signals to handle: `["SIGINT", "SIGBREAK"]` by default on Windows.
   *
   * @default {["SIGINT", "SIGTERM"]}
   */
  signals?: readonly Deno.Signal[];
  /**
   * Milliseconds after a signal during which another one counts as the same
   * one: under `deno task`, one Ctrl-C reaches the program twice, from the
   * terminal and forwarded by the task runner.
   *
   * @default {1000}
   */
  repeatWindow?: number;
  /**
   * Called on each signal that counts, with what it does, before the
   * targets are closed or aborted: say so, stop the input.
   */
  onSignal?: (signal: Deno.Signal, action: SignalAction) => void;
}

/** What {@linkcode closeOnSignals} returns; disposing of it removes its listeners. */
export interface SignalCloser extends Disposable {
  /**
   * Aborted on the first signal, before the targets close. A write after
   * `close()` throws, so stop writing once it is aborted; hand it to
   * anything else that should stop then, such as a server or a fetch.
   */
  readonly signal: AbortSignal;
}

const DEFAULT_SIGNALS: readonly Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM"];

/**
 * Closes the targets, flushing them, on the first SIGINT or SIGTERM, and
 * aborts them on a second one. A signal within `repeatWindow` of the last one
 * is the same press (`deno task` forwards the terminal's Ctrl-C, so the
 * program gets it twice). After the abort, and that window, the listeners are
 * gone: a third signal ends the process as it would have without them. The
 * library installs no handler by itself; this is the one-line way to have
 * one.
 *
 * Errors of `close()` and `abort()` are not reported here: an emitter's own
 * `close()` returns the same promise, so await that.
 *
 * @param targets The emitters (or anything with `close()` and `abort()`).
 * @param options The signals, the repeat window, and a hook.
 * @returns A handle whose `signal` is aborted on the first signal; dispose of
 * it (`using`) to remove the listeners.
 * @throws {TypeError} If a target has no `close()` and `abort()`.
 * @throws {RangeError} If `repeatWindow` is not a non-negative number.
 *
 * @example Flushing on SIGTERM
 * ```ts
 * import { BufferEmit, closeOnSignals } from "@ocycle/core";
 * import { assert, assertEquals } from "@std/assert";
 *
 * let received = 0;
 * const emitter = new BufferEmit((chunk) => {
 *   received += chunk.length;
 * }, 1024);
 * using shutdown = closeOnSignals(emitter);
 * for (let i = 0; i < 1000 && !shutdown.signal.aborted; i++) {
 *   emitter.write(new Uint8Array(100));
 *   // As `kill`, systemd or `docker stop` would
 *   if (i === 20) Deno.kill(Deno.pid, "SIGTERM");
 *   await new Promise((resolve) => setTimeout(resolve, 1));
 * }
 * await emitter.close(); // the close the signal started: the tail is flushed
 * assert(emitter.stats.written < 100_000);
 * assertEquals(received, emitter.stats.written);
 * ```
 */
export function closeOnSignals(
  targets: Closable | readonly Closable[],
  options: CloseOnSignalsOptions = {},
): SignalCloser {
  const list: readonly Closable[] = Array.isArray(targets)
    ? [...targets]
    : [targets as Closable];
  list.forEach((target, i) => {
    if (
      target === null || typeof target !== "object" ||
      typeof target.close !== "function" || typeof target.abort !== "function"
    ) {
      throw new TypeError(
        `Cannot close on signals as target ${i} has no close() and abort(): received ${
          target === null ? "null" : typeof target
        }`,
      );
    }
  });
  const { signals = DEFAULT_SIGNALS, repeatWindow = 1000, onSignal } = options;
  if (!(repeatWindow >= 0) || !Number.isFinite(repeatWindow)) {
    throw new RangeError(
      `Cannot close on signals as 'repeatWindow' must be a non-negative number: received ${repeatWindow}`,
    );
  }
  const controller = new AbortController();
  let last = -Infinity;
  let aborted = false;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const handle = (signal: Deno.Signal) => {
    const now = performance.now();
    if (now - last < repeatWindow) return;
    last = now;
    const action: SignalAction = controller.signal.aborted ? "abort" : "close";
    if (action === "close") {
      controller.abort(
        new DOMException(`Stopped by ${signal}`, "AbortError"),
      );
    } else if (aborted) return;
    try {
      onSignal?.(signal, action);
    } finally {
      if (action === "close") {
        for (const target of list) quietly(() => target.close());
      } else {
        aborted = true;
        const reason = new DOMException(
          `Aborted by a second ${signal}`,
          "AbortError",
        );
        for (const target of list) quietly(() => target.abort(reason));
        // The next one is no repeat of this: it gets the default action.
        timer = setTimeout(dispose, repeatWindow);
        Deno.unrefTimer(timer);
      }
    }
  };
  const listeners = signals.map((signal) => {
    const listener = () => handle(signal);
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  let disposed = false;
  function dispose(): void {
    if (disposed) return;
    disposed = true;
    clearTimeout(timer);
    for (const [signal, listener] of listeners) {
      Deno.removeSignalListener(signal, listener);
    }
  }
  return { signal: controller.signal, [Symbol.dispose]: dispose };
}

/** Runs `close()` or `abort()`; its errors are the target's own to report. */
function quietly(run: () => Promise<void>): void {
  try {
    Promise.resolve(run()).catch(() => {});
  } catch {
    // As above.
  }
}
