// Copyright the @ocycle/core authors. MIT license.
/**
 * Process mode: each chunk runs in one of a pool of Deno child processes,
 * which import the callback module once and are reused. Here 2 children count
 * the words of 4 KiB chunks of text; the results come back to `onDone` on the
 * main thread and are merged there. What a child prints goes to stderr,
 * prefixed `[ocycle child N]`.
 *
 * ```sh
 * deno run -A examples/process_mode.ts
 * # or with the one permission the parent needs: running this very deno
 * deno run --allow-run="$(deno eval 'console.log(Deno.execPath())')" examples/process_mode.ts
 * ```
 *
 * @module
 */

import { BufferEmit } from "@ocycle/core";

const totals = new Map<string, number>();
const children = new Set<number>();
const emitter = new BufferEmit<{ pid: number; words: Map<string, number> }>(
  new URL("./process_callback.ts", import.meta.url),
  4096,
  {
    mode: "process",
    pool: 2,
    clip: true,
    onDone: ({ pid, words }) => {
      children.add(pid);
      for (const [word, n] of words) {
        totals.set(word, (totals.get(word) ?? 0) + n);
      }
    },
  },
);

const text = "the quick brown fox jumps over the lazy dog and the cat ";
for (let i = 0; i < 2000; i++) {
  if (!emitter.write(text)) await emitter.ready;
}
await emitter.close();

const top = [...totals].sort((a, b) => b[1] - a[1]).slice(0, 3);
const { emitted, done, failed } = emitter.stats;
console.log(
  `${emitted} chunks, ${done} done, ${failed} failed; ${children.size} of 2 children took chunks`,
);
console.log(`most frequent: ${top.map(([w, n]) => `${w} ${n}`).join(", ")}`);
