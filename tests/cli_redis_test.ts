// Copyright the @ocycle/core authors. MIT license.
// The command line of issue 11 against a real redis-server: `ocycle worker`
// processes and an `ocycle --redis` producer, as a user runs them, with real
// signals. Without redis-server the tests are skipped (and say why), except
// under CI=true, where they fail.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { RedisClient } from "../src/fleet/_client.ts";
import { xpending } from "../src/fleet/_streams.ts";
import { freePort, RedisServer, skipWithoutRedis } from "./_redis_server.ts";

const ignore = skipWithoutRedis("cli_redis_test.ts");
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const IMPORT_MAP = new URL("../.ci/import_map.json", import.meta.url).pathname;
const FLEET = new URL("./fixtures/cli/fleet.ts", import.meta.url).pathname;
const STREAM = "jobs";
const decoder = new TextDecoder();

/** Whether `setsid` runs here: a worker then has a process group of its own. */
const SETSID = await new Deno.Command("setsid", { args: ["true"] }).output()
  .then((o) => o.success, () => false);

function denoRun(...args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--no-lock",
    `--import-map=${IMPORT_MAP}`,
    CLI,
    ...args,
  ];
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/**
 * An `ocycle worker` process in a session (and process group) of its own, as
 * a service manager starts one: signals reach it alone. Its stderr is kept.
 */
class WorkerProcess {
  readonly name: string;
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;
  stderr = "";

