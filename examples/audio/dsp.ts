// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo, not run on its own)
//
// The signal processing of the audio demo, in plain TypeScript so that it runs
// unchanged in the main thread, a Worker or a Deno subprocess: the level of a
// chunk in dBFS, a radix-2 FFT, and a voice-activity and pitch estimate built
// on them. No imports, so that a sandboxed child can load it.

/** Full scale of signed 16-bit samples. */
const FULL_SCALE = 32768;
/** The quietest level reported, in dBFS, for digital silence. */
export const FLOOR_DBFS = -120;

/**
 * The RMS level of 16-bit samples in dB relative to full scale (a full-scale
 * square wave is 0 dBFS, a full-scale sine -3 dBFS).
 */
export function levelDbfs(samples: Int16Array): number {
  if (samples.length === 0) return FLOOR_DBFS;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    sum += s * s;
  }
  const rms = Math.sqrt(sum / samples.length) / FULL_SCALE;
  return rms > 0 ? Math.max(FLOOR_DBFS, 20 * Math.log10(rms)) : FLOOR_DBFS;
}

/** The peak level of 16-bit samples in dBFS. */
export function peakDbfs(samples: Int16Array): number {
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    const s = Math.abs(samples[i]!);
    if (s > peak) peak = s;
  }
  return peak > 0
    ? Math.max(FLOOR_DBFS, 20 * Math.log10(peak / FULL_SCALE))
    : FLOOR_DBFS;
}

/**
 * An in-place iterative radix-2 FFT. `re` and `im` have the same power-of-two
 * length; `inverse` computes the unscaled inverse transform.
 */
export function fft(re: Float64Array, im: Float64Array, inverse = false): void {
  const n = re.length;
  if (n !== im.length || (n & (n - 1)) !== 0) {
    throw new RangeError(
      `Cannot run fft as the length must be a power of two shared by re and im: received ${n} and ${im.length}`,
    );
  }
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j]!, re[i]!];
      [im[i], im[j]] = [im[j]!, im[i]!];
    }
  }
  const sign = inverse ? 1 : -1;
  for (let len = 2; len <= n; len <<= 1) {
    const angle = (sign * 2 * Math.PI) / len;
    const wr = Math.cos(angle), wi = Math.sin(angle);
    const half = len >> 1;
    for (let start = 0; start < n; start += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < half; k++) {
        const a = start + k, b = a + half;
        const xr = re[b]! * cr - im[b]! * ci;
        const xi = re[b]! * ci + im[b]! * cr;
        re[b] = re[a]! - xr;
        im[b] = im[a]! - xi;
        re[a] = re[a]! + xr;
        im[a] = im[a]! + xi;
        const next = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = next;
      }
    }
  }
}

/** What {@linkcode analyzeVoice} found in a chunk. */
export interface VoiceAnalysis {
  /** Analysis frames in the chunk. */
  frames: number;
  /** Frames judged voiced speech. */
  voicedFrames: number;
  /** `voicedFrames / frames`. */
  speechRatio: number;
  /** Median pitch of the voiced frames in Hz, or `null` when none is voiced. */
  pitchHz: number | null;
  /** Lowest and highest pitch of the voiced frames in Hz. */
  pitchRange: [number, number] | null;
  /** RMS level of the chunk in dBFS. */
  levelDbfs: number;
}

/** Options of {@linkcode analyzeVoice}. */
export interface VoiceOptions {
  /** Sample rate in Hz. @default {16000} */
  rate?: number;
  /** Frames quieter than this (dBFS) are never voiced. @default {-50} */
  gateDbfs?: number;
  /** Pitch search range in Hz. @default {[70, 400]} */
  pitchHz?: [number, number];
}

/**
 * Voice activity and pitch: the chunk is cut into 64 ms frames (hop 32 ms);
 * a frame is voiced speech when it is loud enough, periodic (its normalised
 * autocorrelation, computed through the FFT, peaks above 0.5 at a lag in the
 * pitch range) and harmonic (at least three of the first six multiples of the
 * pitch carry energy within 30 dB of the strongest bin). The harmonic test is
 * what tells a voice from a pure tone or a whistle, which are periodic too.
 */
