// Copyright the @ocycle/core authors. MIT license.
/**
 * The ceiling of any stdio protocol between Deno processes on this machine: a
 * pool of 2 bare echo children, 4 chunks of 64 KiB in flight each, the parent
 * counting 8-byte answers. Process mode can only be slower than this; compare
 * its 64 KiB figure (compare_process.ts) against this one, run beside it.
 *
 * ```sh
 * deno run -A tests/bench/echo_limit.ts [COUNT]
 * ```
 *
 * @module
 */
const CHUNK = 65536, INFLIGHT = 4;
const count = Number(Deno.args[0] ?? 20000);
const chunk = new Uint8Array(CHUNK).fill(1);
const entry = new URL("./echo_limit_child.ts", import.meta.url).pathname;
const kids = [0, 1].map(() =>
  new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", entry],
    stdin: "piped",
    stdout: "piped",
  }).spawn()
);
let sent = 0, done = 0;
const t = performance.now();
await Promise.all(kids.map(async (kid) => {
  const writer = kid.stdin.getWriter();
  const reader = kid.stdout.getReader();
  let inflight = 0, bytes = 0;
  const pump = async () => {
    while (inflight < INFLIGHT && sent < count) {
      sent++;
      inflight++;
      await writer.write(chunk);
    }
  };
  const pumping = pump();
  while (done < count) {
    const { value, done: end } = await reader.read();
    if (end) break;
    bytes += value.length;
    while (bytes >= 8) {
      bytes -= 8;
      inflight--;
      done++;
    }
    if (sent < count) await pump();
    else if (inflight === 0) break;
  }
  await pumping;
  await writer.close();
  reader.releaseLock();
  await kid.stdout.cancel();
  await kid.status;
}));
const ms = performance.now() - t;
console.log(JSON.stringify({
  impl: "bare-echo-limit",
  chunk: CHUNK,
  children: 2,
  inflightPerChild: INFLIGHT,
  chunksPerSec: Math.round(done / ms * 1000),
}));
