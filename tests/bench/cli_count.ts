// Copyright the @ocycle/core authors. MIT license.
// The handler of cli_bench.sh's --module runs: the chunk's length as a line,
// what `wc -c` prints, so both sides are checked the same way.

/** Returns the chunk's byte count and a newline. */
export default function count(chunk: Uint8Array): string {
  return `${chunk.length}\n`;
}
