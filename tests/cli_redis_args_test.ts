// Copyright the @ocycle/core authors. MIT license.
// The command line of issue 11, as parsed: `ocycle worker ...` and the
// producer's `ocycle --redis ...`, with --retries; every bad one a UsageError
// that names the flag and the value. (Runs against a real redis-server are in
// cli_redis_test.ts.)
import {
  assert,
  assertEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  HELP,
  parseCliArgs,
  parseWorkerArgs,
  UsageError,
  WORKER_HELP,
} from "../src/cli/_args.ts";
import type { Environment } from "../src/cli/_redis_source.ts";

const URL_ = "redis://127.0.0.1:6379";
const WORKER = ["--redis", URL_, "--stream", "jobs", "--module", "./h.ts"];
const PRODUCER = ["--redis", URL_, "--stream", "jobs", "--module", "./h.ts"];

Deno.test("parseWorkerArgs() reads a worker's flags and applies defaults", async (t) => {
  await t.step("defaults", () => {
    assertEquals(parseWorkerArgs(WORKER), {
      url: URL_,
      stream: "jobs",
      group: undefined,
      module: "./h.ts",
      exportName: "default",
      name: undefined,
      mode: "process",
      pool: undefined,
      allow: {},
      timeout: undefined,
      quiet: false,
      help: false,
    });
  });
  await t.step("every flag, in every spelling", () => {
    const options = parseWorkerArgs([
      "--redis=rediss://user:pw@broker:6380/2",
      "--stream",
      "audio",
      "--module=./analyze.ts",
      "--group",
      "models",
      "--name",
      "gpu-1",
      "--mode",
      "process",
      "-j4",
      "--allow",
      "read=./models",
      "--allow",
      "net",
      "--timeout",
      "30s",
      "--export",
      "analyze",
      "-q",
    ]);
    assertEquals(options, {
      url: "rediss://user:pw@broker:6380/2",
      stream: "audio",
      group: "models",
      module: "./analyze.ts",
      exportName: "analyze",
      name: "gpu-1",
      mode: "process",
      pool: 4,
      allow: { read: ["./models"], net: true },
      timeout: 30_000,
      quiet: true,
      help: false,
    });
    assertEquals(parseWorkerArgs([...WORKER, "--jobs", "2"]).pool, 2);
    assertEquals(parseWorkerArgs([...WORKER, "--mode=thread"]).mode, "thread");
  });
  await t.step("--help needs nothing else", () => {
    assertEquals(parseWorkerArgs(["--help"]).help, true);
    assertEquals(parseWorkerArgs(["-h"]).help, true);
  });
});

Deno.test("parseWorkerArgs() rejects a bad worker command line, naming the flag and the value", async (t) => {
  const bad: [string[], string][] = [
    [
      ["--stream", "jobs", "--module", "./h.ts"],
      "ocycle worker needs --redis <url>: the Redis server to take chunks from",
    ],
    [
      ["--redis", URL_, "--module", "./h.ts"],
      "ocycle worker needs --stream <name>",
    ],
    [
      ["--redis", URL_, "--stream", "jobs"],
      "ocycle worker needs --module ./handler.ts",
    ],
    [[], "ocycle worker needs --redis"],
    [
      ["--redis", "http://host:6379", "--stream", "s", "--module", "h.ts"],
      `--redis must be redis://[user:password@]host[:port][/db] or rediss://... for TLS: the URL must start with redis:// or rediss://: received "http://host:6379"`,
    ],
    [
      // Only the redacted URL is ever shown.
      ["--redis", "redis://u:hunter2@h/x", "--stream", "s", "--module", "h"],
      `the path must be a database number: received "redis://u:***@h/x"`,
    ],
    [[...WORKER, "--stream", "other"], `--stream was given 2 times`],
    [
      ["--redis", URL_, "--stream", "", "--module", "h.ts"],
      `--stream must not be empty: received ""`,
    ],
    [[...WORKER, "--group="], `--group must not be empty: received ""`],
    [[...WORKER, "--name", ""], `--name must not be empty: received ""`],
    [
      [...WORKER, "--mode", "redis"],
      `--mode must be process, thread or serial: received "redis"`,
    ],
    [[...WORKER, "-j", "0"], `--pool must be a positive integer: received "0"`],
    [[...WORKER, "-j", "two"], `received "two"`],
    [
      [...WORKER, "--timeout", "soon"],
      `--timeout must be a duration such as 30 (seconds), 500ms, 2s or 1min: received "soon"`,
    ],
    [
      [...WORKER, "--mode", "thread", "--allow", "read"],
      "--allow is for --module with --mode process",
    ],
    [[...WORKER, "--allow", "root"], `received "root"`],
    [
      [...WORKER, "--size", "1K"],
      `unknown option "--size" for ocycle worker: it is the producer's`,
    ],
    [
      [...WORKER, "-k"],
      `unknown option "-k" for ocycle worker: it is the producer's`,
    ],
    [
      [...WORKER, "--frobnicate"],
      `unknown option "--frobnicate" for ocycle worker`,
    ],
    [[...WORKER, "extra"], `unexpected argument "extra"`],
    [[...WORKER, "--redis"], "--redis needs a value"],
    [[...WORKER, "-q=yes"], `-q takes no value: received "-q=yes"`],
  ];
  for (const [args, fragment] of bad) {
    await t.step(`rejects ${JSON.stringify(args)}`, () => {
      assertThrows(() => parseWorkerArgs(args), UsageError, fragment);
    });
  }
});

