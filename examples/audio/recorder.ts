// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (the demo's recorder callback, loaded by the emitter)
//
// The encrypted recorder of the audio demo, a callback module: each chunk (a
// 10 s segment of 16 kHz mono Int16 samples) becomes a WAV file, encrypted
// with AES-256-GCM and written to $OCYCLE_DEMO_OUT/segment-<index>.wav.enc.
//
// The demo runs it in process mode with least privilege: the child may write
// only the output directory, read only its modules, and read only the two
// environment variables below, which the parent passes through the `env`
// option. The key never travels with the audio, and nothing else in the
// parent's environment reaches the child.

import { encodeWav } from "./wav.ts";
import { decodeKey, importKey, KEY_ENV, seal } from "./seal.ts";
import { levelDbfs } from "./dsp.ts";

/** The environment variable that names the output directory. */
export const OUT_ENV = "OCYCLE_DEMO_OUT";

/** What the recorder returns for each segment. */
export interface RecorderResult {
  /** The encrypted file's path. */
  file: string;
  /** Its size in bytes. */
  bytes: number;
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
  const wav = encodeWav(chunk, 16000) as Uint8Array<ArrayBuffer>;
  const sealed = await seal(await key, wav);
  const file = `${out}/segment-${String(info.index).padStart(4, "0")}.wav.enc`;
  await Deno.writeFile(file, sealed, { mode: 0o600 });
  return {
    file,
    bytes: sealed.length,
    seconds: chunk.length / 16000,
    levelDbfs: levelDbfs(chunk),
    ms: performance.now() - started,
  };
}
