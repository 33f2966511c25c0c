// Copyright the @ocycle/core authors. MIT license.
// Serial-mode benchmarks on the shared workloads (shared/bench/workloads.json):
// one group per workload, the memcpy limit as the baseline, and BufferEmit
// with borrowed and with owned chunks, its callback reading each chunk.
// Each BufferEmit is long-lived, as when a stream feeds one emitter: every
// iteration writes the whole workload to it. `deno task bench` runs it; the
// one-process comparison with ratios and the Python original is
// compare_serial.ts.

import { BufferEmit } from "../../mod.ts";
import {
  limitMemcpy,
  loadSource,
  readChunk,
  takeTally,
  writeAll,
} from "./compare_serial.ts";

const source = await loadSource();

for (const name of ["audio", "odd", "bulk"]) {
  const wl = source.workloads[name];
  if (wl === undefined) throw new Error(`no workload named ${name}`);
  const fs = source.frames(wl);
  const bulk = wl.totalBytes > 1e8;
  // Iterations: enough for a stable figure, few enough for 512 MB runs.
  const n = bulk ? 10 : 40, warmup = bulk ? 3 : 10;
  const group = `serial ${name}`;

  Deno.bench({
    name: `${name}: memcpy limit`,
    group,
    baseline: true,
    n,
    warmup,
    fn() {
      limitMemcpy(fs, wl.size);
    },
  });

  for (const borrow of [true, false]) {
    const buff = new BufferEmit(readChunk, wl.size, { clip: wl.clip, borrow });
    Deno.bench({
      name: `${name}: BufferEmit ${borrow ? "borrow" : "owned"}`,
      group,
      n,
      warmup,
      fn() {
        const tally = writeAll(buff, fs);
        if (tally.chunks === 0) throw new Error("BufferEmit emitted nothing");
      },
    });
  }
}

// The callback's tally is shared; start each process with it empty.
takeTally();
