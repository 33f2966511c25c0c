// Copyright the @ocycle/core authors. MIT license.
// The child of echo_limit.ts: reads 64 KiB chunks from stdin and answers each
// with 8 bytes. No framing, no decoding, no callback: the least a child can do.
const CHUNK = 65536;
const reply = new Uint8Array(8);
const buf = new Uint8Array(1 << 20);
let have = 0;
while (true) {
  const n = await Deno.stdin.read(buf.subarray(have));
  if (n === null) break;
  have += n;
  while (have >= CHUNK) {
    have -= CHUNK;
    buf.copyWithin(0, CHUNK, CHUNK + have);
    await Deno.stdout.write(reply);
  }
}