Deno.test("parseCliArgs() reads --redis and its companions", async (t) => {
  await t.step("the defaults are the emitter's", () => {
    const options = parseCliArgs(PRODUCER);
    assertEquals(options.redis, {
      url: URL_,
      stream: "jobs",
      group: undefined,
      inFlight: undefined,
    });
    assertEquals(options.module, "./h.ts");
    assertEquals([options.retries, options.retryDelay], [undefined, undefined]);
  });
  await t.step("with the chunking flags, -k, --timeout and --retries", () => {
    const options = parseCliArgs([
      ...PRODUCER,
      "--group",
      "models",
      "--in-flight=16",
      "-s",
      "64K",
      "--clip",
      "-k",
      "--timeout",
      "1min",
      "--retries",
      "3",
      "--retry-delay",
      "250ms",
    ]);
    assertEquals(options.redis, {
      url: URL_,
      stream: "jobs",
      group: "models",
      inFlight: 16,
    });
    assertEquals(
      [options.size, options.clip, options.keepOrder, options.timeout],
      [65536, true, true, 60_000],
    );
    assertEquals([options.retries, options.retryDelay], [3, 250]);
  });
  await t.step("--help needs nothing else", () => {
    assertEquals(parseCliArgs(["--redis", URL_, "--help"]).help, true);
  });
});

Deno.test("parseCliArgs() reads --retries for a local --module, and a zero --retry-delay", () => {
  const options = parseCliArgs([
    "--module",
    "h.ts",
    "--retries",
    "2",
    "--retry-delay",
    "0",
  ]);
  assertEquals([options.retries, options.retryDelay], [2, 0]);
  assertEquals(options.redis, undefined);
  assertEquals(
    parseCliArgs(["--module", "h.ts", "--retries=0"]).retries,
    0,
  );
});

Deno.test("parseCliArgs() rejects --redis without what it needs, or with what the workers take", async (t) => {
  const bad: [string[], string][] = [
    [
      ["--redis", URL_, "--stream", "jobs"],
      "--redis redis://127.0.0.1:6379 needs --module ./handler.ts",
    ],
    [
      ["--redis", "redis://:secret@h", "--module", "h.ts"],
      "--redis redis://:***@h needs --stream <name>",
    ],
    [
      [...PRODUCER, "--mode", "thread"],
      "--mode thread is for a local --module: with --redis the chunks run on the workers, so give it to them (ocycle worker --mode)",
    ],
    [
      ["--redis", URL_, "--stream", "s", "--exec", "wc -c"],
      `--exec "wc -c" cannot go through --redis`,
    ],
    [
      ["--redis", URL_, "--stream", "s", "--module", "h.ts", "--exec", "cat"],
      `--exec "cat" cannot go through --redis`,
    ],
    [[...PRODUCER, "-j", "4"], "-j/--pool 4 is for a local --module"],
    [[...PRODUCER, "--export", "run"], "--export run is for a local --module"],
    [[...PRODUCER, "--allow", "net"], "--allow net is for a local --module"],
    [
      ["--stream", "jobs", "--module", "h.ts"],
      "--stream jobs is for --redis: give the Redis server too",
    ],
    [
      ["--module", "h.ts", "--group", "g"],
      "--group g is for --redis",
    ],
    [["--exec", "cat", "--in-flight", "8"], "--in-flight 8 is for --redis"],
    [
      [...PRODUCER, "--in-flight", "0"],
      `--in-flight must be a positive integer: received "0"`,
    ],
    [[...PRODUCER, "--in-flight", "1.5"], `received "1.5"`],
    [[...PRODUCER, "--stream", "again"], "--stream was given 2 times"],
    [[...PRODUCER, "--group", ""], `--group must not be empty: received ""`],
    [
      ["--redis", "localhost:6379", "--stream", "s", "--module", "h.ts"],
      `--redis must be redis://`,
    ],
    [[...PRODUCER, "--name", "w"], `unknown option "--name"`],
  ];
  for (const [args, fragment] of bad) {
    await t.step(`rejects ${JSON.stringify(args)}`, () => {
      assertThrows(() => parseCliArgs(args), UsageError, fragment);
    });
  }
});