  /**
   * @param url The Redis URL, given with `--redis`; `undefined` for none
   * (`args` or `env` then give it).
   */
  constructor(
    url: string | undefined,
    name: string,
    args: string[],
    env?: Record<string, string>,
  ) {
    this.name = name;
    const argv = denoRun(
      "worker",
      ...(url === undefined ? [] : ["--redis", url]),
      ...["--stream", STREAM, "--name", name, ...args],
    );
    const child = new Deno.Command(SETSID ? "setsid" : argv[0]!, {
      args: SETSID ? argv : argv.slice(1),
      ...(env === undefined ? {} : { clearEnv: true, env }),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#reading = (async () => {
      await child.stdout.cancel();
      for await (
        const text of child.stderr.pipeThrough(new TextDecoderStream())
      ) this.stderr += text;
    })();
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Waits until its stderr matches, for at most `ms`. */
  async waitFor(pattern: RegExp, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (!pattern.test(this.stderr)) {
      if (Date.now() > end) {
        throw new Error(
          `worker ${this.name} never wrote ${pattern}:\n${this.stderr}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Its exit code, once its stderr is read to the end. */
  async status(): Promise<number> {
    const { code } = await this.#child.status;
    await this.#reading;
    return code;
  }

  /** Its exit code; if it has not exited within `ms`, it is killed and this throws. */
  async exited(ms = 30_000): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new Error(
            `worker ${this.name} did not exit within ${ms} ms:\n${this.stderr}`,
          ),
        );
      }, ms);
    });
    try {
      return await Promise.race([this.status(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills it if it still runs (a failed test), and waits for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // It has exited, as it should have.
    }
    await this.status();
  }
}

/** Runs the producer, `ocycle --redis ...`, with `input` on its stdin. */
async function produce(
  url: string | undefined,
  args: string[],
  input: Uint8Array,
  env?: Record<string, string>,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const argv = denoRun(
    ...(url === undefined ? [] : ["--redis", url]),
    ...["--stream", STREAM, "--module", FLEET, ...args],
  );
  // A producer that hangs is killed after a minute, and the test fails.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 60_000);
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    ...(env === undefined ? {} : { clearEnv: true, env }),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: controller.signal,
  }).spawn();
  const writer = child.stdin.getWriter();
  const feeding = writer.write(input).then(() => writer.close()).catch(
    () => {},
  );
  const [output] = await Promise.all([child.output(), feeding]).finally(() =>
    clearTimeout(timer)
  );
  return {
    code: output.code,
    stdout: output.stdout,
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * The clients waiting for chunks (blocked in XREADGROUP): the workers that are
 * ready. (Redis 7.0 lists a consumer in XINFO CONSUMERS only once it is
 * served.)
 */
async function waiting(admin: RedisClient): Promise<number> {
  const reply = await admin.command("CLIENT", "LIST");
  const text = typeof reply === "string" ? reply : decoder.decode(
    reply as Uint8Array,
  );
  return text.match(/ cmd=xreadgroup /g)?.length ?? 0;
}

async function until(check: () => Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The counts a worker's summary line gives. */
function summary(worker: WorkerProcess): { claimed: number; done: number } {
  const match = /(\d+) chunks claimed .*: (\d+) done, (\d+) failed/.exec(
    worker.stderr,
  );
  if (match === null) {
    throw new Error(`no summary from ${worker.name}:\n${worker.stderr}`);
  }
  return { claimed: Number(match[1]), done: Number(match[2]) };
}

Deno.test({
  name:
    "ocycle --redis -k sends stdin through Redis to two ocycle workers and writes their outputs in input order",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const admin = await RedisClient.connect(server.url);
    try {
      await using a = new WorkerProcess(server.url, "a", [
        ...["--module", FLEET, "-j", "2"],
      ]);
      await using b = new WorkerProcess(server.url, "b", [
        ...["--module", FLEET, "--mode", "thread", "-j", "2"],
      ]);
      await until(async () => await waiting(admin) === 2, 20_000, "workers");
      const input = randomBytes(300_000);
      const run = await produce(
        server.url,
        ["-s", "10000", "--clip", "-k"],
        input,
      );
      assertEquals(run.code, 0, run.stderr);
      assertEquals(run.stdout.length, input.length, run.stderr);
      assert(run.stdout.every((byte, i) => byte === input[i]), "in order");
      assertMatch(run.stderr, /30 chunks: 30 done, 0 failed/);

      a.kill("SIGTERM");
      b.kill("SIGINT");
      assertEquals(await a.exited(), 143, a.stderr);
      assertEquals(await b.exited(), 130, b.stderr);
      const [sa, sb] = [summary(a), summary(b)];
      // Both took part, and every chunk was done once.
      assert(sa.done > 0 && sb.done > 0, `${a.stderr}\n${b.stderr}`);
      assertEquals(sa.done + sb.done, 30, `${a.stderr}\n${b.stderr}`);
      assertMatch(a.stderr, /stopped by SIGTERM/);
      assertMatch(b.stderr, /stopped by SIGINT/);
      assertEquals((await xpending(admin, STREAM, "ocycle")).count, 0);
    } finally {
      await admin.close();
    }
  },
});

Deno.test({
  name:
    "ocycle worker on SIGTERM finishes the chunk it runs, hands back the rest and exits 143; the other worker does them",
  ignore: ignore || !SETSID,
  async fn() {
    await using server = await RedisServer.start();
    const admin = await RedisClient.connect(server.url);
    try {
      const args = ["--module", FLEET, "--export", "slow", "-j", "1"];
      await using a = new WorkerProcess(server.url, "a", args);
      await until(async () => await waiting(admin) === 1, 20_000, "a");
      const input = randomBytes(12 * 1000);
      const producing = produce(
        server.url,
        ["-s", "1000", "--clip", "-k", "-q"],
        input,
      );
      await a.waitFor(/running chunk \d+/);
      // b starts only now, so that a holds chunks when it is stopped.
      await using b = new WorkerProcess(server.url, "b", args);
      a.kill("SIGTERM");
      assertEquals(await a.exited(), 143, a.stderr);
      assertMatch(a.stderr, /SIGTERM: taking no more chunks/);
      assertMatch(a.stderr, /handed back over [\d.]+ s; stopped by SIGTERM/);
      // The chunk it was running when the signal came was finished.
      assert(summary(a).done >= 1, a.stderr);

      const run = await producing;
      assertEquals(run.code, 0, `${run.stderr}\n${a.stderr}\n${b.stderr}`);
      assertEquals(run.stdout, input);
      b.kill("SIGTERM");
      assertEquals(await b.exited(), 143, b.stderr);
      // At least once: a chunk a handed back while its pool ran it may run twice.
      assert(
        summary(a).done + summary(b).done >= 12,
        `${a.stderr}\n${b.stderr}`,
      );
      assertEquals((await xpending(admin, STREAM, "ocycle")).count, 0);
    } finally {
      await admin.close();
    }
  },
});

Deno.test({
  name:
    "ocycle worker on a second SIGTERM hands back the chunks it runs at once; another worker takes them over",
  ignore: ignore || !SETSID,
  async fn() {
    await using server = await RedisServer.start();
    const admin = await RedisClient.connect(server.url);
    try {
      await using a = new WorkerProcess(server.url, "a", [
        ...["--module", FLEET, "--export", "stuck", "-j", "1"],
      ]);
      await until(async () => await waiting(admin) === 1, 20_000, "a");
      const input = randomBytes(6 * 1000);
      const producing = produce(
        server.url,
        ["-s", "1000", "--clip", "-k", "-q"],
        input,
      );
      await a.waitFor(/running chunk \d+/);
      await using b = new WorkerProcess(server.url, "b", [
        ...["--module", FLEET, "-j", "1"],
      ]);
      a.kill("SIGTERM");
      await a.waitFor(/SIGTERM: taking no more chunks/);
      // Past the window in which a second signal counts as the same one.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      const second = Date.now();
      a.kill("SIGTERM");
      assertEquals(await a.exited(), 143, a.stderr);
      // Long before its 10 s chunk could have finished.
      assert(Date.now() - second < 5000, a.stderr);
      assertMatch(a.stderr, /SIGTERM again: handing back everything now/);
      assertMatch(a.stderr, /: 0 done, .* [1-9]\d* handed back over/);

      const run = await producing;
      assertEquals(run.code, 0, `${run.stderr}\n${a.stderr}\n${b.stderr}`);
      assertEquals(run.stdout, input);
      b.kill("SIGTERM");
      assertEquals(await b.exited(), 143, b.stderr);
      assertMatch(b.stderr, /\(([1-9]\d*) taken over from stalled workers\)/);
      assertEquals(summary(b).done, 6, b.stderr);
      assertEquals((await xpending(admin, STREAM, "ocycle")).count, 0);
    } finally {
      await admin.close();
    }
  },
});

Deno.test({
  name:
    "ocycle --redis on SIGTERM reads no more, writes the outputs of what it read, exits 143 and leaves nothing in Redis",
  ignore,
  async fn() {
    await using server = await RedisServer.start();
    const admin = await RedisClient.connect(server.url);
    try {
      await using a = new WorkerProcess(server.url, "a", [
        ...["--module", FLEET, "--export", "slow", "-j", "1"],
      ]);
      await until(async () => await waiting(admin) === 1, 20_000, "a");
      const argv = denoRun(
        ...["--redis", server.url, "--stream", STREAM, "--module", FLEET],
        ...["-s", "1000", "--clip", "-k"],
      );
      const producer = new Deno.Command(argv[0]!, {
        args: argv.slice(1),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const output = producer.output();
      const writer = producer.stdin.getWriter();
      try {
        // Three chunks, and stdin left open, as from a microphone.
        const input = randomBytes(3000);
        await writer.write(input);
        await a.waitFor(/running chunk 0/);
        producer.kill("SIGTERM");
        const { code, stdout, stderr } = await output;
        const text = decoder.decode(stderr);
        assertEquals(code, 143, `${text}\n${a.stderr}`);
        assertEquals(stdout, input);
        assertMatch(text, /SIGTERM: reading no more input/);
        assertMatch(
          text,
          /3 chunks: 3 done, 0 failed.*input stopped by SIGTERM/,
        );
      } finally {
        await writer.close().catch(() => {});
        await output.catch(() => {});
      }
      a.kill("SIGTERM");
      assertEquals(await a.exited(), 143, a.stderr);
      assertEquals((await xpending(admin, STREAM, "ocycle")).count, 0);
      // The producer's result stream went with it.
      assertEquals(await admin.command("KEYS", `${STREAM}:results:*`), []);
    } finally {
      await admin.close();
    }
  },
});

Deno.test("ocycle worker whose Redis is unreachable stops within seconds of a second SIGTERM", async () => {
  // Each hand-back would wait for a connection that never comes.
  await using a = new WorkerProcess(
    `redis://127.0.0.1:${freePort()}`,
    "a",
    ["--module", FLEET],
  );
  await a.waitFor(/started: /);
  a.kill("SIGTERM");
  await a.waitFor(/SIGTERM: taking no more chunks/);
  await new Promise((resolve) => setTimeout(resolve, 1200));
  const second = Date.now();
  a.kill("SIGTERM");
  assertEquals(await a.exited(), 143, a.stderr);
  const took = Date.now() - second;
  assert(took < 8000, `exited ${took} ms after the second SIGTERM`);
  // runWorker's abort gives Redis 3 s in all (the CLI's own 5 s bound is
  // the belt behind it).
  assertMatch(a.stderr, /gave up|giving up/);
  assertMatch(a.stderr, /stopped by SIGTERM/);
});

Deno.test("ocycle worker refuses a bad command line with exit code 2, and explains itself with --help", async (t) => {
  const run = async (args: string[]) => {
    const argv = denoRun(...args);
    const output = await new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      // Whatever the tester's shell holds, no REDIS_URL.
      clearEnv: true,
      env: environment(),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  };
  const cases: [string[], string][] = [
    [
      ["worker", "--stream", "s", "--module", FLEET],
      "ocycle worker: ocycle worker needs --redis <url>",
    ],
    [
      ["worker", "--redis", "redis://127.0.0.1:1", "--stream", "s"],
      "ocycle worker needs --module ./handler.ts",
    ],
    [
      ["worker", "--redis", "redis://h", "--stream", "s", "--module", "no.ts"],
      "ocycle worker: --module no.ts: no such file",
    ],
    [
      [
        "--redis",
        "redis://h",
        "--stream",
        "s",
        "--module",
        FLEET,
        "--mode=thread",
      ],
      "ocycle: --mode thread is for a local --module",
    ],
    // Checked by runWorker (as it starts, before it connects) and by the
    // emitter's checker, told by the flag and the text typed.
    [
      [
        "worker",
        "--redis",
        "redis://h",
        "--stream",
        "s",
        "--module",
        FLEET,
        "-j",
        "0",
      ],
      `ocycle worker: --pool must be a positive integer: received "0"\nRun "ocycle worker --help"`,
    ],
    [
      [
        "worker",
        "--redis",
        "redis://h",
        "--stream",
        "s",
        "--module",
        FLEET,
        "--name",
        "gpu 1",
      ],
      "ocycle worker: --name must be a name of 1 to 200 characters without spaces",
    ],
    [
      [
        "--redis",
        "redis://h",
        "--stream",
        "s",
        "--module",
        FLEET,
        "--in-flight",
        "0",
      ],
      `ocycle: --in-flight must be a positive integer: received "0"`,
    ],
  ];
  for (const [args, fragment] of cases) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await run(args);
      assertEquals(code, 2, stderr);
      assertStringIncludes(stderr, fragment);
      assertEquals(stdout, "");
    });
  }
  await t.step("--help", async () => {
    const { code, stdout } = await run(["worker", "--help"]);
    assertEquals(code, 0);
    assertStringIncludes(stdout, "ocycle worker --redis <url> --stream <name>");
  });
});

