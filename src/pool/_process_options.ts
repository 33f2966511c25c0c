// Copyright the @ocycle/core authors. MIT license.
// Process mode's options as the user gave them, checked when the emitter is
// made, in every mode. A leaf: the emitter loads it for the check, while the
// argument builder (pool/_process_args.ts) loads with process mode.

import type { ChildPermissions } from "../emitter_options.ts";
import { describeValue } from "../core/_kinds.ts";

/** Process mode's options, checked: what pool/_process_args.ts builds a child from. */
export interface CheckedProcessOptions {
  /** The Deno permission flags a child gets. */
  readonly permissionFlags: readonly string[];
  /** The child's environment; `undefined` clears it. */
  readonly env: Record<string, string> | undefined;
  /** V8 flags for the child, such as `--max-old-space-size=64`. */
  readonly v8Flags: readonly string[];
}

/** The options of process mode, as the user gave them. */
export interface ProcessOptions {
  permissions?: ChildPermissions;
  env?: Record<string, string>;
  v8Flags?: string[];
}

/** The names of the permissions a child may be given. */
export const PERMISSIONS = [
  "read",
  "write",
  "net",
  "env",
  "run",
  "sys",
  "ffi",
  "import",
] as const;

/**
 * Checks process mode's options (in every mode, so that a mistake shows
 * before the mode changes) and turns them into child settings.
 *
 * @throws {TypeError} Naming the option and the value.
 */
export function processOptions(
  options: ProcessOptions,
  owner: string,
): CheckedProcessOptions {
  const { permissions = {}, env, v8Flags = [] } = options;
  if (!Array.isArray(v8Flags) || v8Flags.some((f) => typeof f !== "string")) {
    throw new TypeError(
      `Cannot create ${owner} as 'v8Flags' must be an array of strings: received ${
        describeValue(v8Flags)
      }`,
    );
  }
  return { permissionFlags: permissionFlags(permissions, owner), env, v8Flags };
}

function permissionFlags(
  permissions: ChildPermissions,
  owner: string,
): string[] {
  if (typeof permissions !== "object" || permissions === null) {
    throw new TypeError(
      `Cannot create ${owner} as 'permissions' must be an object: received ${
        describeValue(permissions)
      }`,
    );
  }
  const flags: string[] = [];
  for (const [name, value] of Object.entries(permissions)) {
    if (!(PERMISSIONS as readonly string[]).includes(name)) {
      throw new TypeError(
        `Cannot create ${owner} as 'permissions.${name}' is not a Deno permission: use read, write, net, env, run, sys, ffi or import`,
      );
    }
    if (value === true) flags.push(`--allow-${name}`);
    else if (
      Array.isArray(value) && value.every((v) => typeof v === "string")
    ) {
      if (value.includes("")) {
        throw new TypeError(
          `Cannot create ${owner} as 'permissions.${name}' holds an empty string, which Deno's --allow-${name} list refuses: received ${
            JSON.stringify(value)
          }`,
        );
      }
      const comma = value.find((v) => v.includes(","));
      if (comma !== undefined) {
        throw new TypeError(
          `Cannot create ${owner} as 'permissions.${name}' holds a value with a comma, which Deno's --allow-${name} list cannot express: received ${
            describeValue(comma)
          }`,
        );
      }
      if (value.length > 0) flags.push(`--allow-${name}=${value.join(",")}`);
    } else if (value !== false && value !== undefined) {
      throw new TypeError(
        `Cannot create ${owner} as 'permissions.${name}' must be a boolean or an array of strings: received ${
          describeValue(value)
        }`,
      );
    }
  }
  return flags;
}

/**
 * The `--allow-read` flag that lets a child read its callback module, or
 * `undefined` when none is needed (a remote module, or `read: true`).
 *
 * @throws {TypeError} If the module's path has a comma, which no --allow-read list can hold.
 */
export function moduleReadFlag(
  url: URL,
  permissionFlags: readonly string[],
  owner: string,
): string | undefined {
  if (url.protocol !== "file:" || permissionFlags.includes("--allow-read")) {
    return undefined;
  }
  const path = decodeURIComponent(url.pathname);
  if (path.includes(",")) {
    throw new TypeError(
      `Cannot create ${owner} in process mode as the path of its callback module has a comma, which Deno's --allow-read list cannot express: move or rename ${path}, or grant permissions.read: true`,
    );
  }
  return `--allow-read=${path}`;
}
