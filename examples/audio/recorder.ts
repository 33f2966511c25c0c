// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (the demo's recorder callback, loaded by the emitter)
//
// The encrypted recorder of the audio demo, a callback module: each chunk (a
// 10 s segment of 16 kHz mono Int16 samples) becomes a FLAC file (lossless:
// `flac -d` gives back the exact samples), encrypted with AES-256-GCM and
// written to $OCYCLE_DEMO_OUT/segment-<index>.flac.enc.
//
// The demo runs it in process mode with least privilege: the child may write
// only the output directory, read only its modules, and read only the two
// environment variables below, which the parent passes through the `env`
// option, and the two libflac.js looks for (FLAC_ENV, unset there): see
// recorder_env.ts. The key
// never travels with the audio, and nothing else in the parent's environment
// reaches the child.

import { encodeFlac } from "./flac.ts";
import { decodeKey, importKey, KEY_ENV, seal } from "./seal.ts";
import { OUT_ENV } from "./recorder_env.ts";
import { levelDbfs } from "./dsp.ts";

/** What the recorder returns for each segment. */
export interface RecorderResult {
  /** The encrypted file's path. */
  file: string;
  /** Its size in bytes. */
  bytes: number;
  /** The size of the same samples as a 16-bit PCM WAV file, in bytes. */
  wavBytes: number;
  /** The segment's length in seconds. */
  seconds: number;
  /** The segment's RMS level in dBFS. */
  levelDbfs: number;
  /** Milliseconds spent encoding, encrypting and writing. */
  ms: number;
}

let key: Promise<CryptoKey> | undefined;

/** Encodes, encrypts and writes one segment. */
export default async function record(
  chunk: Int16Array,
  _t0: number,
  info: { index: number },
): Promise<RecorderResult> {
  const started = performance.now();
  const out = Deno.env.get(OUT_ENV);
  const base64 = Deno.env.get(KEY_ENV);
  if (out === undefined || base64 === undefined) {
    throw new TypeError(
      `Cannot record as ${OUT_ENV} and ${KEY_ENV} must both be set: the demo passes them with the env option`,
    );
  }
  key ??= importKey(decodeKey(base64));
  const flac = await encodeFlac(chunk, 16000);
  const sealed = await seal(await key, flac);
  const file = `${out}/segment-${String(info.index).padStart(4, "0")}.flac.enc`;
  await Deno.writeFile(file, sealed, { mode: 0o600 });
  return {
    file,
    bytes: sealed.length,
    wavBytes: 44 + 2 * chunk.length,
    seconds: chunk.length / 16000,
    levelDbfs: levelDbfs(chunk),
    ms: performance.now() - started,
  };
}
