// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo, not run on its own)
//
// The demo's default input, so that it needs no microphone and no file: a
// 16 kHz mono 16-bit signal that cycles through speech, beeps (pure tones)
// and near-silence (a -65 dBFS noise floor). The speech is a recording when
// one is given (the demo loops speech.flac through it, real speech that the
// trained model recognizes), else speech-like bursts (a gliding pitch with
// its harmonics shaped by three formants, in syllables of 150-300 ms), which
// a trained voice-activity model scores only about 0.5 to 0.65. It is
// deterministic for a seed, so tests can count on it.
//
// speech.flac, 8.1 s, 52 KiB, was made with espeak-ng and sox (8-bit, then
// back to 16-bit, so that FLAC stores 8 bits a sample):
//   espeak-ng -s 170 -w a.wav "One microphone, three consumers: a level meter, a voice model, and an encrypted recorder."
//   espeak-ng -v en+f3 -s 170 -w b.wav "Each gets the chunk size it needs."
//   sox a.wav b.wav -r 16000 -c 1 -b 8 s8.wav && sox s8.wav -b 16 s16.wav
//   flac -8 --no-padding -o speech.flac s16.wav

/** Options of {@linkcode synthFrames}. */
export interface SynthOptions {
  /** Length of the signal in seconds. */
  seconds: number;
  /** Samples per second. @default {16000} */
  rate?: number;
  /** Samples per frame yielded. @default {320} (20 ms at 16 kHz) */
  frame?: number;
  /** The random seed. @default {1} */
  seed?: number;
  /**
   * A speech recording at `rate` to play, looped, in the speech parts in
   * place of the synthetic bursts.
   */
  speech?: Int16Array;
}

type Part =
  | { kind: "speech"; seconds: number; f0: number }
  | { kind: "tone"; seconds: number; hz: number; dbfs: number }
  | { kind: "silence"; seconds: number };

/** One 15 s cycle of the signal. */
export const SCRIPT: readonly Part[] = [
  { kind: "speech", seconds: 3, f0: 120 },
  { kind: "silence", seconds: 1 },
  { kind: "tone", seconds: 1, hz: 1000, dbfs: -12 },
  { kind: "speech", seconds: 2.5, f0: 210 },
  { kind: "silence", seconds: 2 },
  { kind: "tone", seconds: 0.5, hz: 2500, dbfs: -18 },
  { kind: "speech", seconds: 4, f0: 150 },
  { kind: "silence", seconds: 1 },
];

/** A small, fast, seeded PRNG (mulberry32) returning [0, 1). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FULL_SCALE = 32767;

/** Yields the signal in frames of `frame` samples, as fast as it is pulled. */
export function* synthFrames(options: SynthOptions): Generator<Int16Array> {
  const { seconds, rate = 16000, frame = 320, seed = 1, speech } = options;
  if (speech !== undefined && speech.length === 0) {
    throw new RangeError(
      "Cannot play the speech recording as it holds no samples",
    );
  }
  let speechAt = 0;
  const rand = random(seed);
  const noise = () => (rand() + rand() + rand() - 1.5) * 2; // about unit variance
  const floor = 10 ** (-65 / 20) * FULL_SCALE;
  const total = Math.round(seconds * rate);
  let produced = 0;
  let partIndex = 0;
  let partLeft = Math.round(SCRIPT[0]!.seconds * rate);
  let phase = 0;
  // Speech state: the current syllable and the harmonic amplitudes of its formants.
  let syllableLeft = 0, syllableLength = 1, gapLeft = 0;
  let formants: [number, number, number] = [500, 1500, 2500];
  let amps = new Float64Array(0);
  let glide = 0;

  const startSyllable = (f0: number) => {
    syllableLength = syllableLeft = Math.round((0.15 + 0.15 * rand()) * rate);
    gapLeft = Math.round((0.03 + 0.09 * rand()) * rate);
    formants = [
      350 + 450 * rand(),
      900 + 1300 * rand(),
      2300 + 600 * rand(),
    ];
    glide = (rand() - 0.5) * 0.3 * f0;
    const count = Math.floor(3800 / f0);
    amps = new Float64Array(count + 1);
    let energy = 0;
    for (let k = 1; k <= count; k++) {
      const f = k * f0;
      let a = 0;
      for (const [i, fi] of formants.entries()) {
        const bandwidth = 60 + 40 * i;
        a += (1 / (i + 1)) / (1 + ((f - fi) / bandwidth) ** 2);
      }
      amps[k] = a / Math.sqrt(k); // glottal tilt
      energy += amps[k]! ** 2;
    }
    // Syllable peak RMS about -16 dBFS.
    const scale = 10 ** (-16 / 20) * FULL_SCALE * Math.SQRT2 /
      Math.sqrt(energy);
    for (let k = 1; k <= count; k++) amps[k] = amps[k]! * scale;
  };

  while (produced < total) {
    const n = Math.min(frame, total - produced);
    const out = new Int16Array(n);
    for (let i = 0; i < n; i++) {
      while (partLeft === 0) {
        partIndex = (partIndex + 1) % SCRIPT.length;
        partLeft = Math.round(SCRIPT[partIndex]!.seconds * rate);
        syllableLeft = gapLeft = 0;
      }
      const part = SCRIPT[partIndex]!;
      let value = floor * noise();
      if (part.kind === "tone") {
        phase += (2 * Math.PI * part.hz) / rate;
        value += 10 ** (part.dbfs / 20) * FULL_SCALE * Math.SQRT2 *
          Math.sin(phase);
      } else if (part.kind === "speech" && speech !== undefined) {
        value += speech[speechAt]!;
        speechAt = (speechAt + 1) % speech.length;
      } else if (part.kind === "speech") {
        if (syllableLeft === 0 && gapLeft === 0) startSyllable(part.f0);
        if (syllableLeft > 0) {
          const t = 1 - syllableLeft / syllableLength;
          const f0 = part.f0 + glide * (t - 0.5);
          phase += (2 * Math.PI * f0) / rate;
          const envelope = Math.sin(Math.PI * t) ** 2;
          let s = 0;
          for (let k = 1; k < amps.length; k++) {
            s += amps[k]! * Math.sin(k * phase);
          }
          value += envelope * (s + 0.02 * FULL_SCALE * 0.1 * noise());
          syllableLeft--;
        } else gapLeft--;
      }
      if (phase > 2 * Math.PI * 1e6) phase %= 2 * Math.PI;
      out[i] = Math.max(-32768, Math.min(32767, Math.round(value)));
      partLeft--;
    }
    produced += n;
    yield out;
  }
}

/**
 * Yields frames at real-time pace: frame `i` no earlier than `i * frameMs`
 * after the first, without drift. Stops early when `signal` aborts.
 */
export async function* paced<T>(
  frames: Iterable<T> | AsyncIterable<T>,
  frameMs: (frame: T) => number,
  signal?: AbortSignal,
): AsyncGenerator<T> {
  const start = performance.now();
  let due = 0;
  for await (const frame of frames) {
    if (signal?.aborted) return;
    const wait = start + due - performance.now();
    if (wait > 1) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        }
        signal?.addEventListener("abort", done, { once: true });
      });
      if (signal?.aborted) return;
    }
    due += frameMs(frame);
    yield frame;
  }
}
