// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo's model, not run on its own)
//
// ONNX Runtime's web bundle resolves its own URL against `location.origin`
// wherever a `location` exists. In a Deno Worker one does, and for a file:
// module its origin is "null", which `new URL()` refuses as a base: the
// bundle fails as it loads. This module, imported before the bundle, shadows
// the Worker's `location` with `undefined` until `restoreLocation()` (the
// main thread has no `location`: nothing to do there).

const global = globalThis as { location?: { origin: string } };
const own = Object.getOwnPropertyDescriptor(globalThis, "location");
const hidden = global.location?.origin === "null";
if (hidden) {
  Object.defineProperty(globalThis, "location", {
    value: undefined,
    configurable: true,
  });
}

/** Puts the Worker's `location` back, once ONNX Runtime is loaded. */
export function restoreLocation(): void {
  if (!hidden) return;
  if (own === undefined) delete global.location;
  else Object.defineProperty(globalThis, "location", own);
}
