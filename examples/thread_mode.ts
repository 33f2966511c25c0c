// Copyright the @ocycle/core authors. MIT license.
/**
 * Thread mode: the callback runs in a pool of Web Workers. Two seconds of a
 * synthetic 16 kHz tone that swells and fades are written in 10 ms frames;
 * every 100 ms a 250 ms window (they overlap) is measured in one of two
 * Workers by `level_meter.ts`, a module each Worker imports once. The
 * samples are transferred to the Worker, not copied, and come back to be
 * reused (`borrow: true`); the levels come back to `onDone` here.
 *
 * ```sh
 * deno run -A --import-map=.ci/import_map.json examples/thread_mode.ts
 * ```
 *
 * @module
 */

import { SampleEmit } from "@ocycle/core";
import type { Level } from "./level_meter.ts";

const RATE = 16_000;
const levels: Level[] = [];

await using meter = new SampleEmit<Int16Array, Level>(
  new URL("./level_meter.ts", import.meta.url),
  RATE / 4, // a 250 ms window...
  {
    type: Int16Array,
    clip: true,
    hop: RATE / 10, // ...every 100 ms
    mode: "thread",
    pool: 2,
    borrow: true,
    onDone: (level) => levels.push(level),
    onError: (error) => console.error(error.message),
  },
);

// 2 s of a 440 Hz tone whose loudness swells and fades, in 10 ms frames.
const frame = RATE / 100;
for (let start = 0; start < 2 * RATE; start += frame) {
  const samples = new Int16Array(frame);
  for (let i = 0; i < frame; i++) {
    const t = (start + i) / RATE;
    const loudness = Math.sin(Math.PI * t / 2) ** 2;
    samples[i] = Math.round(30000 * loudness * Math.sin(2 * Math.PI * 440 * t));
  }
  if (!meter.write(samples, start / RATE * 1000)) await meter.ready;
}
await meter.close({ flush: false });

levels.sort((a, b) => a.index - b.index);
for (const { index, rmsDbfs, worker } of levels) {
  const bar = "#".repeat(Math.max(0, Math.round((rmsDbfs + 60) / 2)));
  console.log(
    `${(index * 100).toString().padStart(5)} ms  ${
      rmsDbfs.toFixed(1).padStart(6)
    } dBFS  worker ${worker}  ${bar}`,
  );
}
const { emitted, buffers, workers, replaced } = meter.stats;
console.log(
  `${emitted} windows measured by ${
    new Set(levels.map((l) => l.worker)).size
  } Workers; sample buffers: ${buffers.created} made, ${buffers.free} back in the pool, ${buffers.lost} lost; Workers alive after close: ${workers}, replaced: ${replaced}`,
);
