// Copyright the @ocycle/core authors. MIT license.
// ocycle-example: helper (the callback module of the README's thread and process example)
/**
 * A callback module: its default export is the callback. Thread and process
 * modes import it once per Worker or child.
 *
 * @module
 */

/** The root mean square of a chunk of 16-bit samples. */
export default function rms(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.round(Math.sqrt(sum / samples.length));
}
