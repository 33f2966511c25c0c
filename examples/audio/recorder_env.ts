// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (imported by the audio demo, not run on its own)
//
// The environment the recorder's sandboxed child may read, in a module of
// its own so that the demo can name it without loading the recorder (and
// its npm dependency) into its own module graph.

export { KEY_ENV } from "./seal.ts";

/** The environment variable that names the output directory. */
export const OUT_ENV = "OCYCLE_DEMO_OUT";

/**
 * The environment variables libflac.js looks for as it loads (where to find
 * its files): unset in the child, whose environment is cleared, but reading
 * them must not fail there.
 */
export const FLAC_ENV = ["FLAC_SCRIPT_LOCATION", "fetch"] as const;