Deno.test("parseCliArgs() rejects bad --retries and --retry-delay", async (t) => {
  const bad: [string[], string][] = [
    [
      ["--module", "h.ts", "--retries", "-1"],
      `--retries must be an integer >= 0: received "-1"`,
    ],
    [["--module", "h.ts", "--retries", "1.5"], `received "1.5"`],
    [["--module", "h.ts", "--retries", ""], `received ""`],
    [
      ["--exec", "cat", "--retries", "2"],
      "--retries 2 is for --module and --redis: a command of --exec is never run twice",
    ],
    [
      ["--module", "h.ts", "--retry-delay", "1s"],
      "--retry-delay 1s needs --retries <n>",
    ],
    [
      ["--module", "h.ts", "--retries", "1", "--retry-delay", "later"],
      `--retry-delay must be a duration such as 30 (seconds), 500ms, 2s or 1min: received "later"`,
    ],
  ];
  for (const [args, fragment] of bad) {
    await t.step(`rejects ${JSON.stringify(args)}`, () => {
      assertThrows(() => parseCliArgs(args), UsageError, fragment);
    });
  }
});

Deno.test("the --help texts tell of the Redis flags and the worker", () => {
  for (
    const flag of [
      "--redis",
      "--stream",
      "--group",
      "--in-flight",
      "--retries",
      "--retry-delay",
      "ocycle worker",
    ]
  ) {
    assertStringIncludes(HELP, flag);
  }
  for (
    const flag of [
      "--redis",
      "--stream",
      "--module",
      "--group",
      "--name",
      "--mode",
      "--pool",
      "--allow",
      "--timeout",
      "SIGTERM",
      "143",
    ]
  ) {
    assertStringIncludes(WORKER_HELP, flag);
  }
});

// RELIABILITY item 50: where the Redis URL comes from, and what is shown of it.

/** An environment of the test's own: `vars`, every one of them readable unless in `denied`. */
function env(vars: Record<string, string>, denied: string[] = []): Environment {
  return {
    allowed: (name) => !denied.includes(name),
    get: (name) => vars[name],
  };
}

const SECRET = "hunter2-Zq8";
const SECRET_URL = `redis://:${SECRET}@127.0.0.1:6379/1`;

