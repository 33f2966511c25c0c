// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo, not run on its own)
//
// FLAC for the demo through the reference encoder and decoder: libFLAC,
// compiled to JavaScript (asm.js) by emscripten in the npm package libflacjs.
// Its WebAssembly builds look for their .wasm file in ways that fail under
// Deno; the asm.js build is one self-contained file. This npm dependency
// belongs to the example only: the published module has none.
//
// libflac.js looks for two optional settings in process.env as it loads,
// FLAC_SCRIPT_LOCATION and fetch (where to find its files): a sandboxed child
// must be allowed to read those two names (FLAC_ENV in recorder_env.ts).

import * as libflac from "npm:libflacjs@5.6.0/dist/libflac.js";

// libflac.js is CommonJS: its API is `module.exports`, which Deno hands over as
// the default export, while its typings declare the API as the module itself.
const Flac = (libflac as unknown as { default: typeof libflac }).default;

const ready: Promise<void> = Flac.isReady()
  ? Promise.resolve()
  : new Promise((resolve) => Flac.on("ready", () => resolve()));

/** A decoded FLAC stream. */
export interface DecodedFlac {
  /** Samples per second. */
  rate: number;
  /** Channels (the samples are interleaved). */
  channels: number;
  /** Bits per sample in the stream. */
  bitsPerSample: number;
  /** Total samples per channel, as STREAMINFO says. */
  totalSamples: number;
  /** The samples (16-bit streams only). */
  samples: Int16Array;
  /** STREAMINFO's MD5 of the samples, as hex; zeros when unset. */
  md5: string;
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Encodes 16-bit mono samples as a FLAC stream (compression level 5, the
 * `flac` default), with the total sample count and the MD5 of the samples
 * in STREAMINFO, so that `flac -t` and `flac -d` check them.
 */
export async function encodeFlac(
  samples: Int16Array,
  rate: number,
): Promise<Uint8Array<ArrayBuffer>> {
  await ready;
  const encoder = Flac.create_libflac_encoder(
    rate,
    1,
    16,
    5,
    samples.length,
    false,
  );
  if (encoder === 0) {
    throw new Error("Cannot encode FLAC as libFLAC could not make an encoder");
  }
  const parts: Uint8Array[] = [];
  let info:
    | { md5sum: string; min_framesize: number; max_framesize: number }
    | undefined;
  try {
    const status = Flac.init_encoder_stream(
      encoder,
      // The callback's buffer is libFLAC's own memory: copy it.
      (data: Uint8Array) => void parts.push(data.slice()),
      (metadata) => {
        if (metadata !== undefined) info = metadata;
      },
    );
    if (status !== 0) {
      throw new Error(
        `Cannot encode FLAC as libFLAC's encoder did not start: init status ${status}`,
      );
    }
    if (
      samples.length > 0 &&
      !Flac.FLAC__stream_encoder_process_interleaved(
        encoder,
        Int32Array.from(samples),
        samples.length,
      )
    ) {
      throw new Error(
        `Cannot encode FLAC as libFLAC's encoder failed: state ${
          Flac.FLAC__stream_encoder_get_state(encoder)
        }`,
      );
    }
    if (!Flac.FLAC__stream_encoder_finish(encoder)) {
      throw new Error(
        `Cannot encode FLAC as libFLAC's encoder failed to finish: state ${
          Flac.FLAC__stream_encoder_get_state(encoder)
        }`,
      );
    }
  } finally {
    Flac.FLAC__stream_encoder_delete(encoder);
  }
  const flac = concat(parts);
  // A stream encoder cannot seek back: libFLAC hands the final STREAMINFO to
  // the metadata callback, and it is patched in here (frame sizes and MD5).
  if (info !== undefined) patchStreamInfo(flac, info);
  return flac;
}

/** libFLAC's decoder error statuses, by code. */
const DECODER_ERRORS: Record<number, string> = {
  0: "lost sync",
  1: "bad frame header",
  2: "frame CRC mismatch",
  3: "unparseable stream",
};

/** STREAMINFO is the first metadata block, right after "fLaC" and its header. */
const STREAMINFO = 8;

function patchStreamInfo(
  flac: Uint8Array,
  info: { md5sum: string; min_framesize: number; max_framesize: number },
): void {
  if (
    String.fromCharCode(...flac.subarray(0, 4)) !== "fLaC" ||
    (flac[4]! & 0x7f) !== 0
  ) {
    throw new Error("Cannot encode FLAC as libFLAC wrote no STREAMINFO first");
  }
  const put24 = (at: number, value: number) => {
    flac[at] = (value >> 16) & 0xff;
    flac[at + 1] = (value >> 8) & 0xff;
    flac[at + 2] = value & 0xff;
  };
  put24(STREAMINFO + 4, info.min_framesize);
  put24(STREAMINFO + 7, info.max_framesize);
  for (let i = 0; i < 16; i++) {
    flac[STREAMINFO + 18 + i] = parseInt(
      info.md5sum.slice(2 * i, 2 * i + 2),
      16,
    );
  }
}

/**
 * Decodes a FLAC stream, with libFLAC checking every frame's CRC and the MD5
 * of all samples.
 *
 * @throws {TypeError} If it is not FLAC, or it is damaged.
 */
export async function decodeFlac(flac: Uint8Array): Promise<DecodedFlac> {
  if (String.fromCharCode(...flac.subarray(0, 4)) !== "fLaC") {
    throw new TypeError(
      `Cannot decode FLAC as it does not start with "fLaC": received "${
        String.fromCharCode(...flac.subarray(0, 4))
      }"`,
    );
  }
  await ready;
  const decoder = Flac.create_libflac_decoder(true);
  if (decoder === 0) {
    throw new Error("Cannot decode FLAC as libFLAC could not make a decoder");
  }
  let at = 0;
  const blocks: Int16Array[] = [];
  const errors: string[] = [];
  let info: DecodedFlac | undefined;
  try {
    const status = Flac.init_decoder_stream(
      decoder,
      (want: number) => {
        const buffer = flac.slice(at, at + want);
        at += buffer.length;
        return { buffer, readDataLength: buffer.length, error: false };
      },
      (channels: Uint8Array[], frame) => {
        // Checked after the stream, not thrown through libFLAC's frames.
        if (frame.bitsPerSample !== 16) return;
        // libflac.js hands each channel over as 16-bit little-endian bytes.
        const n = frame.blocksize;
        const out = new Int16Array(n * channels.length);
        channels.forEach((bytes, c) => {
          const view = new DataView(
            bytes.buffer,
            bytes.byteOffset,
            bytes.byteLength,
          );
          for (let i = 0; i < n; i++) {
            out[i * channels.length + c] = view.getInt16(2 * i, true);
          }
        });
        blocks.push(out);
      },
      (code: number) => void errors.push(`${DECODER_ERRORS[code] ?? code}`),
      (metadata) => {
        if (metadata === undefined) return;
        info = {
          rate: metadata.sampleRate,
          channels: metadata.channels,
          bitsPerSample: metadata.bitsPerSample,
          totalSamples: metadata.total_samples,
          samples: new Int16Array(0),
          md5: metadata.md5sum,
        };
      },
    );
    if (status !== 0) {
      throw new Error(
        `Cannot decode FLAC as libFLAC's decoder did not start: init status ${status}`,
      );
    }
    const ok = Flac.FLAC__stream_decoder_process_until_end_of_stream(decoder);
    const finished = Flac.FLAC__stream_decoder_finish(decoder);
    if (!ok || errors.length > 0 || info === undefined) {
      throw new TypeError(
        `Cannot decode FLAC as the stream is damaged: ${
          errors.join("; ") ||
          `decoder state ${Flac.FLAC__stream_decoder_get_state(decoder)}`
        }`,
      );
    }
    if (info.bitsPerSample !== 16) {
      throw new TypeError(
        `Cannot decode FLAC as the demo reads 16-bit streams only: received ${info.bitsPerSample}-bit`,
      );
    }
    // finish() returns false when the MD5 of the decoded samples differs.
    if (!finished) {
      throw new TypeError(
        "Cannot decode FLAC as the samples do not match the MD5 in STREAMINFO",
      );
    }
  } finally {
    Flac.FLAC__stream_decoder_delete(decoder);
  }
  const samples = new Int16Array(blocks.reduce((n, b) => n + b.length, 0));
  let to = 0;
  for (const block of blocks) {
    samples.set(block, to);
    to += block.length;
  }
  return { ...info, samples };
}
