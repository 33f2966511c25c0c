// Copyright the @ocycle/core authors. MIT license.
// Sizes for the `ocycle` command line: byte counts with units (`64KiB`,
// `1MiB`, `1M`, `500kB`) and durations of audio (`2s`, `250ms`) turned into
// bytes through a sample rate, a sample format and a channel count; and the
// durations of --timeout and --retry-delay, in which a bare number is seconds.
// Kept apart from the CLI so that the arithmetic is tested on its own.

/** Bytes per sample of each raw sample format the CLI knows (ffmpeg/sox names). */
export const SAMPLE_FORMATS: Readonly<Record<string, number>> = {
  u8: 1,
  s8: 1,
  s16le: 2,
  s16be: 2,
  u16le: 2,
  u16be: 2,
  s24le: 3,
  s24be: 3,
  s32le: 4,
  s32be: 4,
  f32le: 4,
  f32be: 4,
  f64le: 8,
  f64be: 8,
};

/** What a duration needs to become a byte count. */
export interface AudioFormat {
  /** Frames per second; required for a duration. */
  rate?: number | undefined;
  /** A key of {@linkcode SAMPLE_FORMATS}. */
  format: string;
  /** Interleaved channels per frame. */
  channels: number;
}

// Uppercase single letters are binary, as in dd, sort -S and GNU parallel
// --block; "kB"/"MB" are decimal, "KiB"/"MiB" binary, as their names say.
const BYTE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
};

const TIME_UNITS: Readonly<Record<string, number>> = {
  ms: 0.001,
  s: 1,
  sec: 1,
  min: 60,
};

const PATTERN = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i;

/**
 * Parses a size for the flag `flag` into a whole, positive number of bytes.
 * A duration is rounded to whole frames, so that a chunk never splits one.
 *
 * @throws {RangeError} Naming the flag and the value, if it is not a size.
 */
export function parseSize(
  flag: string,
  text: string,
  audio: AudioFormat,
): number {
  const match = PATTERN.exec(text);
  if (match === null) {
    throw new RangeError(
      `${flag} must be a size such as 65536, 64KiB, 1MiB or 2s: received "${text}"`,
    );
  }
  const value = Number(match[1]);
  const unit = match[2]!;
  const lower = unit.toLowerCase();
  let bytes: number;
  if (lower in TIME_UNITS) {
    if (audio.rate === undefined) {
      throw new RangeError(
        `${flag} ${text} is a duration, so it needs --rate (frames per second, e.g. --rate 16000) and optionally --format and --channels`,
      );
    }
    const frameBytes = bytesPerFrame(audio);
    const frames = Math.round(value * TIME_UNITS[lower]! * audio.rate);
    bytes = frames * frameBytes;
  } else if (lower in BYTE_UNITS) {
    // "B" alone is bytes; "b" (bits) is not a size anyone means here.
    bytes = value * BYTE_UNITS[lower]!;
    // Infinity (a thousand digits) is too large, below, not a fraction.
    if (Number.isFinite(bytes) && !Number.isInteger(bytes)) {
      throw new RangeError(
        `${flag} must be a whole number of bytes: received "${text}" (${bytes} bytes)`,
      );
    }
  } else {
    throw new RangeError(
      `${flag} has an unknown unit "${unit}" in "${text}": use B, K, KiB, kB, M, MiB, MB, G, GiB, GB, ms, s or min`,
    );
  }
  if (!(bytes > 0)) {
    throw new RangeError(
      `${flag} must be at least one byte (one frame for a duration): received "${text}"`,
    );
  }
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`${flag} is too large: received "${text}"`);
  }
  return bytes;
}

/**
 * Bytes per frame of an audio format.
 *
 * @throws {RangeError} If the format is unknown or the channel count is bad.
 */
export function bytesPerFrame(audio: AudioFormat): number {
  const sample = SAMPLE_FORMATS[audio.format];
  if (sample === undefined) {
    throw new RangeError(
      `--format must be one of ${
        Object.keys(SAMPLE_FORMATS).join(", ")
      }: received "${audio.format}"`,
    );
  }
  if (!Number.isSafeInteger(audio.channels) || audio.channels < 1) {
    throw new RangeError(
      `--channels must be a positive integer: received "${audio.channels}"`,
    );
  }
  return sample * audio.channels;
}

/**
 * Parses a duration into milliseconds. A bare number is seconds, as in GNU
 * parallel's --timeout and timeout(1): `5` is 5 s. A unit says otherwise:
 * `500ms`, `2s`, `1.5min`. Zero is a duration too.
 *
 * @throws {RangeError} Naming the flag and the value.
 */
export function parseDuration(flag: string, text: string): number {
  const match = PATTERN.exec(text);
  const unit = match?.[2]?.toLowerCase() ?? "";
  if (match === null || !(unit === "" || unit in TIME_UNITS)) {
    throw new RangeError(
      `${flag} must be a duration such as 30 (seconds), 500ms, 2s or 1min: received "${text}"`,
    );
  }
  const value = Number(match[1]);
  // Rounded to the microsecond: 1.1 s is 1100 ms, not 1100.0000000000002.
  const ms = unit === "ms"
    ? value
    : Math.round(value * TIME_UNITS[unit === "" ? "s" : unit]! * 1e6) / 1e3;
  // Whether 0 will do (a --retry-delay) or not (a --timeout) is the library's to say.
  if (!Number.isFinite(ms)) {
    throw new RangeError(`${flag} is too long: received "${text}"`);
  }
  return ms;
}

/** Formats a byte count for people: `1.5 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let i = 0;
  // By the value as shown: 1048575 bytes is 1.00 MiB, not 1024.0 KiB.
  const shown = (v: number) => Number(v.toFixed(v < 10 ? 2 : 1));
  while (shown(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[i]}`;
}
