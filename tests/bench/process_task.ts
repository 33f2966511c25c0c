// Callbacks for the process-mode benchmarks, the same work as the Python
// peer's task in /work/shared/bench/py_ocycle_pool.py. No imports: a child
// may read only this file.

/** Reads the first and last byte. */
export function trivial(chunk: Uint8Array): number {
  return chunk[0]! + chunk[chunk.length - 1]!;
}

/** Reads the first and last byte, then spins for 1 ms of CPU. */
export function spin(chunk: Uint8Array): number {
  let s = chunk[0]! + chunk[chunk.length - 1]!;
  const end = performance.now() + 1;
  while (performance.now() < end) s++;
  return s;
}
