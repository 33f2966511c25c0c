// Copyright the @ocycle/core authors. MIT license.
// The structured-clone codec of Redis mode's entries (wire/_entries.ts):
// `node:v8` serialize and deserialize, imported on first use only, so that
// serial and thread modes never load Node compatibility.

import type { CloneDecoder, CloneEncoder } from "./_values.ts";

/** The codec's two halves. */
export interface Codec {
  readonly clone: CloneEncoder;
  readonly parse: CloneDecoder;
}

let loading: Promise<Codec> | undefined;

/**
 * Loads `node:v8` once.
 *
 * @throws {Error} Saying that the codec could not be imported, with the cause.
 */
export function loadCodec(): Promise<Codec> {
  loading ??= import("node:v8").then(
    (v8) => ({
      clone: (value: unknown) => new Uint8Array(v8.serialize(value)),
      parse: (bytes: Uint8Array) => v8.deserialize(bytes),
    }),
    (cause) => {
      loading = undefined;
      throw new Error(
        `Redis mode needs node:v8 for items, text and results, which could not be imported: ${
          cause instanceof Error ? cause.message : String(cause)
        }`,
        { cause },
      );
    },
  );
  return loading;
}
