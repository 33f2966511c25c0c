// Copyright the @ocycle/core authors. MIT license.
/**
 * The `ocycle` command line: cut standard input into chunks and hand each one
 * on, either to a command (the chunk on its stdin, as GNU parallel `--pipe`
 * does), to a handler module run in a pool of Deno subprocesses or Web
 * Workers, or through Redis Streams to `ocycle worker`s on other machines.
 *
 * ```sh
 * # bytes per 1 MiB chunk, two commands at a time
 * deno run -A jsr:@ocycle/core/cli --size 1MiB -j 2 --exec "wc -c" < big.bin
 * # 2 s of 16 kHz mono 16-bit audio per chunk, to a handler in a Worker pool
 * arecord -f S16_LE -r 16000 -c 1 | deno run -A jsr:@ocycle/core/cli \
 *   --size 2s --rate 16000 --format s16le --module ./analyze.ts --mode thread
 * # the same through Redis: workers anywhere, results in order here
 * deno run -A jsr:@ocycle/core/cli worker --redis redis://broker:6379 \
 *   --stream audio --module ./analyze.ts
 * arecord -f S16_LE -r 16000 -c 1 | deno run -A jsr:@ocycle/core/cli \
 *   --size 2s --rate 16000 -k --redis redis://broker:6379 --stream audio \
 *   --module ./analyze.ts
 * ```
 *
 * Run it with `--help` (and `ocycle worker --help`) for every option. The
 * exit code is 0 only if every chunk succeeded. Ctrl-C or SIGTERM stops the
 * reading; the chunks read so far still run, and a second one aborts them. A
 * worker stops on Ctrl-C or SIGTERM after finishing its running chunks and
 * handing the others back.
 *
 * @example Running the command line from code
 * ```ts ignore
 * import { main } from "@ocycle/core/cli";
 *
 * Deno.exit(await main(["--size", "64KiB", "--exec", "wc -c"]));
 * ```
 *
 * @module
 */

import { runCli } from "./src/cli/_main.ts";

/**
 * Runs the `ocycle` command line with the given arguments: reads
 * `Deno.stdin`, writes outputs to `Deno.stdout` and progress and errors to
 * `Deno.stderr`.
 *
 * @param args The arguments, as in `Deno.args`; `["worker", ...]` runs a
 * worker of a Redis fleet until SIGINT or SIGTERM.
 * @returns The exit code: 0 if every chunk succeeded, 1 if any failed, 2 for
 * bad options, 126 or 127 if the `--exec` command cannot be run or is not
 * found, 130 or 143 if SIGINT or SIGTERM stopped the input (the chunks read
 * before it still ran) or the worker.
 */
export function main(args: readonly string[]): Promise<number> {
  return runCli(args);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
