// Copyright the @ocycle/core authors. MIT license.
// Callbacks for the thread-mode benchmarks: the same work as the peers' task
// in shared/bench (touch the first and last byte, optionally burn 1 ms of
// CPU). Each returns the time its call started, in milliseconds since the
// epoch with sub-millisecond precision, so that the benchmark can measure the
// latency from the write() that completed a chunk to the start of its callback.

/** The current time in milliseconds since the epoch, sub-millisecond. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

/** Reads the first and last byte. */
export function trivial(chunk: Uint8Array): number {
  const start = now();
  if (chunk[0]! + chunk[chunk.length - 1]! < 0) throw new Error("unreachable");
  return start;
}

/** Reads the first and last byte, then spins for 1 ms of CPU. */
export function spin(chunk: Uint8Array): number {
  const start = now();
  let s = chunk[0]! + chunk[chunk.length - 1]!;
  const end = performance.now() + 1;
  while (performance.now() < end) s++;
  if (s < 0) throw new Error("unreachable");
  return start;
}

/** The time now: to check that the clocks of two threads agree. */
export function clock(): number {
  return now();
}