Deno.test("parseWorkerArgs() and parseCliArgs() take the Redis URL from REDIS_URL, --redis-env or --redis-file", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "ocycle_redis_url_" });
  try {
    const file = `${dir}/redis_url`;
    await Deno.writeTextFile(file, `  ${SECRET_URL}  \n# a comment line\n`);
    const rest = ["--stream", "jobs", "--module", "./h.ts"];
    await t.step("REDIS_URL when no flag names it", () => {
      assertEquals(
        parseWorkerArgs(rest, env({ REDIS_URL: SECRET_URL })).url,
        SECRET_URL,
      );
      // The producer, too, once --stream says the chunks go to a fleet.
      assertEquals(
        parseCliArgs(rest, env({ REDIS_URL: SECRET_URL })).redis?.url,
        SECRET_URL,
      );
      // Without --stream (or a flag of the URL) REDIS_URL changes nothing.
      assertEquals(
        parseCliArgs(["--module", "./h.ts"], env({ REDIS_URL: SECRET_URL }))
          .redis,
        undefined,
      );
    });
    await t.step("--redis-env NAME", () => {
      const vars = env({ MY_URL: SECRET_URL, REDIS_URL: "redis://other" });
      const args = ["--redis-env", "MY_URL", ...rest];
      assertEquals(parseWorkerArgs(args, vars).url, SECRET_URL);
      assertEquals(parseCliArgs(args, vars).redis?.url, SECRET_URL);
    });
    await t.step("--redis-file PATH: its first line, trimmed", () => {
      const args = ["--redis-file", file, ...rest];
      assertEquals(parseWorkerArgs(args, env({})).url, SECRET_URL);
      assertEquals(parseCliArgs(args, env({})).redis?.url, SECRET_URL);
    });
    await t.step("--redis wins over REDIS_URL", () => {
      const args = ["--redis", URL_, ...rest];
      assertEquals(
        parseWorkerArgs(args, env({ REDIS_URL: SECRET_URL })).url,
        URL_,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseWorkerArgs() and parseCliArgs() refuse a bad source of the Redis URL, never showing its password", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "ocycle_redis_url_" });
  try {
    const empty = `${dir}/empty`;
    await Deno.writeTextFile(empty, "\n" + SECRET_URL);
    const rest = ["--stream", "jobs", "--module", "./h.ts"];
    const bad: [string[], Environment, string][] = [
      [
        ["--redis", SECRET_URL, "--redis-env", "MY_URL", ...rest],
        env({ MY_URL: SECRET_URL }),
        "give the Redis URL once: --redis and --redis-env were both given",
      ],
      [
        [
          "--redis",
          URL_,
          "--redis-env",
          "MY_URL",
          "--redis-file",
          empty,
          ...rest,
        ],
        env({ MY_URL: SECRET_URL }),
        "give the Redis URL once: --redis and --redis-env and --redis-file were all given",
      ],
      [
        ["--redis-env", "MY_URL", "--redis-file", empty, ...rest],
        env({ MY_URL: SECRET_URL }),
        "give the Redis URL once: --redis-env and --redis-file were both given",
      ],
      [
        ["--redis-env", "MY_URL", ...rest],
        env({}),
        "--redis-env MY_URL: the environment variable MY_URL is not set",
      ],
      [
        ["--redis-env", "MY_URL", ...rest],
        env({ MY_URL: "  " }),
        "--redis-env MY_URL: the environment variable MY_URL is empty",
      ],
      [
        ["--redis-env", "MY_URL", ...rest],
        env({ MY_URL: SECRET_URL }, ["MY_URL"]),
        "the environment variable MY_URL cannot be read; run deno with --allow-env=MY_URL",
      ],
      [
        ["--redis-env", "A=B", ...rest],
        env({}),
        `--redis-env must name an environment variable: received "A=B"`,
      ],
      [
        ["--redis-file", `${dir}/missing`, ...rest],
        env({}),
        `--redis-file ${dir}/missing cannot be read: no such file`,
      ],
      [
        ["--redis-file", empty, ...rest],
        env({}),
        `--redis-file ${empty} holds no URL on its first line`,
      ],
      [
        // A URL that does not parse is shown redacted...
        ["--redis-env", "MY_URL", ...rest],
        env({ MY_URL: `redis://:${SECRET}@h/x` }),
        `--redis-env MY_URL must be redis://[user:password@]host[:port][/db] or rediss://... for TLS: the path must be a database number: received "redis://:***@h/x"`,
      ],
      [
        ["--redis-env", "MY_URL", ...rest],
        env({ MY_URL: `redis://${SECRET}@h/x` }),
        `received "redis://***@h/x"`,
      ],
      [
        // ...and a value that is no URL (a bare password?) not at all.
        rest,
        env({ REDIS_URL: SECRET }),
        `REDIS_URL must be redis://[user:password@]host[:port][/db] or rediss://... for TLS: the URL is not valid: received "(not a URL: not shown, as it may be a password)`,
      ],
      [
        ["--redis", SECRET_URL, "--redis", SECRET_URL, ...rest],
        env({}),
        `--redis was given 2 times ("redis://:***@127.0.0.1:6379/1", "redis://:***@127.0.0.1:6379/1")`,
      ],
    ];
    for (const [args, vars, fragment] of bad) {
      await t.step(`rejects ${JSON.stringify(args)}`, () => {
        for (const parse of [parseWorkerArgs, parseCliArgs]) {
          const error = assertThrows(
            () => parse(args, vars),
            UsageError,
            fragment,
          );
          assert(!error.message.includes(SECRET), error.message);
        }
      });
    }
    await t.step(
      "no URL anywhere: the worker says where it may come from",
      () => {
        const error = assertThrows(
          () => parseWorkerArgs(rest, env({})),
          UsageError,
          "ocycle worker needs --redis <url>: the Redis server to take chunks from (or, to keep a password off the command line, in the REDIS_URL environment variable, --redis-env NAME or --redis-file PATH)",
        );
        assertStringIncludes(error.message, "REDIS_URL");
        // So does the producer, given a --stream and nothing else.
        assertThrows(
          () => parseCliArgs(rest, env({}, ["REDIS_URL"])),
          UsageError,
          "--stream jobs is for --redis: give the Redis server too, --redis redis://host:6379 (or, to keep a password off the command line, in the REDIS_URL environment variable",
        );
      },
    );
    await t.step(
      "the producer names the source of a URL that lacks --stream",
      () => {
        assertThrows(
          () =>
            parseCliArgs(
              ["--redis-env", "MY_URL", "--module", "h.ts"],
              env({ MY_URL: SECRET_URL }),
            ),
          UsageError,
          "--redis-env MY_URL needs --stream <name>",
        );
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the --help texts tell of --redis-env, --redis-file and REDIS_URL", () => {
  for (const text of [HELP, WORKER_HELP]) {
    for (const flag of ["--redis-env", "--redis-file", "REDIS_URL"]) {
      assertStringIncludes(text, flag);
    }
    // The examples keep the password off the command line.
    assert(!/--redis redis:\/\/:/.test(text), text);
  }
});
