// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo, not run on its own)
//
// AES-256-GCM through Web Crypto for the demo's recorder. A sealed file is
//
//   "OCYE" | version 1 | 12-byte IV | ciphertext with its 16-byte tag
//
// and the first 5 bytes are authenticated as additional data, so a file of
// another version cannot be decrypted as this one. A fresh random IV per
// file; the key is 32 bytes, written as base64 in OCYCLE_DEMO_KEY.

/** The environment variable that holds the base64 key. */
export const KEY_ENV = "OCYCLE_DEMO_KEY";

const MAGIC = Uint8Array.of(0x4f, 0x43, 0x59, 0x45, 1); // "OCYE", version 1
const IV_BYTES = 12;

/** Decodes a base64 key and checks that it is 32 bytes. */
export function decodeKey(base64: string): Uint8Array<ArrayBuffer> {
  let raw: Uint8Array<ArrayBuffer>;
  try {
    raw = Uint8Array.from(atob(base64.trim()), (c) => c.charCodeAt(0));
  } catch {
    throw new TypeError(
      `Cannot use the key as ${KEY_ENV} is not base64: received ${base64.length} characters`,
    );
  }
  if (raw.length !== 32) {
    throw new RangeError(
      `Cannot use the key as ${KEY_ENV} must decode to 32 bytes (AES-256): received ${raw.length} bytes`,
    );
  }
  return raw;
}

/** A new random 32-byte key, as base64. */
export function generateKey(): string {
  return btoa(
    String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))),
  );
}

/** Imports a raw key for AES-GCM. */
export function importKey(raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
}

/** Encrypts `plain` into a sealed file. */
export async function seal(
  key: CryptoKey,
  plain: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array> {
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const cipher = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: MAGIC },
      key,
      plain,
    ),
  );
  const out = new Uint8Array(MAGIC.length + IV_BYTES + cipher.length);
  out.set(MAGIC, 0);
  out.set(iv, MAGIC.length);
  out.set(cipher, MAGIC.length + IV_BYTES);
  return out;
}

/**
 * Decrypts a sealed file.
 *
 * @throws {TypeError} If it is not a sealed file, or the key or the bytes are
 * wrong (AES-GCM authenticates both).
 */
export async function open(
  key: CryptoKey,
  sealed: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array> {
  if (
    sealed.length < MAGIC.length + IV_BYTES + 16 ||
    !MAGIC.every((b, i) => sealed[i] === b)
  ) {
    throw new TypeError(
      "Cannot decrypt as the file is not an ocycle demo segment (no OCYE version 1 header)",
    );
  }
  const iv = sealed.subarray(MAGIC.length, MAGIC.length + IV_BYTES);
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv, additionalData: MAGIC },
        key,
        sealed.subarray(MAGIC.length + IV_BYTES),
      ),
    );
  } catch (error) {
    throw new TypeError(
      "Cannot decrypt as the key is wrong or the file was altered (AES-GCM tag mismatch)",
      { cause: error },
    );
  }
}
