// Copyright the @ocycle/core authors. MIT license.
import { assert, assertEquals } from "@std/assert";

interface Consumer {
  mode: string;
  done: number;
  failed: number;
  twice: number;
  kinds: Record<string, number>;
  wronglyFailed: number;
  replaced: number;
  maxWorkers: number;
  workersAfterClose: number;
  buffers: {
    created: number;
    free: number;
    out: number;
    given: number;
    discarded: number;
    lost: number;
  };
}

Deno.test("a million frames with injected faults under a 64 MB heap: nothing lost, memory plateaus (RELIABILITY 21)", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--max-old-space-size=64",
      `--import-map=${
        new URL("../.ci/import_map.json", import.meta.url).pathname
      }`,
      new URL("./fixtures/soak.ts", import.meta.url).pathname,
      "1000000",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(stderr);
  assertEquals(code, 0, err.slice(-2000));
  const report = JSON.parse(new TextDecoder().decode(stdout)) as {
    chunks: number;
    bad: number;
    rssMiB: number[];
    heapMiB: number[];
    consumers: Consumer[];
  };
  const { chunks, bad } = report;
  assertEquals(chunks, 10_000);
  // 10 crashes and 2 hangs among the 115 bad chunks: each one replaces a
  // Worker or a child.
  const replacing = 12;
  // Chunks in flight at once: a pool of 2 at each mode's default concurrency.
  const slots: Record<string, number> = { serial: 1, thread: 16, process: 4 };
  for (const c of report.consumers) {
    const b = c.buffers;
    assertEquals(c.done + c.failed, chunks, `${c.mode}: a chunk was lost`);
    assertEquals(c.twice, 0, `${c.mode}: a chunk settled twice`);
    assertEquals(
      c.failed - c.wronglyFailed,
      bad,
      `${c.mode}: a bad chunk passed`,
    );
    assertEquals(c.workersAfterClose, 0, `${c.mode}: workers left running`);
    assert(c.maxWorkers <= 2, `${c.mode}: ${c.maxWorkers} workers at once`);
    assertEquals(b.out, 0, `${c.mode}: buffers still out`);
    assertEquals(b.created, b.free + b.out + b.given + b.discarded + b.lost);
    // Slots, waiting chunks (8), the filling one and slack, plus one
    // replacement for each buffer lost with a Worker.
    assert(
      b.created <= slots[c.mode]! + 8 + 3 + b.lost,
      `${c.mode}: ${JSON.stringify(b)}`,
    );
  }
  const [serial, thread, processMode] = report.consumers;
  assertEquals(serial!.wronglyFailed, 0);
  assertEquals(processMode!.wronglyFailed, 0);
  assertEquals(processMode!.replaced, replacing);
  // A dying Worker takes the chunks already sent to it (up to 7 more).
  assert(thread!.wronglyFailed <= replacing * 7, JSON.stringify(thread));
  assert(thread!.replaced >= 1 && thread!.replaced <= replacing);
  // Memory plateaus: from a fifth of the way in to the end, the process grows
  // by less than a few buffers' worth, and the JS heap stays small.
  const [, , atFifth] = report.rssMiB;
  const last = report.rssMiB.at(-1)!;
  assert(last - atFifth! < 48, `rss grew ${atFifth} -> ${last} MiB`);
  assert(Math.max(...report.heapMiB) < 48, `heap ${report.heapMiB}`);
});
