// Copyright the @ocycle/core authors. MIT license.
// A Redis URL read once: where to connect, who to be, which database; and the
// same URL with its password redacted, the only form any message shows.

/** Where and how to connect, read from a `redis://` or `rediss://` URL. */
export interface RedisTarget {
  hostname: string;
  port: number;
  tls: boolean;
  /** `undefined` when the URL names no user (AUTH with the password alone). */
  username: string | undefined;
  password: string | undefined;
  db: number;
  /** The URL with its password replaced by `***`, for messages. */
  redacted: string;
}

/** The default port of Redis. */
export const DEFAULT_PORT = 6379;

/**
 * Reads `redis://[user[:password]@]host[:port][/db]` (or `rediss://` for TLS).
 *
 * @throws {TypeError} If the URL is not one, naming it with its password redacted.
 */
export function parseRedisUrl(url: string): RedisTarget {
  return readRedisUrl(
    url,
    (why, redacted) =>
      new TypeError(
        `Cannot connect to Redis as ${why}: received "${redacted}"`,
      ),
  );
}

/** What a Redis URL looks like, for messages. */
export const REDIS_URL_FORM =
  "redis://[user:password@]host[:port][/db] or rediss://... for TLS";

/**
 * Reads a Redis URL as {@linkcode parseRedisUrl} does, for a caller that
 * names where it came from: `subject` is the option or the flag (`--redis`,
 * `--redis-env NAME`, `REDIS_URL`).
 *
 * @throws {TypeError} `<subject> must be redis://...: <why>: received "<the URL redacted>"`.
 */
export function checkRedisUrl(url: string, subject: string): RedisTarget {
  return readRedisUrl(url, (why, redacted) =>
    new TypeError(
      `${subject} must be ${REDIS_URL_FORM}: ${why}: received "${redacted}"`,
    ));
}

function readRedisUrl(
  url: string,
  error: (why: string, redacted: string) => TypeError,
): RedisTarget {
  const redacted = redactUrl(url);
  const bad = (why: string) => error(why, redacted);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw bad("the URL is not valid");
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw bad("the URL must start with redis:// or rediss://");
  }
  const hostname = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  if (hostname === "") throw bad("the URL names no host");
  const path = parsed.pathname.replace(/^\//, "");
  if (!/^\d*$/.test(path)) {
    throw bad("the path must be a database number");
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    throw bad("the URL must have no query or fragment");
  }
  let username: string | undefined;
  let password: string | undefined;
  try {
    username = parsed.username === ""
      ? undefined
      : decodeURIComponent(parsed.username);
    password = parsed.password === ""
      ? undefined
      : decodeURIComponent(parsed.password);
  } catch {
    throw bad("the user or password is not valid percent-encoding");
  }
  if (username !== undefined && password === undefined) {
    // `redis://secret@host` is the common shorthand for a password alone
    password = username;
    username = undefined;
  }
  return {
    hostname,
    port: parsed.port === "" ? DEFAULT_PORT : Number(parsed.port),
    tls: parsed.protocol === "rediss:",
    username,
    password,
    db: path === "" ? 0 : Number(path),
    redacted,
  };
}

/** What {@linkcode redactUrl} shows of a value that is no URL at all. */
export const NOT_A_URL = "(not a URL: not shown, as it may be a password)";

/**
 * `url` with its password (what stands between the user's `:`, or `//`, and
 * the last `@`) and any query or fragment replaced by `***`; a value with no
 * `scheme://` is not shown at all, since it may be the bare password.
 */
export function redactUrl(url: string): string {
  const scheme = url.indexOf("://");
  if (scheme === -1 || !/^[a-z][a-z\d+.-]*$/i.test(url.slice(0, scheme))) {
    return NOT_A_URL;
  }
  const start = scheme + 3;
  // the last `@`: a password may hold `/` or `@`, a database number neither
  const at = url.lastIndexOf("@");
  // A query or a fragment (refused, but where other clients read
  // `?password=`) is not shown either.
  const rest = (from: number) => {
    const tail = url.slice(from);
    const query = tail.search(/[?#]/);
    return query === -1 ? tail : `${tail.slice(0, query + 1)}***`;
  };
  if (at < start) return url.slice(0, start) + rest(start);
  const userinfo = url.slice(start, at);
  const colon = userinfo.indexOf(":");
  return colon === -1
    ? `${url.slice(0, start)}***${rest(at)}`
    : `${url.slice(0, start + colon + 1)}***${rest(at)}`;
}
