// Copyright the @ocycle/core authors. MIT license.
// The Worker of the hand-written pool in thread_bench.ts, as a user would
// write it (the same as shared/bench/deno_worker_task.ts): touch the chunk,
// optionally burn CPU, hand the buffer back.

const scope = self as unknown as Worker;

scope.onmessage = (
  event: MessageEvent<{ buf: ArrayBuffer; spinMs: number }>,
) => {
  const { buf, spinMs } = event.data;
  const v = new Uint8Array(buf);
  let s = v[0]! + v[v.length - 1]!;
  if (spinMs) {
    const end = performance.now() + spinMs;
    while (performance.now() < end) s++;
  }
  scope.postMessage({ buf, s }, [buf]);
};
