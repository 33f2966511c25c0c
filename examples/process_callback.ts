// Copyright the @ocycle/core authors. MIT license.
/**
 * The callback of examples/process_mode.ts: it runs in a child process, with
 * no permission but reading this file. It counts the words of a chunk of
 * text and returns a Map, which travels back through the structured-clone
 * codec as a Map.
 *
 * @module
 */

import type { ChunkInfo } from "@ocycle/core";

/** Counts the words of one chunk; prints to the child's stderr, never stdout. */
export default function countWords(
  chunk: Uint8Array,
  _t0: number,
  info: ChunkInfo,
): { pid: number; words: Map<string, number> } {
  const words = new Map<string, number>();
  for (const word of new TextDecoder().decode(chunk).split(/\W+/)) {
    if (word !== "") words.set(word, (words.get(word) ?? 0) + 1);
  }
  console.log(`chunk ${info.index}: ${words.size} distinct words`);
  return { pid: Deno.pid, words };
}
