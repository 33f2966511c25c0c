// Copyright the @ocycle/core authors. MIT license.
// Where the command line finds its Redis URL: `--redis URL`, `--redis-env
// NAME`, `--redis-file PATH`, or else the REDIS_URL environment variable. A
// URL holds a password more often than not, and a command line is seen by
// every user of the machine (ps, /proc) and kept in shell history, so the
// other three exist; exactly one is used, and no message ever shows a
// password (only the URL redacted by redactUrl, which shows a value that is
// no URL not at all).

import { checkRedisUrl, redactUrl } from "../fleet/_url.ts";
import { message } from "./_common.ts";

/** The environment variable read when no flag names the URL. */
export const REDIS_URL_VARIABLE = "REDIS_URL";

/** The flags that name the Redis URL, each a source of it. */
export const REDIS_SOURCE_FLAGS = [
  "--redis",
  "--redis-env",
  "--redis-file",
] as const;

/** One of {@linkcode REDIS_SOURCE_FLAGS}. */
export type RedisSourceFlag = typeof REDIS_SOURCE_FLAGS[number];

/** The environment as the command line reads it; tests give their own. */
export interface Environment {
  /** Whether `name` may be read: false where `--allow-env` does not grant it. */
  allowed(name: string): boolean;
  /** The variable's value, `undefined` if it is not set. */
  get(name: string): string | undefined;
}

/** The process's environment, read only where `--allow-env` grants it (no prompt). */
export const PROCESS_ENV: Environment = {
  allowed: (name) =>
    Deno.permissions.querySync({ name: "env", variable: name }).state ===
      "granted",
  get: (name) => Deno.env.get(name),
};

/** A Redis URL and how to name where it came from in a message. */
export interface RedisSource {
  url: string;
  /** `--redis redis://:***@host`, `--redis-env NAME`, `--redis-file PATH` or `REDIS_URL`. */
  label: string;
}

/** A bad source of the URL; the caller turns it into its UsageError. */
export class RedisSourceError extends Error {
  /** The error's name. */
  override readonly name = "RedisSourceError";
}

/**
 * The URL from the one flag given, else from REDIS_URL; `undefined` if
 * neither is there (the caller says what it needs). The URL is checked.
 *
 * @param given The value of each source flag, `undefined` if not given.
 * @throws {RedisSourceError} If two flags are given, or the one given
 * cannot be read or holds no Redis URL; the message shows no password.
 */
export function readRedisSource(
  given: Readonly<Record<RedisSourceFlag, string | undefined>>,
  env: Environment,
): RedisSource | undefined {
  const flags = REDIS_SOURCE_FLAGS.filter((flag) => given[flag] !== undefined);
  if (flags.length > 1) {
    // Their values are not shown: one may hold the password.
    throw new RedisSourceError(
      `give the Redis URL once: ${flags.join(" and ")} were ${
        flags.length === 2 ? "both" : "all"
      } given`,
    );
  }
  let source: RedisSource | undefined;
  const flag = flags[0];
  if (flag === "--redis") {
    const url = given["--redis"]!;
    source = { url, label: `--redis ${redactUrl(url)}` };
  } else if (flag === "--redis-env") {
    source = fromEnv(given["--redis-env"]!, env, true);
  } else if (flag === "--redis-file") {
    source = fromFile(given["--redis-file"]!);
  } else if (env.allowed(REDIS_URL_VARIABLE)) {
    source = fromEnv(REDIS_URL_VARIABLE, env, false);
  }
  if (source !== undefined) {
    try {
      checkRedisUrl(source.url, flag === "--redis" ? flag : source.label);
    } catch (error) {
      throw new RedisSourceError(message(error), { cause: error });
    }
  }
  return source;
}

function fromEnv(
  name: string,
  env: Environment,
  named: boolean,
): RedisSource | undefined {
  const label = named ? `--redis-env ${name}` : name;
  if (name === "" || name.includes("=") || name.includes("\0")) {
    throw new RedisSourceError(
      `--redis-env must name an environment variable: received "${name}"`,
    );
  }
  if (!env.allowed(name)) {
    throw new RedisSourceError(
      `${label}: the environment variable ${name} cannot be read; run deno with --allow-env=${name} (or -A)`,
    );
  }
  const url = env.get(name);
  if (url === undefined) {
    if (!named) return undefined;
    throw new RedisSourceError(
      `${label}: the environment variable ${name} is not set`,
    );
  }
  if (url.trim() === "") {
    throw new RedisSourceError(
      `${label}: the environment variable ${name} is empty`,
    );
  }
  return { url: url.trim(), label };
}

function fromFile(path: string): RedisSource {
  const label = `--redis-file ${path}`;
  if (path === "") {
    throw new RedisSourceError(`--redis-file must not be empty: received ""`);
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.NotCapable ||
          error instanceof Deno.errors.PermissionDenied
      ? `not permitted (run deno with --allow-read=${path}, or -A)`
      : message(error);
    throw new RedisSourceError(`${label} cannot be read: ${why}`);
  }
  const url = (text.split(/\r?\n/, 1)[0] ?? "").trim();
  if (url === "") {
    throw new RedisSourceError(`${label} holds no URL on its first line`);
  }
  return { url, label };
}