export function analyzeVoice(
  samples: Int16Array,
  options: VoiceOptions = {},
): VoiceAnalysis {
  const { rate = 16000, gateDbfs = -50, pitchHz = [70, 400] } = options;
  const frameLength = Math.round(rate * 0.064);
  const hop = frameLength >> 1;
  let n = 1;
  while (n < 2 * frameLength) n <<= 1;
  const minLag = Math.floor(rate / pitchHz[1]);
  const maxLag = Math.min(frameLength - 1, Math.ceil(rate / pitchHz[0]));
  const window = new Float64Array(frameLength);
  for (let i = 0; i < frameLength; i++) {
    window[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (frameLength - 1));
  }
  const re = new Float64Array(n), im = new Float64Array(n);
  const power = new Float64Array(n / 2 + 1);
  const pitches: number[] = [];
  let frames = 0;
  for (let start = 0; start + frameLength <= samples.length; start += hop) {
    frames++;
    const frame = samples.subarray(start, start + frameLength);
    if (levelDbfs(frame) < gateDbfs) continue;
    let mean = 0;
    for (let i = 0; i < frameLength; i++) mean += frame[i]!;
    mean /= frameLength;
    re.fill(0);
    im.fill(0);
    for (let i = 0; i < frameLength; i++) {
      re[i] = ((frame[i]! - mean) / FULL_SCALE) * window[i]!;
    }
    fft(re, im);
    let strongest = 0;
    for (let k = 0; k <= n / 2; k++) {
      const p = re[k]! * re[k]! + im[k]! * im[k]!;
      power[k] = p;
      if (p > strongest) strongest = p;
    }
    // Wiener-Khinchin: the autocorrelation is the inverse FFT of the power
    // spectrum; zero padding to 2x the frame keeps it from wrapping around.
    for (let k = 0; k < n; k++) {
      re[k] = k <= n / 2 ? power[k]! : power[n - k]!;
      im[k] = 0;
    }
    fft(re, im, true);
    const r0 = re[0]!;
    if (!(r0 > 0)) continue;
    // The window shrinks the autocorrelation at long lags; undo that.
    let bestLag = -1, best = 0.5;
    for (let lag = minLag; lag <= maxLag; lag++) {
      const r = re[lag]! / r0 / (1 - lag / frameLength);
      if (
        r > best && r >= (re[lag - 1]! / r0) / (1 - (lag - 1) / frameLength) &&
        r >= (re[lag + 1]! / r0) / (1 - (lag + 1) / frameLength)
      ) {
        best = r;
        bestLag = lag;
      }
    }
    if (bestLag < 0) continue;
    // Parabolic interpolation around the peak for a sub-sample lag.
    const a = re[bestLag - 1]!, b = re[bestLag]!, c = re[bestLag + 1]!;
    const shift = (a - c) / (2 * (a - 2 * b + c) || 1);
    const f0 = rate / (bestLag + (Math.abs(shift) < 1 ? shift : 0));
    let harmonics = 0;
    for (let h = 1; h <= 6; h++) {
      const bin = Math.round((h * f0 * n) / rate);
      if (bin > n / 2) break;
      let p = 0;
      for (let k = Math.max(0, bin - 2); k <= Math.min(n / 2, bin + 2); k++) {
        p = Math.max(p, power[k]!);
      }
      if (p >= strongest * 1e-3) harmonics++;
    }
    if (harmonics >= 3) pitches.push(f0);
  }
  pitches.sort((x, y) => x - y);
  const voicedFrames = pitches.length;
  return {
    frames,
    voicedFrames,
    speechRatio: frames === 0 ? 0 : voicedFrames / frames,
    pitchHz: voicedFrames === 0 ? null : pitches[Math.floor(voicedFrames / 2)]!,
    pitchRange: voicedFrames === 0
      ? null
      : [pitches[0]!, pitches[voicedFrames - 1]!],
    levelDbfs: levelDbfs(samples),
  };
}
