// Copyright the @ocycle/core authors. MIT license.
// The `--help` texts of the `ocycle` command line's two commands: `ocycle`,
// which cuts stdin into chunks, and `ocycle worker`, which runs a fleet's
// chunks from Redis.

/** The usage text of `ocycle --help`. */
export const HELP = `ocycle: cut standard input into chunks and hand each one on

Usage:
  ocycle [options] --exec "<command> [args]"   < input
  ocycle [options] --module ./handler.ts       < input
  ocycle [options] --redis <url> --stream <name> --module ./handler.ts < input
  ocycle worker --redis <url> --stream <name> --module ./handler.ts [options]

Each chunk of standard input is either piped to its own run of <command>
(--exec; the chunk is the command's stdin, its stdout is the output), or
passed to the default export of a handler module (--module), which runs in a
pool of Deno subprocesses (--mode process) or Web Workers (--mode thread), or,
with --redis, on a fleet of "ocycle worker" processes on any machines that
reach the Redis server ("ocycle worker --help" tells how to run them).
Outputs never interleave: each goes to stdout whole once its chunk has
succeeded (held until then in memory up to 1 MiB, then in a file of $TMPDIR),
as the chunks finish, or in input order with --keep-order. A failed chunk
writes nothing to stdout: its line on stderr says so, and the summary counts
the bytes its command wrote (--keep-failed writes them all the same).

Chunking:
  -s, --size <size>      Chunk size (default 1MiB). Bytes: 65536, 64K, 64KiB,
                         64kB (=64000), 1M, 1MiB, 1MB, 1G. Or a duration of
                         audio (250ms, 2s, 1min) with --rate and --format.
      --clip             Cut exact chunks of --size, carrying the rest into the
                         next chunk. Without it a chunk is everything buffered
                         once --size is reached (at least --size bytes).
      --hop <size>       With --clip: start a chunk every <size> bytes, so that
                         chunks overlap (hop < size) or skip (hop > size).
      --rate <hz>        Frames per second, for sizes given as durations.
      --format <fmt>     Sample format: u8, s8, s16le (default), s16be, s24le,
                         s32le, f32le, f64le, ...
      --channels <n>     Interleaved channels per frame (default 1).
  Chunks are cut at byte counts, never at line ends: a text record can be split
  between two chunks.

Running:
      --exec "<cmd>"     Run <cmd> once per chunk, the chunk on its stdin. The
                         string is split into words like a shell does (quotes
                         and backslashes work) but no shell runs it: for pipes,
                         redirections or globs, say so: --exec "sh -c 'tr a b | wc -c'".
                         A command that exits non-zero fails its chunk.
      --module <path>    A module whose default export (or --export) is called
                         as handler(chunk: Uint8Array, t0: number, info). Its
                         result is written to stdout: bytes as they are, a
                         string as UTF-8, null/undefined as nothing, anything
                         else as one line of JSON.
      --export <name>    The handler's export name (default "default").
      --mode <mode>      For --module: process (default), thread or serial.
      --allow <perm>     For --mode process: a permission the handler's
                         subprocess gets, as read, write=/tmp/out, net=host,
                         env=HOME, run=wc... (repeatable). By default it may only
                         read its own file: a handler that imports modules
                         beside it needs --allow read=<their folder>.
  -j, --pool <n>         Commands, Workers or subprocesses running at once
                         (default: the number of CPUs, ${navigator.hardwareConcurrency}).
      --timeout <time>   Fail a chunk whose command or handler takes longer
                         than <time>: 30 (seconds), 500ms, 2s, 1.5min; its
                         command is killed, with whatever it started. With
                         --redis: from the chunk's submission to its result.
      --retries <n>      For --module and --redis: run a chunk again, up to
                         <n> times, when its subprocess or Worker crashed or
                         it timed out (never when the handler threw).
      --retry-delay <t>  Before the first retry (default 100ms); doubled for
                         each next one, up to 10s.
  A duration without a unit is seconds, as in GNU parallel and timeout(1):
  --timeout 5 is 5 s. Units: ms, s (or sec), min.

Several machines (Redis Streams):
      --redis <url>      Send the chunks through this Redis server to the
                         "ocycle worker" processes reading --stream, and write
                         their results as with a local --module:
                         redis://[user:password@]host[:port][/db], rediss://
                         for TLS. Needs --stream and --module (the workers
                         run their own copy of it; the producer runs nothing).
                         A URL with a password is better given as one of:
      --redis-env <name> The URL is in this environment variable.
      --redis-file <path> The URL is the first line of this file.
                         With none of the three, --stream takes the URL from
                         the REDIS_URL environment variable.
      --stream <name>    The Redis key of the chunk stream.
      --group <name>     The consumer group of the workers (default ocycle).
      --in-flight <n>    Chunks in flight across the fleet at most (default
                         64): more wait, and stdin is read no further.

Output:
  -k, --keep-order       Write outputs in input order (default: as they come).
      --keep-failed      For --exec: write a failed command's output too, in
                         its place, and stream each output to stdout as it
                         comes rather than once its command has exited 0.
  -q, --quiet            No progress or summary on stderr (errors still show).
  -h, --help             This text.

A failed chunk is one line on stderr (then the last lines of its stderr):
  ocycle: chunk 3 (bytes 3145728..4194304, t0 12:30:05.250) failed: <why>
where t0 is the local time its first byte was read.

Ctrl-C or SIGTERM stops the reading: the chunks read so far still run and are
written, then the summary; a second one aborts them. Commands and handlers do
not get the terminal's Ctrl-C, and end if ocycle is killed.

Exit status: 0 if every chunk succeeded, 1 if any chunk failed, 2 for bad
options, 126/127 if the --exec command cannot be run or is not found, 130/143
if SIGINT/SIGTERM stopped the input.

Examples:
  # bytes per 1 MiB chunk, 2 at a time
  ocycle --size 1MiB -j 2 --exec "wc -c" < big.bin
  # compress 64 MiB pieces in parallel, output in order (a valid .gz stream)
  ocycle -s 64MiB -k --exec "gzip -c" < big.tar > big.tar.gz
  # 2 s of 16 kHz mono 16-bit audio per chunk, half-overlapping, to a handler
  arecord -f S16_LE -r 16000 -c 1 | ocycle --size 2s --hop 1s --clip \\
    --rate 16000 --format s16le --module ./analyze.ts --mode thread
  # the same chunks, in order, through Redis to workers on other machines
  # (the URL and its password in REDIS_URL, never on a command line)
  export REDIS_URL="$(cat /run/secrets/redis_url)"
  ocycle worker --stream audio --module ./analyze.ts
  arecord ... | ocycle -s 2s --rate 16000 -k --stream audio \\
    --module ./analyze.ts
`;

