// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo's model, not run on its own)
//
// The files of the demo's model, from npm, pinned: Silero VAD v5 (a trained
// voice-activity network, MIT licence, as shipped in @ricky0123/vad-web) and
// ONNX Runtime's WebAssembly build (onnxruntime-web). They are imported as
// bytes (`"unstable": ["raw-imports"]` in deno.json), so that loading them
// needs no permission. The demo imports this module itself, once it has said
// that a first run downloads them (about 41 MiB of npm tarballs with their
// dependencies), and its Workers then find them in Deno's cache. These npm
// dependencies belong to the example only: the published module has none.

// First: it hides a Worker's `location`, which the bundle trips over.
export { restoreLocation } from "./vad_location.ts";
export * as ort from "npm:onnxruntime-web@1.31.1/wasm";
export {
  default as ortWasm,
} from "npm:onnxruntime-web@1.31.1/ort-wasm-simd-threaded.wasm" with {
  type: "bytes",
};
export {
  default as sileroVad,
} from "npm:@ricky0123/vad-web@0.0.31/dist/silero_vad_v5.onnx" with {
  type: "bytes",
};

/** What the demo says it downloads on the first run. */
export const PACKAGES =
  "onnxruntime-web@1.31.1 and @ricky0123/vad-web@0.0.31 (Silero VAD v5)";
