// Copyright the @ocycle/core authors. MIT license.
// Where a callback module given as a string lives: the emitter and the
// command line resolve it the same way.

import * as posixAbsolute from "@std/path/posix/is-absolute";
import * as posixResolve from "@std/path/posix/resolve";
import * as posixFileUrl from "@std/path/posix/to-file-url";
import * as windowsAbsolute from "@std/path/windows/is-absolute";
import * as windowsResolve from "@std/path/windows/resolve";
import * as windowsFileUrl from "@std/path/windows/to-file-url";

/** The functions of @std/path used here. */
interface PathFunctions {
  isAbsolute(path: string): boolean;
  resolve(...paths: string[]): string;
  toFileUrl(path: string): URL;
}

/**
 * The platform's functions, each from its own module, picked here by
 * `Deno.build.os`: @std/path's own choice (`@std/path/resolve`) asks
 * `globalThis.process` first in some builds, which starts Node compatibility
 * and doubles the start-up of a program that uses nothing of it. Assigning
 * them checks this against @std/path's types wherever those are present (the
 * offline copy has none).
 */
const { isAbsolute, resolve, toFileUrl }: PathFunctions =
  Deno.build.os === "windows"
    ? { ...windowsAbsolute, ...windowsResolve, ...windowsFileUrl }
    : { ...posixAbsolute, ...posixResolve, ...posixFileUrl };

/**
 * The URL of a module given as a URL (`https:`, `file:`, `jsr:` ...) or as a
 * path, absolute or relative to the current working directory. Characters
 * that mean something in a URL (`#`, `?`, `%`, spaces) stay part of the path.
 */
export function toModuleUrl(specifier: string): URL {
  if (!isAbsolute(specifier) && /^[a-z][a-z0-9+.-]*:/i.test(specifier)) {
    return new URL(specifier);
  }
  // The working directory given, so that @std/path never looks for one.
  return toFileUrl(resolve(Deno.cwd(), specifier));
}
