// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo, not run on its own)
//
// Just enough RIFF/WAVE for the demo: write 16-bit PCM, and read a PCM file
// back with its header checked. No imports, so that a sandboxed child can
// load it.

/** A parsed PCM WAV file. */
export interface Wav {
  /** Frames per second. */
  rate: number;
  /** Interleaved channels. */
  channels: number;
  /** Bits per sample. */
  bitsPerSample: number;
  /** The sample data, little-endian, as stored in the file. */
  data: Uint8Array;
  /** `data` length in seconds. */
  seconds: number;
}

const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** Encodes mono or interleaved 16-bit samples as a PCM WAV file. */
export function encodeWav(
  samples: Int16Array,
  rate: number,
  channels = 1,
): Uint8Array {
  const dataBytes = samples.length * 2;
  const out = new Uint8Array(44 + dataBytes);
  const view = new DataView(out.buffer);
  out.set(ascii("RIFF"), 0);
  view.setUint32(4, 36 + dataBytes, true);
  out.set(ascii("WAVE"), 8);
  out.set(ascii("fmt "), 12);
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, channels, true);
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * channels * 2, true);
  view.setUint16(32, channels * 2, true);
  view.setUint16(34, 16, true);
  out.set(ascii("data"), 36);
  view.setUint32(40, dataBytes, true);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(44 + 2 * i, samples[i]!, true);
  }
  return out;
}

/**
 * Parses a PCM WAV file, walking its chunks (so `LIST` and other chunks
 * before `data` are skipped).
 *
 * @throws {TypeError} If it is not a PCM RIFF/WAVE file, naming what is wrong.
 */
export function parseWav(bytes: Uint8Array): Wav {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) =>
    String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new TypeError(
      `Cannot read WAV as it does not start with RIFF....WAVE: received "${
        tag(0)
      }....${tag(8)}"`,
    );
  }
  let at = 12;
  let format: Omit<Wav, "data" | "seconds"> | undefined;
  while (at + 8 <= bytes.length) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt ") {
      const code = view.getUint16(body, true);
      // 0xFFFE is WAVE_FORMAT_EXTENSIBLE; its sub-format is PCM for s16 files.
      if (code !== 1 && code !== 0xfffe) {
        throw new TypeError(
          `Cannot read WAV as its format is not PCM: received format code ${code}`,
        );
      }
      format = {
        channels: view.getUint16(body + 2, true),
        rate: view.getUint32(body + 4, true),
        bitsPerSample: view.getUint16(body + 14, true),
      };
    } else if (id === "data") {
      if (format === undefined) {
        throw new TypeError("Cannot read WAV as its data comes before fmt");
      }
      // A stream written live may carry a size of 0 or 0xFFFFFFFF: take the rest.
      const end = size === 0 || body + size > bytes.length
        ? bytes.length
        : body + size;
      const data = bytes.subarray(body, end);
      const frameBytes = format.channels * format.bitsPerSample / 8;
      return {
        ...format,
        data,
        seconds: data.length / frameBytes / format.rate,
      };
    }
    at = body + size + (size & 1);
  }
  throw new TypeError("Cannot read WAV as it has no data chunk");
}

/** The samples of a 16-bit little-endian buffer, mixed down to mono. */
export function toMonoInt16(data: Uint8Array, channels: number): Int16Array {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const frames = Math.floor(data.length / (2 * channels));
  const out = new Int16Array(frames);
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) {
      sum += view.getInt16(2 * (f * channels + c), true);
    }
    out[f] = Math.round(sum / channels);
  }
  return out;
}
