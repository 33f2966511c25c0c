// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (the demo's model callback, loaded by the emitter)
//
// The "model" of the audio demo, a callback module: on each 2 s chunk of
// 16 kHz mono Int16 samples it runs the FFT-based voice-activity and pitch
// estimate of dsp.ts and returns a small result object. The demo runs it in
// thread mode, in a pool of Web Workers, with a 50% duty cycle (sampler).

import { analyzeVoice, type VoiceAnalysis } from "./dsp.ts";

/** What the model returns for each chunk. */
export interface ModelResult extends VoiceAnalysis {
  /** Whether more than a fifth of the chunk is voiced speech. */
  speech: boolean;
  /** Milliseconds the analysis took. */
  ms: number;
}

/** Analyses one chunk. */
export default function model(chunk: Int16Array): ModelResult {
  const started = performance.now();
  const analysis = analyzeVoice(chunk, { rate: 16000 });
  return {
    ...analysis,
    speech: analysis.speechRatio > 0.2,
    ms: performance.now() - started,
  };
}
