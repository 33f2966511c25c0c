// Copyright the @ocycle/core authors. MIT license.
// The two errors of the Redis client: the server said no, or the connection
// is not there. Both name what a caller needs (the command, the redacted URL).

/** Options of {@linkcode RedisError} and {@linkcode RedisConnectionError}. */
export interface RedisErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
}

/** An error reply from the server to one command. */
export class RedisError extends Error {
  /** The error's name. */
  override readonly name = "RedisError";
  /** The command that failed, e.g. `"XADD"` (never its arguments). */
  readonly command: string;
  /** The server's message, e.g. `"WRONGTYPE Operation against a key ..."`. */
  readonly serverMessage: string;
  /** The first word of the server's message, e.g. `"WRONGTYPE"` or `"NOSCRIPT"`. */
  readonly code: string;

  /**
   * Creates the error of a command the server answered with an error.
   *
   * @param command The command's name.
   * @param serverMessage The server's message.
   */
  constructor(command: string, serverMessage: string) {
    super(`Redis replied to ${command} with an error: ${serverMessage}`);
    this.command = command;
    this.serverMessage = serverMessage;
    this.code = serverMessage.split(" ", 1)[0] ?? "";
  }
}

/** The connection to the server was lost, could not be made in time, or the client is closed. */
export class RedisConnectionError extends Error {
  /** The error's name. */
  override readonly name = "RedisConnectionError";
  /** The server's URL, its password redacted. */
  readonly url: string;

  /**
   * Creates the error of a connection lost, not made in time, or closed.
   *
   * @param url The server's URL, its password redacted.
   * @param message What happened, naming the URL.
   * @param options The cause.
   */
  constructor(url: string, message: string, options: RedisErrorOptions = {}) {
    super(message, options);
    this.url = url;
  }
}
