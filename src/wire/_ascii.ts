// Copyright the @ocycle/core authors. MIT license.
// Short ASCII bytes as text without a TextDecoder: a fleet entry has a dozen
// field names, ids and numbers, and a TextDecoder call is a call into Deno's
// runtime for each.

/** The longest bytes read here; longer ones go to a TextDecoder. */
const SHORT = 64;

/**
 * `bytes` as text if they are at most 64 bytes of ASCII (which is then also
 * their UTF-8), else `undefined`.
 */
export function shortAscii(bytes: Uint8Array): string | undefined {
  const n = bytes.length;
  if (n > SHORT) return undefined;
  let text = "";
  for (let i = 0; i < n; i++) {
    const byte = bytes[i]!;
    if (byte >= 0x80) return undefined;
    text += String.fromCharCode(byte);
  }
  return text;
}