/** This process's environment without REDIS_URL, plus `extra`. */
function environment(extra: Record<string, string> = {}) {
  const env = Deno.env.toObject();
  delete env.REDIS_URL;
  return { ...env, ...extra };
}

/** The command lines of every process, as `ps` shows them to any user. */
async function commandLines(): Promise<string> {
  const output = await new Deno.Command("ps", {
    args: ["-eo", "pid,args"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return decoder.decode(output.stdout);
}

// RELIABILITY item 50 (issue 15, item 6): credentials from the environment
// or a file; no password on a command line, in a log line or in an error.
Deno.test({
  name:
    "ocycle worker and ocycle take a password-protected Redis URL from REDIS_URL, --redis-env or --redis-file, and never show the password (ps, logs, errors, summaries)",
  ignore,
  async fn() {
    const password = `pw-${crypto.randomUUID()}`;
    await using server = await RedisServer.start(["--requirepass", password]);
    const url = `redis://:${password}@127.0.0.1:${server.port}`;
    const admin = await RedisClient.connect(url);
    const dir = await Deno.makeTempDir({ prefix: "ocycle_redis_secret_" });
    try {
      const file = `${dir}/redis_url`;
      await Deno.writeTextFile(file, `${url}\n`, { mode: 0o600 });
      // One worker from REDIS_URL, one from a file; each in process mode, so
      // that its children's command lines are looked at too.
      await using a = new WorkerProcess(
        undefined,
        "a",
        ["--module", FLEET, "-j", "2"],
        environment({ REDIS_URL: url }),
      );
      await using b = new WorkerProcess(
        undefined,
        "b",
        ["--redis-file", file, "--module", FLEET, "-j", "2"],
        environment(),
      );
      await until(async () => await waiting(admin) === 2, 20_000, "workers");
      const seen = await commandLines();
      assertMatch(seen, new RegExp(`^\\s*${a.pid} .*worker`, "m"));
      assertMatch(seen, new RegExp(`^\\s*${b.pid} .*--redis-file`, "m"));

      // The producer from --redis-env; ps is read all the while it runs.
      const input = randomBytes(200_000);
      const producing = produce(
        undefined,
        ["--redis-env", "OCYCLE_TEST_URL", "-s", "10000", "--clip", "-k"],
        input,
        environment({ OCYCLE_TEST_URL: url }),
      );
      let settled = false;
      const during: string[] = [];
      producing.finally(() => settled = true);
      while (!settled) {
        during.push(await commandLines());
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const run = await producing;
      assertEquals(run.code, 0, run.stderr);
      assert(run.stdout.every((byte, i) => byte === input[i]), "in order");
      assertEquals(run.stdout.length, input.length);
      assertMatch(run.stderr, /20 chunks: 20 done, 0 failed/);
      assert(
        during.some((text) => text.includes("--redis-env OCYCLE_TEST_URL")),
        "ps never saw the producer",
      );

      // A worker with a wrong password says so, without the password.
      const wrong = `wrong-${crypto.randomUUID()}`;
      await using c = new WorkerProcess(
        undefined,
        "c",
        ["--module", FLEET],
        environment({
          REDIS_URL: `redis://default:${wrong}@127.0.0.1:${server.port}`,
        }),
      );
      await c.waitFor(/WRONGPASS|AUTH/);
      c.kill("SIGKILL");
      await c.status();

      a.kill("SIGTERM");
      b.kill("SIGTERM");
      assertEquals(await a.exited(), 143, a.stderr);
      assertEquals(await b.exited(), 143, b.stderr);
      assertEquals(summary(a).done + summary(b).done, 20);
      // Usage errors: exit 2, the source named, the value never shown.
      const bad = async (args: string[], env: Record<string, string>) => {
        const argv = denoRun("worker", ...args, "--stream", STREAM);
        const output = await new Deno.Command(argv[0]!, {
          args: [...argv.slice(1), "--module", FLEET],
          clearEnv: true,
          env: environment(env),
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        return { code: output.code, stderr: decoder.decode(output.stderr) };
      };
      const bare = await bad([], { REDIS_URL: password });
      assertEquals(bare.code, 2, bare.stderr);
      assertStringIncludes(bare.stderr, "REDIS_URL must be redis://");
      const unset = await bad(["--redis-env", "OCYCLE_NO_SUCH_VAR"], {});
      assertEquals(unset.code, 2, unset.stderr);
      assertStringIncludes(
        unset.stderr,
        "--redis-env OCYCLE_NO_SUCH_VAR: the environment variable OCYCLE_NO_SUCH_VAR is not set",
      );

      for (
        const [what, text] of [
          ["ps", [seen, ...during].join("\n")],
          ["the producer's stderr", run.stderr],
          ["worker a's stderr", a.stderr],
          ["worker b's stderr", b.stderr],
          ["worker c's stderr", c.stderr],
          ["a usage error", bare.stderr + unset.stderr],
        ] as const
      ) {
        assert(
          !text.includes(password),
          `${what} shows the password:\n${text}`,
        );
        assert(!text.includes(wrong), `${what} shows the password:\n${text}`);
      }
      // The workers did say where they connected, redacted.
      assertStringIncludes(a.stderr + b.stderr + c.stderr, ":***@127.0.0.1");
    } finally {
      await admin.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
