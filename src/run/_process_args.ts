// Copyright the @ocycle/core authors. MIT license.
// What only process mode needs from the emitter's options: the permissions,
// environment and V8 flags of its children, checked once and turned into the
// arguments of `deno run`.

import type { ChildPermissions } from "../emitter_options.ts";
import { describeValue } from "../core/_kinds.ts";
import type { RemoteSettings } from "./_transport.ts";

/** Everything a process-mode child is started with. */
export interface ProcessSettings extends RemoteSettings {
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

const PERMISSIONS = [
  "read",
  "write",
  "net",
  "env",
  "run",
  "sys",
  "ffi",
  "import",
];

/**
 * Checks process mode's options (in every mode, so that a mistake shows
 * before the mode changes) and turns them into child settings.
 *
 * @throws {TypeError} Naming the option and the value.
 */
export function processOptions(
  options: ProcessOptions,
  owner: string,
): Pick<ProcessSettings, "permissionFlags" | "env" | "v8Flags"> {
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
    if (!PERMISSIONS.includes(name)) {
      throw new TypeError(
        `Cannot create ${owner} as 'permissions.${name}' is not a Deno permission: use read, write, net, env, run, sys, ffi or import`,
      );
    }
    if (value === true) flags.push(`--allow-${name}`);
    else if (
      Array.isArray(value) && value.every((v) => typeof v === "string")
    ) {
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
 * The arguments of `deno` for a child: least privilege, no prompt, no shell.
 *
 * @throws {TypeError} If the module's path has a comma, which no --allow-read list can hold.
 */
export function childArgs(
  settings: ProcessSettings,
  writePiece: number | undefined,
): string[] {
  const { url, permissionFlags, v8Flags } = settings;
  const args = ["run", "--no-prompt"];
  const readsAll = permissionFlags.includes("--allow-read");
  if (url.protocol === "file:" && !readsAll) {
    const path = decodeURIComponent(url.pathname);
    if (path.includes(",")) {
      throw new TypeError(
        `Cannot create ${settings.owner} in process mode as the path of its callback module has a comma, which Deno's --allow-read list cannot express: move or rename ${path}, or grant permissions.read: true`,
      );
    }
    args.push(`--allow-read=${path}`);
  } else if (url.protocol === "http:" || url.protocol === "https:") {
    args.push(`--allow-import=${url.host}`);
  }
  args.push(...permissionFlags);
  if (v8Flags.length > 0) args.push(`--v8-flags=${v8Flags.join(",")}`);
  args.push(new URL("../remote/_child.ts", import.meta.url).href);
  if (writePiece !== undefined) args.push(`--write-piece=${writePiece}`);
  return args;
}
