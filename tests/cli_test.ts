// Copyright the @ocycle/core authors. MIT license.
import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  parseCliArgs,
  parseWorkerArgs,
  splitCommand,
  UsageError,
} from "../src/cli/_args.ts";
import { describeChunk, stderrTail, timeOfDay } from "../src/cli/_common.ts";
import { formatBytes, parseDuration, parseSize } from "../src/cli/_units.ts";
import { Sink } from "../src/cli/_sink.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
// The published module imports @std: the child finds it where these tests do.
const IMPORT_MAP = new URL("../.ci/import_map.json", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/cli/", import.meta.url).pathname;
const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

/** A failed-chunk line's chunk, with its t0 as a time of day. */
const T0 = String.raw`t0 \d\d:\d\d:\d\d\.\d{3}`;

/**
 * Runs `deno run -A cli.ts ...args` with `input` on its stdin. With
 * `stdoutTo`, a shell sends its stdout to that file instead of a pipe; with
 * `signal`, ocycle is killed when it aborts; `env` is added to its
 * environment.
 */
async function ocycle(
  args: string[],
  input: Uint8Array,
  stdoutTo?: string,
  signal?: AbortSignal,
  env?: Record<string, string>,
): Promise<Run> {
  const argv = [
    Deno.execPath(),
    "run",
    "-A",
    "--no-lock",
    `--import-map=${IMPORT_MAP}`,
    CLI,
    ...args,
  ];
  const child = new Deno.Command(stdoutTo === undefined ? argv[0]! : "sh", {
    args: stdoutTo === undefined
      ? argv.slice(1)
      : ["-c", 'out=$1; shift; exec "$@" > "$out"', "sh", stdoutTo, ...argv],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    ...(signal === undefined ? {} : { signal }),
    ...(env === undefined ? {} : { env }),
  }).spawn();
  const writer = child.stdin.getWriter();
  const feeding = writer.write(input).then(() => writer.close()).catch(
    () => {},
  );
  const [output] = await Promise.all([child.output(), feeding]);
  return {
    code: output.code,
    stdout: output.stdout,
    stderr: decoder.decode(output.stderr),
  };
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

const audio = { rate: 16000, format: "s16le", channels: 1 };

Deno.test("parseSize() reads bytes, binary and decimal units, and durations", () => {
  assertEquals(parseSize("--size", "65536", audio), 65536);
  assertEquals(parseSize("--size", "64KiB", audio), 65536);
  assertEquals(parseSize("--size", "64K", audio), 65536);
  assertEquals(parseSize("--size", "64kB", audio), 64000);
  assertEquals(parseSize("--size", "1MiB", audio), 1048576);
  assertEquals(parseSize("--size", "1M", audio), 1048576);
  assertEquals(parseSize("--size", "1MB", audio), 1000000);
  assertEquals(parseSize("--size", "1.5KiB", audio), 1536);
  assertEquals(parseSize("--size", ".5KiB", audio), 512);
  assertEquals(parseSize("--size", "1G", audio), 1073741824);
  assertEquals(parseSize("--size", "1GiB", audio), 1073741824);
  assertEquals(parseSize("--size", "1GB", audio), 1000000000);
  assertEquals(parseSize("--size", "2s", audio), 64000);
  assertEquals(parseSize("--size", "250ms", audio), 8000);
  assertEquals(
    parseSize("--size", "1s", { rate: 44100, format: "f32le", channels: 2 }),
    44100 * 8,
  );
  // A duration is rounded to whole frames: 1/3 s of 16 kHz is 5333 frames.
  assertEquals(parseSize("--size", "0.3333333s", audio), 5333 * 2);
  // Rounded, not truncated: 0.29 * 48000 is 13919.999... in floating point.
  assertEquals(
    parseSize("--size", "290ms", { ...audio, rate: 48000 }),
    13920 * 2,
  );
  assertEquals(
    parseCliArgs(["--size", "290ms", "--rate", "48000", "--exec", "cat"]).size,
    27840,
  );
});

Deno.test("parseSize() names the flag and the value it rejects", async (t) => {
  await t.step("an unknown unit", () => {
    assertThrows(
      () => parseSize("--size", "3parsecs", audio),
      RangeError,
      `--size has an unknown unit "parsecs" in "3parsecs"`,
    );
  });
  await t.step("zero, negative and fractional bytes", () => {
    assertThrows(() => parseSize("--size", "0", audio), RangeError, `"0"`);
    assertThrows(() => parseSize("--hop", "-1", audio), RangeError, "--hop");
    assertThrows(
      () => parseSize("--size", "1.5", audio),
      RangeError,
      "whole number of bytes",
    );
  });
  await t.step("a size past the largest safe integer of bytes", () => {
    // Not "at least one byte": the size is too large, not too small.
    for (const text of ["9000000G", "1" + "0".repeat(400)]) {
      assertThrows(
        () => parseSize("--size", text, audio),
        RangeError,
        `--size is too large: received "${text}"`,
      );
    }
    assertThrows(
      () => parseSize("--hop", "100000000000min", audio),
      RangeError,
      `--hop is too large: received "100000000000min"`,
    );
    assertThrows(
      () => parseSize("--size", String(2 ** 53), audio),
      RangeError,
      `--size is too large: received "9007199254740992"`,
    );
    // The largest that is a number of bytes at all; allocating it is another matter.
    assertEquals(
      parseSize("--size", String(Number.MAX_SAFE_INTEGER), audio),
      Number.MAX_SAFE_INTEGER,
    );
  });
  await t.step("a duration without a rate", () => {
    assertThrows(
      () => parseSize("--size", "2s", { format: "s16le", channels: 1 }),
      RangeError,
      "--size 2s is a duration, so it needs --rate",
    );
  });
  await t.step("an unknown sample format", () => {
    assertThrows(
      () => parseSize("--size", "2s", { ...audio, format: "s17le" }),
      RangeError,
      `--format must be one of u8, s8, s16le`,
    );
  });
});

Deno.test("parseDuration() reads milliseconds, seconds and minutes", () => {
  // A bare number is seconds, as GNU parallel --timeout and timeout(1) read it.
  assertEquals(parseDuration("--timeout", "500"), 500_000);
  assertEquals(parseDuration("--timeout", "5"), 5000);
  assertEquals(parseDuration("--timeout", "0.25"), 250);
  assertEquals(parseDuration("--timeout", "1.1"), 1100);
  assertEquals(parseDuration("--timeout", "500ms"), 500);
  assertEquals(parseDuration("--timeout", "2s"), 2000);
  assertEquals(parseDuration("--timeout", "2sec"), 2000);
  assertEquals(parseDuration("--timeout", "1.5min"), 90000);
  assertThrows(
    () => parseDuration("--timeout", "2KiB"),
    RangeError,
    `--timeout must be a duration`,
  );
  // Zero is a duration; whether it will do is the library's to say.
  assertEquals(parseDuration("--retry-delay", "0ms"), 0);
  assertThrows(
    () => parseDuration("--timeout", "1" + "0".repeat(400)),
    RangeError,
    `--timeout is too long: received "1000`,
  );
});

Deno.test("formatBytes() shows bytes below 1 KiB, then binary units", () => {
  assertEquals(formatBytes(0), "0 B");
  assertEquals(formatBytes(1023), "1023 B");
  assertEquals(formatBytes(1024), "1.00 KiB");
  assertEquals(formatBytes(1536), "1.50 KiB");
  assertEquals(formatBytes(10 * 1024), "10.0 KiB");
  assertEquals(formatBytes(1024 ** 2), "1.00 MiB");
  assertEquals(formatBytes(1024 ** 3), "1.00 GiB");
  // The unit is picked by the value as shown, rounded.
  assertEquals(formatBytes(1024 ** 2 - 1), "1.00 MiB");
  assertEquals(formatBytes(1024 * 1024 - 52), "1023.9 KiB");
  // TiB is the largest unit.
  assertEquals(formatBytes(1024 ** 5), "1024.0 TiB");
});

Deno.test("splitCommand() splits like a shell and refuses shell operators", () => {
  assertEquals(splitCommand("wc -c"), ["wc", "-c"]);
  assertEquals(splitCommand(`  grep -e 'a b'  "c \\"d\\""  e\\ f `), [
    "grep",
    "-e",
    "a b",
    `c "d"`,
    "e f",
  ]);
  assertEquals(splitCommand(`sh -c 'tr a b | wc -c'`), [
    "sh",
    "-c",
    "tr a b | wc -c",
  ]);
  assertEquals(splitCommand(`printf ''`), ["printf", ""]);
  // An empty word between others is a word too.
  assertEquals(splitCommand(`printf '' x`), ["printf", "", "x"]);
  assertEquals(splitCommand(`a'b'"c"d`), ["abcd"]);
  // Tabs and newlines separate words as spaces do.
  assertEquals(splitCommand("wc\t-c\n-l"), ["wc", "-c", "-l"]);
  // In double quotes a backslash quotes only " \\ $ and `; before another
  // character it is kept, as sh keeps it.
  assertEquals(splitCommand(`echo "\\$HOME" "a\\\`b" "a\\\\b" "a\\nb"`), [
    "echo",
    "$HOME",
    "a`b",
    "a\\b",
    "a\\nb",
  ]);
  // A backslash that ends the string has nothing to quote: sh keeps it.
  assertEquals(splitCommand(`printf a\\`), ["printf", "a\\"]);
  // A backslash-newline is a line continuation, in double quotes too: sh
  // removes both, and alone it makes no word.
  assertEquals(splitCommand('printf a\\\nb \\\n "c\\\nd"'), [
    "printf",
    "ab",
    "cd",
  ]);
  assertThrows(() => splitCommand("wc -c | gzip"), UsageError, `"|"`);
  assertThrows(() => splitCommand("cat > out"), UsageError, "sh -c");
  for (const operator of "|&;<>()`$*?") {
    assertThrows(
      () => splitCommand(`echo a${operator}b`),
      UsageError,
      `"${operator}" in "echo a${operator}b" would not do what a shell does`,
    );
  }
  assertThrows(() => splitCommand("echo 'open"), UsageError, "unclosed '");
  assertThrows(() => splitCommand(`echo "open`), UsageError, `unclosed "`);
  assertThrows(() => splitCommand(`echo "a\\"`), UsageError, `unclosed "`);
  assertThrows(() => splitCommand("   "), UsageError, "needs a command");
});

Deno.test("parseCliArgs() applies defaults and rejects bad combinations", async (t) => {
  await t.step("defaults", () => {
    const options = parseCliArgs(["--exec", "cat"]);
    assertEquals(options.size, 1048576);
    assertEquals(options.clip, false);
    assertEquals(options.exec, ["cat"]);
    assertEquals(options.pool, navigator.hardwareConcurrency);
    assertEquals(options.mode, "process");
  });
  await t.step("aliases and = values", () => {
    const options = parseCliArgs([
      "-s=4KiB",
      "--clip",
      "--hop=2K",
      "-j",
      "3",
      "-k",
      "-q",
      "--module",
      "./h.ts",
      "--mode=thread",
    ]);
    assertEquals(
      [options.size, options.hop, options.pool, options.keepOrder],
      [4096, 2048, 3, true],
    );
    assertEquals([options.quiet, options.mode], [true, "thread"]);
  });
  await t.step("every local --mode", () => {
    for (const mode of ["process", "thread", "serial"]) {
      assertEquals(
        parseCliArgs(["--mode", mode, "--module", "h.ts"]).mode,
        mode,
      );
    }
  });
  await t.step(
    "short flags with attached values, as parallel takes them",
    () => {
      const options = parseCliArgs(["-j2", "-s64K", "-k", "--exec", "cat"]);
      assertEquals([options.pool, options.size], [2, 65536]);
    },
  );
  await t.step("a value is the next argument, unless it is a flag", () => {
    const options = parseCliArgs([
      // A value that is a flag's name is given after "=".
      "--export=--size",
      "--jobs",
      "2",
      "--module",
      "-h.ts",
    ]);
    assertEquals(
      [options.exportName, options.size, options.pool, options.module],
      ["--size", 1048576, 2, "-h.ts"],
    );
  });
  await t.step("--allow builds the child's permissions", () => {
    const options = parseCliArgs([
      "--module",
      "h.ts",
      "--allow",
      "read",
      "--allow",
      "write=/tmp/a,/tmp/b",
    ]);
    assertEquals(options.allow, { read: true, write: ["/tmp/a", "/tmp/b"] });
    // An empty path is no path: Deno refuses --allow-write= ("Empty path is
    // not allowed"), so none reaches the child.
    for (const text of ["write=", "write=,", "write=/tmp/a,"]) {
      assertEquals(
        parseCliArgs(["--module", "h.ts", "--allow", text]).allow.write,
        text === "write=/tmp/a," ? ["/tmp/a"] : [],
      );
    }
  });
  await t.step("a bare --timeout or --retry-delay is seconds", () => {
    assertEquals(
      parseCliArgs(["--timeout", "5", "--exec", "cat"]).timeout,
      5000,
    );
    assertEquals(
      parseCliArgs(["--timeout", "500ms", "--exec", "cat"]).timeout,
      500,
    );
    const retrying = parseCliArgs([
      "--module",
      "h.ts",
      "--retries",
      "1",
      "--retry-delay",
      "2",
    ]);
    assertEquals(retrying.retryDelay, 2000);
    const worker = parseWorkerArgs([
      "--redis",
      "redis://127.0.0.1:6379",
      "--stream",
      "s",
      "--module",
      "h.ts",
      "--timeout",
      "5",
    ]);
    assertEquals(worker.timeout, 5000);
  });
  await t.step("--keep-failed, for --exec", () => {
    assertEquals(parseCliArgs(["--exec", "cat"]).keepFailed, false);
    assertEquals(
      parseCliArgs(["--keep-failed", "--exec", "cat"]).keepFailed,
      true,
    );
    // --help is shown whatever else is wrong.
    assertEquals(
      parseCliArgs(["--keep-failed", "--module", "h.ts", "--help"]).help,
      true,
    );
  });
  const bad: [string[], string][] = [
    // The value was forgotten: the flag after it is not taken as the value.
    [
      ["--size", "--exec", "cat"],
      `--size needs a value: the next argument, "--exec", is an option`,
    ],
    [
      ["-j", "-k", "--exec", "cat"],
      `-j needs a value: the next argument, "-k"`,
    ],
    [["--exec", "--size=3"], `--exec needs a value: the next argument`],
    [["-s", "-j4", "--exec", "cat"], `-s needs a value: the next argument`],
    [
      ["--keep-failed", "--module", "h.ts"],
      "--keep-failed is for --exec: a failed handler has no output",
    ],
    [["--exec", "cat", "--frobnicate"], `unknown option "--frobnicate"`],
    [["--exec", "cat", "--size"], "--size needs a value"],
    [["--exec", "cat", "-j"], "-j needs a value"],
    [
      ["--exec", "cat", "--size", "-3"],
      `--size must be a size such as 65536, 64KiB, 1MiB or 2s: received "-3"`,
    ],
    [
      ["--exec", "cat", "--clip=yes"],
      `--clip takes no value: received "--clip=yes"`,
    ],
    [["--exec", "cat", "-k=1"], `-k takes no value: received "-k=1"`],
    [["--exec", "cat", "--clip", "true"], `unexpected argument "true"`],
    [["--exec", "cat", "--no-clip=yes"], `unknown option "--no-clip=yes"`],
    [["--exec", "cat", "--", "x"], `unknown option "--"`],
    [["--exec", "cat", "-kq"], `unknown option "-kq"`],
    [["--exec", "cat", "--k"], `unknown option "--k"`],
    [["--frobnicate", "--size"], `unknown option "--frobnicate"`],
    [["--exec", "cat", "--hop", "1K"], `--hop requires --clip: received "1K"`],
    [
      ["--exec", "cat", "-j", "0"],
      `--pool must be a positive integer: received "0"`,
    ],
    [["--exec", "cat", "--mode", "thread"], "--mode thread is for --module"],
    [
      ["--module", "h.ts", "--mode", "fork"],
      `--mode must be process, thread or serial: received "fork"`,
    ],
    [["--exec", "cat", "--module", "h.ts"], "not both"],
    [[], "--exec"],
    [["wc", "-c"], `--exec "wc ..."`],
    [
      ["--exec", "cat", "--size", "1K", "--size", "2K"],
      "--size was given 2 times",
    ],
    [
      ["--exec", "cat", "-j2", "--jobs=3"],
      `--pool was given 2 times ("2", "3")`,
    ],
    [
      ["--exec", "cat", "--timeout", "0"],
      `--timeout must be a number of milliseconds > 0: received "0"`,
    ],
    [
      ["--module", "h.ts", "--export="],
      `--export must not be empty: received ""`,
    ],
    [["--exec", "cat", "--allow", "read"], "--allow is for --module"],
    [["--module", "h.ts", "--allow", "everything"], `received "everything"`],
    [
      // Any name reaches the library, which judges it.
      ["--module", "h.ts", "--allow", "__proto__"],
      `--allow is not a Deno permission: use read, write, net, env, run, sys, ffi or import: received "__proto__"`,
    ],
    [
      ["--exec", "cat", "--rate", "16000", "--size", "3"],
      "--size must be whole frames of 2 bytes",
    ],
    [
      ["--exec", "cat", "--rate", "16000", "-s", "4", "--clip", "--hop", "3"],
      "--hop must be whole frames of 2 bytes (s16le, 1 channel(s)): received 3 bytes",
    ],
    [
      ["--exec", "cat", "--rate", "0"],
      `--rate must be a positive number of frames per second: received "0"`,
    ],
    [
      ["--exec", "cat", "--rate", "fast"],
      `--rate must be a positive number of frames per second: received "fast"`,
    ],
    [
      ["--exec", "cat", "--channels", "0"],
      `--channels must be a positive integer: received "0"`,
    ],
    [
      ["--exec", "cat", "--channels", "1.5"],
      `--channels must be a positive integer: received "1.5"`,
    ],
  ];
  for (const [args, fragment] of bad) {
    await t.step(`rejects ${JSON.stringify(args)}`, () => {
      assertThrows(() => parseCliArgs(args), UsageError, fragment);
    });
  }
});

Deno.test("ocycle --exec pipes each chunk to its own command", async (t) => {
  const input = randomBytes(1_000_000);
  await t.step("wc -c counts every byte, chunk by chunk", async () => {
    const run = await ocycle(
      ["--size", "256KiB", "--clip", "-j", "2", "-k", "--exec", "wc -c"],
      input,
    );
    assertEquals(run.code, 0, run.stderr);
    const counts = decoder.decode(run.stdout).trim().split("\n").map(Number);
    assertEquals(counts, [262144, 262144, 262144, 213568]);
    assertStringIncludes(run.stderr, "4 chunks");
    assertStringIncludes(run.stderr, "0 failed");
  });
  await t.step("a duration in frames: 2 s of s16le at 16 kHz", async () => {
    const run = await ocycle(
      [
        "--size",
        "2s",
        "--rate",
        "16000",
        "--format",
        "s16le",
        "--clip",
        "-k",
        "-q",
        "--exec",
        "wc -c",
      ],
      input.subarray(0, 160000),
    );
    assertEquals(run.code, 0, run.stderr);
    assertEquals(decoder.decode(run.stdout), "64000\n64000\n32000\n");
    assertEquals(run.stderr, "", "--quiet prints nothing on success");
  });
  await t.step("--keep-order with cat gives back the input", async () => {
    const run = await ocycle(
      ["-s", "10000", "--clip", "-j", "4", "-k", "-q", "--exec", "cat"],
      input,
    );
    assertEquals(run.code, 0, run.stderr);
    assertEquals(run.stdout, input);
  });
  await t.step(
    "--keep-order gzip pieces form one valid .gz stream",
    async () => {
      const run = await ocycle(
        ["-s", "300KiB", "-j", "2", "-k", "-q", "--exec", "gzip -c"],
        input,
      );
      assertEquals(run.code, 0, run.stderr);
      // gunzip, since Deno's DecompressionStream stops after the first member.
      const gunzip = new Deno.Command("gunzip", {
        args: ["-c"],
        stdin: "piped",
        stdout: "piped",
      }).spawn();
      const writer = gunzip.stdin.getWriter();
      const [unzipped] = await Promise.all([
        gunzip.output().then((o) => o.stdout),
        writer.write(run.stdout).then(() => writer.close()),
      ]);
      assertEquals(unzipped, input);
    },
  );
  await t.step("--hop makes overlapping windows", async () => {
    const run = await ocycle(
      ["-s", "4", "--clip", "--hop", "2", "-k", "-q", "--exec", "cat"],
      new TextEncoder().encode("abcdefgh"),
    );
    assertEquals(run.code, 0, run.stderr);
    // The last window ends the input: nothing is left unsent, so no tail.
    assertEquals(decoder.decode(run.stdout), "abcdcdefefgh");
  });
  await t.step("empty input runs nothing and succeeds", async () => {
    const run = await ocycle(["-q", "--exec", "cat"], new Uint8Array(0));
    assertEquals(run.code, 0, run.stderr);
    assertEquals(run.stdout.length, 0);
    const said = await ocycle(["--exec", "cat"], new Uint8Array(0));
    assertEquals(said.code, 0, said.stderr);
    assertStringIncludes(said.stderr, "ocycle: 0 B in, 0 chunks: 0 done");
  });
  await t.step("a command that succeeds has its stderr passed on", async () => {
    const run = await ocycle(
      ["-s", "10000", "-q", "--exec", "sh -c 'wc -c; echo warning >&2'"],
      input.subarray(0, 100),
    );
    assertEquals(run.code, 0, run.stderr);
    assertEquals(decoder.decode(run.stdout), "100\n");
    assertEquals(run.stderr, "warning\n");
  });
});

Deno.test("ocycle --exec reports failing commands and exits non-zero", async (t) => {
  const input = randomBytes(30000);
  await t.step("a command that exits 3 on one chunk", async () => {
    const run = await ocycle(
      [
        "-s",
        "10000",
        "--clip",
        "-k",
        "--exec",
        `sh -c 'n=$(wc -c); [ "$n" -lt 10000 ] || { echo "chunk of $n bytes" >&2; exit 3; }; echo "$n"'`,
      ],
      input.subarray(0, 25000),
    );
    assertEquals(run.code, 1);
    assertMatch(
      run.stderr,
      new RegExp(`chunk 0 \\(bytes 0\\.\\.10000, ${T0}\\) failed:`),
    );
    assertStringIncludes(run.stderr, "exited with code 3");
    assertStringIncludes(run.stderr, "| chunk of 10000 bytes");
    assertStringIncludes(run.stderr, "2 of 3 chunks failed");
    // The chunk that succeeded still reaches stdout.
    assertEquals(decoder.decode(run.stdout), "5000\n");
    // The failed ones wrote nothing to stdout: no output is said to be lost.
    assert(!run.stderr.includes("not written"), run.stderr);
  });
  await t.step("a command that does not exist", async () => {
    const run = await ocycle(["--exec", "no-such-command-xyz -v"], input);
    assertEquals(run.code, 127);
    assertStringIncludes(
      run.stderr,
      `--exec "no-such-command-xyz -v": command not found: no-such-command-xyz`,
    );
  });
  await t.step(
    "a path to no command exits 127, a file that cannot run 126",
    async () => {
      // Named by a path, the command is not looked up in PATH: it is
      // checked where it is, before a chunk runs, as a name is.
      const dir = await Deno.makeTempDir({ prefix: "ocycle-not-executable-" });
      try {
        const missing = `${dir}/missing`;
        const notFound = await ocycle(
          ["-s", "10000", "--exec", missing],
          input,
        );
        assertEquals(notFound.code, 127, notFound.stderr);
        assertStringIncludes(
          notFound.stderr,
          `--exec "${missing}": command not found: ${missing}`,
        );
        const script = `${dir}/script`;
        await Deno.writeTextFile(script, "#!/bin/sh\ncat\n", { mode: 0o644 });
        const run = await ocycle(["-s", "10000", "--exec", script], input);
        assertEquals(run.code, 126, run.stderr);
        assertStringIncludes(
          run.stderr,
          `--exec "${script}": cannot run ${script}:`,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
  await t.step("-q still sums up a run with a failed chunk", async () => {
    const run = await ocycle(
      ["-q", "--exec", "sh -c 'cat > /dev/null; exit 3'"],
      input.subarray(0, 100),
    );
    assertEquals(run.code, 1, run.stderr);
    assertStringIncludes(run.stderr, "exited with code 3");
    assertStringIncludes(run.stderr, "1 chunk: 0 done, 1 failed");
    assertStringIncludes(run.stderr, "1 of 1 chunks failed");
  });
  await t.step(
    "a command that takes longer than --timeout is killed",
    async () => {
      // Not killed, sleep would hold ocycle for a minute: the deadline ends it.
      const run = await ocycle(
        ["-s", "10000", "--timeout", "300ms", "--exec", "sleep 60"],
        input.subarray(0, 100),
        undefined,
        AbortSignal.timeout(15_000),
      );
      assertEquals(run.code, 1, run.stderr);
      assertStringIncludes(run.stderr, "took longer than --timeout 300 ms");
    },
  );
  await t.step("a bare --timeout is seconds, not milliseconds", async () => {
    const run = await ocycle(
      [
        "-s",
        "10000",
        "-q",
        "--timeout",
        "5",
        "--exec",
        "sh -c 'sleep 0.2; wc -c'",
      ],
      input.subarray(0, 100),
    );
    assertEquals(run.code, 0, run.stderr);
    assertEquals(decoder.decode(run.stdout), "100\n");
  });
  await t.step(
    "with --keep-failed, a failing command's stdout is still its output",
    async () => {
      const run = await ocycle(
        [
          "-s",
          "10000",
          "--keep-failed",
          "--exec",
          "sh -c 'cat > /dev/null; echo partial; exit 4'",
        ],
        input.subarray(0, 10000),
      );
      assertEquals(run.code, 1);
      assertStringIncludes(run.stderr, "exited with code 4");
      assertEquals(decoder.decode(run.stdout), "partial\n");
      assert(!run.stderr.includes("not written"), run.stderr);
    },
  );
  for (const order of [[], ["-k"]]) {
    await t.step(
      `a failed command's output is not written, and said ${order.join("")}`,
      async () => {
        const run = await ocycle(
          [
            "-s",
            "10000",
            "--clip",
            ...order,
            "--exec",
            `sh -c 'n=$(wc -c); echo "out $n"; [ "$n" -lt 10000 ] || exit 3'`,
          ],
          input.subarray(0, 25000),
        );
        assertEquals(run.code, 1, run.stderr);
        // Only the chunk that succeeded: "out 10000" twice never comes.
        assertEquals(decoder.decode(run.stdout), "out 5000\n");
        for (
          const [index, range] of [[0, "0\\.\\.10000"], [1, "10000\\.\\.20000"]]
        ) {
          assertMatch(
            run.stderr,
            new RegExp(
              `ocycle: chunk ${index} \\(bytes ${range}, ${T0}\\) failed: .* exited with code 3; its 10 bytes of output are not written`,
            ),
          );
        }
        assertStringIncludes(
          run.stderr,
          "2 of 3 chunks failed (see the messages above); 20 bytes of their output were not written (--keep-failed writes them)",
        );
      },
    );
  }
  await t.step(
    "a failed command's output held in a file is dropped with the file",
    async () => {
      const tmp = await Deno.makeTempDir({ prefix: "ocycle-failed-" });
      try {
        const run = await ocycle(
          [
            "-s",
            "10",
            "--exec",
            "sh -c 'cat > /dev/null; head -c 3000000 /dev/zero; exit 5'",
          ],
          input.subarray(0, 10),
          undefined,
          undefined,
          { TMPDIR: tmp },
        );
        assertEquals(run.code, 1, run.stderr);
        assertEquals(run.stdout.length, 0);
        assertStringIncludes(
          run.stderr,
          "exited with code 5; its 3000000 bytes of output are not written",
        );
        assertEquals(await Array.fromAsync(Deno.readDir(tmp)), []);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
  );
  await t.step(
    "a command that stops reading early is judged by its exit",
    async () => {
      const run = await ocycle(
        ["-s", "1MiB", "-q", "--exec", "head -c 3"],
        randomBytes(3_000_000),
      );
      assertEquals(run.code, 0, run.stderr);
      assertEquals(run.stdout.length, 9);
    },
  );
});

Deno.test("ocycle exits non-zero when stdout cannot be written", async (t) => {
  const input = randomBytes(50_000);
  for (const order of [[], ["-k"]]) {
    const args = ["-s", "10000", "--clip", ...order, "--exec", "cat"];
    await t.step(`${args.join(" ")} > /dev/full`, async () => {
      const run = await ocycle(args, input, "/dev/full");
      assertEquals(run.code, 1, run.stderr);
      assertStringIncludes(run.stderr, "ocycle: cannot write to stdout:");
      assertStringIncludes(run.stderr, "0 failed");
    });
  }
});

Deno.test("ocycle --module runs a handler in the process or thread pool", async (t) => {
  const input = randomBytes(300_000);
  for (const mode of ["process", "thread"]) {
    await t.step(
      `--keep-order in ${mode} mode gives back the input`,
      async () => {
        const run = await ocycle(
          [
            "-s",
            "10000",
            "--clip",
            "-j",
            "3",
            "-k",
            "--mode",
            mode,
            "--module",
            `${FIXTURES}slow_echo.ts`,
          ],
          input,
        );
        assertEquals(run.code, 0, run.stderr);
        assertEquals(run.stdout, input);
        assertStringIncludes(run.stderr, "30 chunks");
      },
    );
  }
  await t.step("an object result is one JSON line", async () => {
    const run = await ocycle(
      [
        "-s",
        "100000",
        "--clip",
        "-k",
        "-q",
        "--export",
        "stats",
        "--module",
        `${FIXTURES}stats.ts`,
      ],
      input,
    );
    assertEquals(run.code, 0, run.stderr);
    const lines = decoder.decode(run.stdout).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assertEquals(lines.map((l) => [l.index, l.length]), [
      [0, 100000],
      [1, 100000],
      [2, 100000],
    ]);
    let sum = 0;
    for (const b of input.subarray(0, 100000)) sum += b;
    assertEquals(lines[0].sum, sum);
  });
  await t.step("a handler that throws fails its chunk only", async () => {
    const run = await ocycle(
      [
        "-s",
        "10000",
        "--clip",
        "-k",
        "--export",
        "failSecond",
        "--module",
        `${FIXTURES}stats.ts`,
      ],
      input.subarray(0, 30000),
    );
    assertEquals(run.code, 1);
    assertMatch(
      run.stderr,
      new RegExp(
        `ocycle: chunk 1 \\(bytes 10000\\.\\.20000, ${T0}\\) failed: the callback threw: chunk 1 is unlucky`,
      ),
    );
    assertStringIncludes(run.stderr, "1 of 3 chunks failed");
    assertEquals(decoder.decode(run.stdout), "10000\n10000\n");
  });
});

Deno.test("ocycle --module --retries runs a chunk again after its subprocess died", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "ocycle-cli-retries-" });
  try {
    const input = new TextEncoder().encode(
      `aaaa\ncrash-once:${dir}/marker\nbbbb\n`,
    );
    const args = [
      "-s",
      "1MiB",
      "-j",
      "1",
      "--allow",
      "read",
      "--allow",
      "write",
      "--module",
      `${FIXTURES}crash_once.ts`,
    ];
    await t.step(
      "without --retries the chunk fails with its crash",
      async () => {
        const run = await ocycle(args, input);
        assertEquals(run.code, 1, run.stderr);
        assertMatch(
          run.stderr,
          new RegExp(
            `ocycle: chunk 0 \\(bytes 0\\.\\.\\d+, ${T0}\\) failed: .*exited unexpectedly.*exit code 3`,
          ),
        );
        assertEquals(run.stdout.length, 0);
      },
    );
    await Deno.remove(`${dir}/marker`);
    await t.step(
      "with --retries 1 its second run gives the output",
      async () => {
        const run = await ocycle(
          [...args, "--retries", "1", "--retry-delay", "10ms"],
          input,
        );
        assertEquals(run.code, 0, run.stderr);
        assertEquals(run.stdout, input);
        assertStringIncludes(run.stderr, "1 chunk: 1 done, 0 failed");
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ocycle rejects bad flags and missing files with exit code 2", async (t) => {
  const cases: [string[], string][] = [
    [
      ["--size", "12parsecs", "--exec", "cat"],
      `--size has an unknown unit "parsecs"`,
    ],
    [
      ["--size", "2s", "--exec", "cat"],
      "--size 2s is a duration, so it needs --rate",
    ],
    [["--frobnicate", "--exec", "cat"], `unknown option "--frobnicate"`],
    // The library's check, told by flag and the text typed.
    [
      ["-j", "0", "--exec", "cat"],
      `ocycle: --pool must be a positive integer: received "0"`,
    ],
    [
      ["--size", "--exec", "cat"],
      `ocycle: --size needs a value: the next argument, "--exec", is an option`,
    ],
    [
      ["--module", "./no/such/handler.ts"],
      "--module ./no/such/handler.ts: no such file",
    ],
    [
      // RELIABILITY item 35: not V8's bare "Array buffer allocation failed".
      ["-s", "8000000G", "--exec", "cat"],
      "ocycle: --size 7812.5 TiB (8589934592000000 bytes) cannot be allocated",
    ],
  ];
  for (const [args, fragment] of cases) {
    await t.step(args.join(" "), async () => {
      const run = await ocycle(args, new Uint8Array(10));
      assertEquals(run.code, 2);
      assertStringIncludes(run.stderr, fragment);
      assert(!run.stderr.includes("goes in one string"), run.stderr);
      assertEquals(run.stdout.length, 0);
    });
  }
  await t.step("--help explains and exits 0", async () => {
    const run = await ocycle(["--help"], new Uint8Array(0));
    assertEquals(run.code, 0);
    const help = decoder.decode(run.stdout);
    for (
      const flag of [
        "--size",
        "--clip",
        "--hop",
        "--exec",
        "--module",
        "--keep-order",
        "--pool",
        "--keep-failed",
        "A duration without a unit is seconds",
        "t0 12:30:05.250",
        "Exit status",
      ]
    ) {
      assert(help.includes(flag), `--help mentions ${flag}`);
    }
  });
});

Deno.test({
  name:
    "ocycle streams each command's output in bounded memory, with and without -k (RELIABILITY 31)",
  // It reads the process's peak memory from /proc.
  ignore: Deno.build.os !== "linux",
}, async (t) => {
  for (const order of [[], ["-k"]]) {
    await t.step(`two commands of 150 MB each ${order.join("")}`, async () => {
      const tmp = await Deno.makeTempDir({ prefix: "ocycle-spool-" });
      try {
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--no-lock",
            `--import-map=${IMPORT_MAP}`,
            `${FIXTURES}peak.ts`,
            "-q",
            "-s",
            "1",
            "--clip",
            "-j",
            "2",
            ...order,
            "--exec",
            "head -c 150000000 /dev/zero",
          ],
          // Where a held output goes once it outgrows memory.
          env: { TMPDIR: tmp },
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const writer = child.stdin.getWriter();
        await writer.write(new Uint8Array(2));
        await writer.close();
        let bytes = 0;
        for await (const piece of child.stdout) bytes += piece.length;
        const { code, stderr } = await child.output();
        const err = decoder.decode(stderr);
        assertEquals(code, 0, err);
        assertEquals(bytes, 300_000_000);
        // About 85 MiB; holding each command's whole output took 335.
        const peak = Number(/peak (\d+) MiB/.exec(err)![1]);
        assert(peak < 200, `ocycle peaked at ${peak} MiB`);
        // The held output's file is gone.
        assertEquals(await Array.fromAsync(Deno.readDir(tmp)), []);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    });
  }
});

Deno.test("the ocycle sink writes outputs that finish out of order whole, in order with -k", async (t) => {
  for (
    const [keepOrder, stream] of [
      [true, false],
      [false, false],
      [true, true],
      [false, true],
    ] as const
  ) {
    const name = `${keepOrder ? "-k" : "as they come"}${
      stream ? ", streamed (--keep-failed)" : ""
    }`;
    await t.step(name, async () => {
      const got: number[] = [];
      const slow = new WritableStream<Uint8Array>({
        async write(bytes) {
          await new Promise((resolve) => setTimeout(resolve, 1));
          got.push(...bytes);
        },
      });
      const sink = new Sink(keepOrder, 100, slow.getWriter(), stream);
      for (let i = 0; i < 6; i++) sink.admit();
      // Chunk 2 writes in two pieces around chunk 3's whole output.
      const two = sink.output(2);
      for (const i of [0, 1, 3]) {
        sink.deliver(i, new Uint8Array([i, i]));
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      await two.write(new Uint8Array([2]));
      sink.deliver(5, new Uint8Array([5, 5]));
      await two.write(new Uint8Array([2]));
      two.finish();
      sink.deliver(4, new Uint8Array([4, 4]));
      await sink.drain();
      if (keepOrder) assertEquals(got, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
      else {
        // Every output whole, none cut into by another.
        assertEquals(got.length, 12);
        for (let i = 0; i < 12; i += 2) assertEquals(got[i], got[i + 1]);
      }
    });
  }
});

Deno.test("the ocycle sink drops a failed chunk's output and counts it, unless streaming", async (t) => {
  for (const keepOrder of [true, false]) {
    for (const stream of [false, true]) {
      await t.step(`keepOrder ${keepOrder}, stream ${stream}`, async () => {
        const got: number[] = [];
        const sink = new Sink(
          keepOrder,
          100,
          new WritableStream<Uint8Array>({
            write(bytes) {
              got.push(...bytes);
            },
          }).getWriter(),
          stream,
        );
        for (let i = 0; i < 3; i++) sink.admit();
        const failing = sink.output(0);
        await failing.write(new Uint8Array([7, 7, 7]));
        assertEquals(sink.fail(0), 3);
        // A killed command's last words, after its chunk failed.
        await failing.write(new Uint8Array([8]));
        sink.deliver(1, new Uint8Array([1]));
        sink.deliver(2, new Uint8Array([2]));
        await sink.drain();
        // Bytes that come once the sink is through with an output: dropped
        // and counted, never a new owner of stdout.
        await failing.write(new Uint8Array([9, 9]));
        if (stream) {
          // Streamed, its bytes went out as they came; 1 and 2 whole after.
          assertEquals(got.slice(0, 4), [7, 7, 7, 8]);
          assertEquals(got.length, 6);
          assertEquals(sink.discarded, 2);
        } else {
          assertEquals(got, [1, 2]);
          assertEquals(sink.discarded, 6);
        }
      });
    }
  }
});

Deno.test("the ocycle sink, streaming (--keep-failed), writes an output as it comes, and a failed one held for its turn", async (t) => {
  /** A sink that streams into `got`. */
  const streaming = (keepOrder: boolean, got: number[]) =>
    new Sink(
      keepOrder,
      100,
      new WritableStream<Uint8Array>({
        write(bytes) {
          got.push(...bytes);
        },
      }).getWriter(),
      true,
    );
  for (const keepOrder of [true, false]) {
    await t.step(
      `${keepOrder ? "-k" : "as they come"}: before its chunk is done`,
      async () => {
        const got: number[] = [];
        const sink = streaming(keepOrder, got);
        sink.admit();
        sink.admit();
        const first = sink.output(0);
        await first.write(new Uint8Array([1]));
        // Written, though chunk 0 runs on.
        assertEquals(got, [1]);
        const second = sink.output(1);
        await second.write(new Uint8Array([2]));
        // Held: stdout is chunk 0's until it is done.
        assertEquals(got, [1]);
        first.finish();
        second.finish();
        await sink.drain();
        assertEquals(got, [1, 2]);
      },
    );
  }
  await t.step("-k: a chunk that failed while it waited", async () => {
    const got: number[] = [];
    const sink = streaming(true, got);
    sink.admit();
    sink.admit();
    sink.output(0);
    await sink.output(1).write(new Uint8Array([1, 1]));
    assertEquals(sink.fail(1), 2);
    sink.deliver(0, new Uint8Array([0]));
    await sink.drain();
    // Held while chunk 0 ran, then written in its turn, failed or not.
    assertEquals(got, [0, 1, 1]);
    assertEquals(sink.discarded, 0);
  });
});

Deno.test("a failed chunk is named by index, byte range and t0 as a time of day", () => {
  assertEquals(
    timeOfDay(new Date(2026, 11, 7, 9, 5, 3, 7).getTime()),
    "09:05:03.007",
  );
  const t0 = new Date(2026, 11, 7, 12, 30, 5, 250).getTime();
  assertEquals(
    describeChunk({
      index: 3,
      offset: 3072,
      length: 1024,
      t0,
      reason: "size",
      final: false,
    }),
    "chunk 3 (bytes 3072..4096, t0 12:30:05.250)",
  );
});

Deno.test("stderrTail() keeps the last 10 lines of a failed chunk's stderr", () => {
  assertEquals(stderrTail(""), "");
  assertEquals(stderrTail("only\n"), "\n  | only");
  const lines = Array.from({ length: 12 }, (_, i) => `line ${i + 1}`);
  assertEquals(
    stderrTail(lines.join("\n") + "\n"),
    "\n" + lines.slice(2).map((line) => `  | ${line}`).join("\n"),
  );
});
