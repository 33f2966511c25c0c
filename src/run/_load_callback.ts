// Copyright the @ocycle/core authors. MIT license.
// Loading a callback module, the same way in serial mode, in a thread and in
// a child process.

import type { Callback } from "../chunk_info.ts";

/**
 * Imports a callback module and picks its export.
 *
 * @throws {TypeError} If the export is not a function; the message names the module and the export.
 */
export async function loadCallback<C, R>(
  url: URL | string,
  exportName: string,
): Promise<Callback<C, R>> {
  const href = typeof url === "string" ? url : url.href;
  const module = await import(href) as Record<string, unknown>;
  const fn = module[exportName];
  if (typeof fn !== "function") {
    throw new TypeError(
      `Cannot use module ${href} as a callback as its export '${exportName}' is not a function: received ${typeof fn}`,
    );
  }
  return fn as Callback<C, R>;
}

/** Whether a value is a promise or any other thenable. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}
