// Copyright the @ocycle/core authors. MIT license.
// Where a callback module given as a string lives: the emitter and the
// command line resolve it the same way.

import * as std from "@std/path";

/**
 * The functions of @std/path used here; assigning them checks this against
 * @std/path's own types wherever those are present (the offline copy has none).
 */
const { isAbsolute, resolve, toFileUrl }: {
  isAbsolute(path: string): boolean;
  resolve(...paths: string[]): string;
  toFileUrl(path: string): URL;
} = std;

/**
 * The URL of a module given as a URL (`https:`, `file:`, `jsr:` ...) or as a
 * path, absolute or relative to the current working directory. Characters
 * that mean something in a URL (`#`, `?`, `%`, spaces) stay part of the path.
 */
export function toModuleUrl(specifier: string): URL {
  if (!isAbsolute(specifier) && /^[a-z][a-z0-9+.-]*:/i.test(specifier)) {
    return new URL(specifier);
  }
  return toFileUrl(resolve(specifier));
}