/** The usage text of `ocycle worker --help`. */
export const WORKER_HELP =
  `ocycle worker: run the chunks of a Redis stream, for "ocycle --redis" producers

Usage:
  ocycle worker --redis <url> --stream <name> --module ./handler.ts [options]
  ocycle worker --redis-env <name> | --redis-file <path> --stream <name> ...
  REDIS_URL=<url> ocycle worker --stream <name> --module ./handler.ts ...

Takes chunks from the Redis stream <name>, as one consumer of its group, runs
each in a local pool with the default export of the handler module (as
"ocycle --module" would), and sends each result back to the producer that
sent the chunk. Start as many workers as you like, on any machines that reach
the Redis server: each takes only what its pool has room for, and the chunks
of a worker that dies or stalls are taken over by the others within seconds.
A worker runs only the module it was started with: a chunk never names code.

Options:
      --redis <url>      The Redis server: redis://[user:password@]host[:port][/db],
                         rediss:// for TLS. Without it, the URL is read from
                         the REDIS_URL environment variable, or from:
      --redis-env <name> this environment variable, or
      --redis-file <path> the first line of this file; these keep a password
                         out of ps and shell history (--redis does not).
      --stream <name>    The Redis key of the chunk stream (the producer's --stream).
      --module <path>    The handler module: handler(chunk: Uint8Array, t0, info).
      --export <name>    The handler's export name (default "default").
      --group <name>     The consumer group (default ocycle; the producer's --group).
      --name <name>      This worker's consumer name (default host-pid-random).
      --mode <mode>      The local pool: process (default), thread or serial.
  -j, --pool <n>         Subprocesses or Workers in the local pool (default: the
                         number of CPUs, ${navigator.hardwareConcurrency}).
      --allow <perm>     For --mode process: a permission the handler's
                         subprocess gets, as read, write=/tmp/out, net=host,
                         env=HOME... (repeatable).
      --timeout <time>   Fail a chunk whose handler runs longer: 30 (seconds),
                         500ms, 2s, 1.5min; the producer's --retries decide
                         whether it runs again.
  -q, --quiet            No start line or summary on stderr (errors still show).
  -h, --help             This text.

Ctrl-C or SIGTERM: the worker takes no more chunks, finishes the ones running,
hands the others back to the group for other workers, then prints a summary;
a second one hands back everything at once (and stops within 5 s even if
Redis cannot be reached: what it held then goes to the others once stale).
Exit status: 130 after SIGINT, 143 after SIGTERM, 1 if the worker stopped on
an error, 2 for bad options.

Example:
  REDIS_URL="$(cat /run/secrets/redis_url)" ocycle worker --stream audio \\
    --module ./analyze.ts -j 4 --allow read=./models --timeout 30s
`;
