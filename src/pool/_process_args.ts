// Copyright the @ocycle/core authors. MIT license.
// What only process mode needs from the emitter's options: the permissions,
// environment and V8 flags of its children (checked by pool/_process_options.ts
// when the emitter is made) turned into the arguments of `deno run`.

import type { RemoteSettings } from "./_transport.ts";
import {
  type CheckedProcessOptions,
  moduleReadFlag,
} from "./_process_options.ts";

export {
  PERMISSIONS,
  type ProcessOptions,
  processOptions,
} from "./_process_options.ts";

/** Everything a process-mode child is started with. */
export interface ProcessSettings
  extends RemoteSettings, CheckedProcessOptions {}

/** The child's entry, wherever this package was loaded from. */
const CHILD_URL = new URL("./_child_entry.ts", import.meta.url);

/**
 * The arguments of `deno` for a child: least privilege, no prompt, no shell,
 * and the configuration (import map, lockfile) of the callback module's own
 * project, never this package's.
 *
 * @throws {TypeError} If the module's path has a comma, which no --allow-read list can hold.
 */
export function childArgs(
  settings: ProcessSettings,
  writePiece: number | undefined,
): string[] {
  const { url, permissionFlags, v8Flags } = settings;
  const args = ["run", "--no-prompt"];
  const config = projectConfig(url);
  args.push(config === undefined ? "--no-config" : `--config=${config}`);
  const read = moduleReadFlag(url, permissionFlags, settings.owner);
  if (read !== undefined) args.push(read);
  // A remote module, and this package's own entry when it was loaded from a
  // host Deno does not allow by default.
  const hosts = new Set(
    [url, CHILD_URL].filter((u) => /^https?:$/.test(u.protocol)).map((u) =>
      u.host
    ),
  );
  if (hosts.size > 0) args.push(`--allow-import=${[...hosts].join(",")}`);
  args.push(...permissionFlags);
  if (v8Flags.length > 0) args.push(`--v8-flags=${v8Flags.join(",")}`);
  args.push(CHILD_URL.href);
  if (writePiece !== undefined) args.push(`--write-piece=${writePiece}`);
  return args;
}

/**
 * The `deno.json` or `deno.jsonc` nearest to a local callback module, where
 * this process may look, so that the child resolves the module's imports as
 * its project does (thread and serial modes use the parent's configuration).
 */
function projectConfig(url: URL): string | undefined {
  if (url.protocol !== "file:") return undefined;
  let dir = decodeURIComponent(url.pathname).replace(/\/[^/]*$/, "");
  while (dir !== "") {
    for (const name of ["deno.json", "deno.jsonc"]) {
      const path = `${dir}/${name}`;
      const read = Deno.permissions.querySync({ name: "read", path });
      if (read.state !== "granted") return undefined;
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // Not here: look further up.
      }
    }
    dir = dir.replace(/\/[^/]*$/, "");
  }
  return undefined;
}

/**
 * The variables Deno itself reads (its cache, proxies, certificates, auth
 * tokens): a child gets the parent's, so that an installed package's child
 * finds the cache its parent uses, while the callback sees only `env`.
 */
const RUNTIME_ENV = [
  "DENO_DIR",
  "DENO_CERT",
  "DENO_TLS_CA_STORE",
  "DENO_AUTH_TOKENS",
  "DENO_NO_UPDATE_CHECK",
  "NPM_CONFIG_REGISTRY",
  "XDG_CACHE_HOME",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
];

/** A child's environment, and what the child must hide from the callback. */
export interface ChildEnv {
  /** The variables it is started with (over the parent's, with `inherit`). */
  readonly env: Record<string, string>;
  /** Whether it inherits the parent's environment rather than starting from none. */
  readonly inherit: boolean;
  /** Variables the child deletes before the callback module loads. */
  readonly hide: string[];
  /** With `inherit`: the only variables the child keeps, where it may list them. */
  readonly keep: string[] | undefined;
}

/**
 * A child's environment. Where this process may read Deno's own settings,
 * the child starts with those and `env` only, and hides the former from the
 * callback. Where it may not (a program run with no --allow-env, as the
 * README's permissions are), the child inherits this process's environment,
 * which needs no permission, so that it finds the same module cache (and
 * JSR_URL, proxies, certificates) and an installed package runs offline; it
 * then deletes every variable but `env` that the callback could read.
 *
 * @param permissionFlags The child's permission flags, for the variables an
 * `--allow-env=` list lets the callback read.
 */
export function childEnv(
  env: Record<string, string> | undefined,
  permissionFlags: readonly string[] = [],
): ChildEnv {
  const runtime: Record<string, string> = {};
  let readable = true;
  for (const variable of RUNTIME_ENV) {
    if (env !== undefined && Object.hasOwn(env, variable)) continue;
    // Only where reading cannot prompt the user.
    const state = Deno.permissions.querySync({ name: "env", variable }).state;
    if (state !== "granted") {
      readable = false;
      break;
    }
    const value = Deno.env.get(variable);
    if (value !== undefined) runtime[variable] = value;
  }
  if (readable) {
    return {
      env: { ...runtime, ...env },
      inherit: false,
      hide: Object.keys(runtime),
      keep: undefined,
    };
  }
  const keep = Object.keys(env ?? {});
  const listed = permissionFlags.find((f) => f.startsWith("--allow-env="));
  const hide = listed === undefined ? [] : listed
    .slice("--allow-env=".length)
    .split(",")
    .filter((name) => !keep.includes(name));
  return { env: { ...env }, inherit: true, hide, keep };
}
