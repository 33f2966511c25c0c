// Copyright the @ocycle/core authors. MIT license.
// A redis-server of a test's own, on a free loopback port, without
// persistence, started and stopped by the test; and whether there is one to
// start. Without redis-server the Redis tests are skipped (and say why),
// except under CI=true, where they fail: .ci/run installs it.

const encoder = new TextEncoder();

/** Whether CI=true: then the Redis tests run, whether redis-server is there or not. */
export const CI = Deno.env.get("CI") === "true";

/** Whether redis-server can be started here. */
export const hasRedis = await commandExists("redis-server");

/** Whether openssl can make the certificates of a TLS server here. */
export const hasOpenssl = await commandExists("openssl", "version");

/**
 * The `ignore` of a test file's Redis tests: skipped, with a note naming the
 * file, where redis-server is missing outside CI; under CI a test says it is
 * missing and fails.
 */
export function skipWithoutRedis(file: string): boolean {
  if (hasRedis) return false;
  if (CI) {
    Deno.test(`${file}: redis-server is installed (CI=true)`, () => {
      throw new Error(
        "redis-server is missing and CI=true: the Redis tests must run in CI (.ci/run installs it)",
      );
    });
    return false;
  }
  console.warn(
    `${file}: redis-server is not installed, so the tests against a server are skipped (apt-get install -y redis-server)`,
  );
  return true;
}

export async function commandExists(
  name: string,
  versionFlag = "--version",
): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(name, {
      args: [versionFlag],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** A loopback port nothing listens on now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A redis-server of the test's own, on a loopback port, without persistence. */
export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly #extra: string[];
  /** The CA that signed the server's certificate, when it speaks TLS only. */
  readonly caCert: string | undefined;
  #child: Deno.ChildProcess | null = null;

  private constructor(
    port: number,
    dir: string,
    extra: string[],
    caCert: string | undefined,
  ) {
    this.port = port;
    this.dir = dir;
    this.#extra = extra;
    this.caCert = caCert;
  }

  static async start(
    extra: string[] = [],
    { tls = false } = {},
  ): Promise<RedisServer> {
    const dir = await Deno.makeTempDir({ prefix: "ocycle_redis_" });
    const port = freePort();
    let caCert: string | undefined;
    if (tls) {
      await makeCertificates(dir);
      caCert = await Deno.readTextFile(`${dir}/ca.crt`);
      extra = [
        "--tls-port",
        String(port),
        "--tls-cert-file",
        `${dir}/server.crt`,
        "--tls-key-file",
        `${dir}/server.key`,
        "--tls-ca-cert-file",
        `${dir}/ca.crt`,
        "--tls-auth-clients",
        "no",
        ...extra,
      ];
    }
    const server = new RedisServer(port, dir, extra, caCert);
    await server.restart();
    return server;
  }

  get url(): string {
    return this.caCert === undefined
      ? `redis://127.0.0.1:${this.port}`
      : `rediss://localhost:${this.port}`;
  }

  /** Starts the server (again, on the same port) and waits until it answers. */
  async restart(): Promise<void> {
    this.#child = new Deno.Command("redis-server", {
      args: [
        "--port",
        this.caCert === undefined ? String(this.port) : "0",
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        this.dir,
        "--logfile",
        `${this.dir}/redis.log`,
        ...this.#extra,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const deadline = Date.now() + 10_000;
    while (!(await this.#answers())) {
      if (Date.now() > deadline) {
        const log = await Deno.readTextFile(`${this.dir}/redis.log`).catch(
          () => "",
        );
        await this.stop();
        throw new Error(`redis-server did not answer PING:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Any reply to PING (PONG, or NOAUTH with a password) means it is up. */
  async #answers(): Promise<boolean> {
    let conn: Deno.Conn | undefined;
    try {
      conn = this.caCert === undefined
        ? await Deno.connect({ hostname: "127.0.0.1", port: this.port })
        : await Deno.connectTls({
          hostname: "localhost",
          port: this.port,
          caCerts: [this.caCert],
        });
      await conn.write(encoder.encode("PING\r\n"));
      const n = await conn.read(new Uint8Array(64));
      return n !== null && n > 0;
    } catch {
      return false;
    } finally {
      conn?.close();
    }
  }

  /** Sends `signal` to the server if it runs (SIGSTOP and SIGCONT freeze and thaw it). */
  signal(signal: Deno.Signal): void {
    try {
      this.#child?.kill(signal);
    } catch {
      // already gone
    }
  }

  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    this.#child = null;
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
    await child.status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** A CA, and a certificate it signs for localhost, with openssl. */
async function makeCertificates(dir: string): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
  );
  for (
    const args of [
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        .concat(["-subj", "/CN=ocycle test CA", "-keyout", "ca.key"])
        .concat(["-out", "ca.crt"]),
      ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
        .concat(["-keyout", "server.key", "-out", "server.csr"]),
      ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey"]
        .concat(["ca.key", "-CAcreateserial", "-days", "1"])
        .concat(["-extfile", "ext.cnf", "-out", "server.crt"]),
    ]
  ) {
    const { success, stderr } = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!success) {
      throw new Error(`openssl failed: ${new TextDecoder().decode(stderr)}`);
    }
  }
}
