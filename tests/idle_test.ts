// Copyright the @ocycle/core authors. MIT license.
// A program that forgets close() (RELIABILITY 52): it still exits once its
// pool is idle, and an error nobody observed fails it loudly. Each case runs
// a real program (tests/fixtures/idle/forgot_close.ts) in a Deno of its own.

import {
  assert,
  assertEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { BufferEmit } from "../mod.ts";

const FIXTURE = new URL("./fixtures/idle/forgot_close.ts", import.meta.url);
const MAP = new URL("../.ci/import_map.json", import.meta.url);

/** Longer than any of these programs should take even on a loaded machine: past it, it hangs. */
const HANG = 30_000;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from its last result to its exit, as it measured them. */
  idle: number | undefined;
}

/** Runs the fixture; kills it and says so if it runs longer than `limit`. */
async function run(args: string[], limit = HANG): Promise<Ran> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--import-map=${MAP.pathname}`,
      FIXTURE.pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<true>((resolve) => {
    timer = setTimeout(() => resolve(true), limit);
  });
  const output = child.output();
  const done = await Promise.race([output.then(() => false), hung]);
  clearTimeout(timer);
  if (done) child.kill("SIGKILL");
  const { code, stdout, stderr } = await output;
  const out = new TextDecoder().decode(stdout);
  const idle = out.match(/^exit (\d+)$/m)?.[1];
  return {
    code: done ? null : code,
    stdout: out,
    stderr: new TextDecoder().decode(stderr),
    idle: idle === undefined ? undefined : Number(idle),
  };
}

Deno.test("A program that forgets close() exits once its pool is idle (RELIABILITY 52)", async (t) => {
  for (const mode of ["serial", "thread", "process"]) {
    await t.step(`${mode} mode, the default idleTimeout`, async () => {
      const ran = await run([mode]);
      assertEquals(
        ran.code,
        0,
        `it hung or failed:\n${ran.stdout}${ran.stderr}`,
      );
      assertEquals(ran.stdout.match(/^result 4$/gm)?.length, 2, ran.stdout);
      assertEquals(ran.stderr, "");
    });
  }
  for (const mode of ["thread", "process"]) {
    await t.step(
      `${mode} mode keeps an idle pool for idleTimeout`,
      async () => {
        const ran = await run([mode, "700"]);
        assertEquals(ran.code, 0, ran.stdout + ran.stderr);
        // Measured from its last onDone, which runs just after the pool
        // started the idle timer: a few ms short of 700 is not early.
        assert(ran.idle !== undefined && ran.idle >= 650, ran.stdout);
      },
    );
  }
  await t.step(
    "idleTimeout: Infinity keeps the pool until close()",
    async () => {
      const ran = await run(["thread", "Infinity"], 3000);
      assertEquals(ran.code, null, ran.stdout + ran.stderr);
      assertEquals(ran.stdout.match(/^result 4$/gm)?.length, 2, ran.stdout);
    },
  );
});

Deno.test("An error nobody observed fails the program that forgot close() (RELIABILITY 52)", async (t) => {
  for (const mode of ["serial", "thread", "process"]) {
    await t.step(`${mode} mode`, async () => {
      const ran = await run([mode, "default", "throw"]);
      assertEquals(ran.code, 1, ran.stdout + ran.stderr);
      assertStringIncludes(
        ran.stderr,
        "error: Uncaught Error: errors that nobody observed (no 'onError', and close() never called or awaited): 2 chunks of BufferEmit failed",
      );
      assertStringIncludes(ran.stderr, "nobody catches this (4 bytes)");
    });
  }
  await t.step("not once close() has reported them", async () => {
    const ran = await run(["thread", "default", "throw", "close"]);
    assertEquals(ran.code, 0, ran.stdout + ran.stderr);
    assertStringIncludes(ran.stdout, "caught AggregateError");
    assertEquals(ran.stderr, "");
  });
});

Deno.test("BufferEmit ends idle Workers and children after idleTimeout and starts them again for the next chunk", async (t) => {
  const callback = new URL("./fixtures/idle/callback.ts", import.meta.url);
  for (const mode of ["thread", "process"] as const) {
    await t.step(`${mode} mode`, async () => {
      const results: number[] = [];
      let resolve = () => {};
      const emitter = new BufferEmit(callback, 4, {
        mode,
        pool: 2,
        exportName: "length",
        idleTimeout: 100,
        onDone: (n) => {
          results.push(n as number);
          resolve();
        },
      });
      const result = () => new Promise<void>((r) => resolve = r);
      const gone = async () => {
        while (emitter.stats.workers > 0) {
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      let next = result();
      emitter.write(new Uint8Array(4));
      await next;
      assertEquals(emitter.stats.workers, 2);
      await gone();
      next = result();
      emitter.write(new Uint8Array(4));
      // Started on demand again: the chunk runs.
      assert(emitter.stats.workers > 0);
      await next;
      await gone();
      emitter.write(new Uint8Array(4));
      await emitter.close();
      assertEquals(results, [4, 4, 4]);
      assertEquals(emitter.stats.replaced, 0);
    });
  }
  await t.step("idleTimeout is checked", () => {
    assertThrows(
      () => new BufferEmit(callback, 4, { mode: "thread", idleTimeout: 0 }),
      RangeError,
      "Cannot create BufferEmit as 'idleTimeout' must be a number of milliseconds > 0: received number 0",
    );
  });
});

Deno.test("BufferEmit keeps its Workers while the stream is still written, however long between chunks", async (t) => {
  const callback = new URL("./fixtures/idle/callback.ts", import.meta.url);
  const tick = () => new Promise((r) => setTimeout(r, 60));
  for (const mode of ["thread", "process"] as const) {
    await t.step(`${mode} mode`, async () => {
      const loads: string[] = [];
      const emitter = new BufferEmit(callback, 8, {
        mode,
        pool: 1,
        exportName: "loaded",
        idleTimeout: 200,
        onDone: (id) => void loads.push(id as string),
      });
      // A byte every 60 ms: a chunk every 480 ms, more than twice the
      // idleTimeout, but the stream never stops.
      for (let i = 0; i < 24; i++) {
        emitter.write(new Uint8Array(1));
        await tick();
      }
      // The control: nothing written for longer than idleTimeout.
      while (loads.length < 3) await tick();
      await new Promise((r) => setTimeout(r, 600));
      assertEquals(
        emitter.stats.workers,
        0,
        "idle with nothing written: ended",
      );
      emitter.write(new Uint8Array(8));
      await emitter.close();
      assertEquals(loads.length, 4);
      assertEquals(
        new Set(loads.slice(0, 3)).size,
        1,
        "one load while written",
      );
      assert(loads[3] !== loads[0], "a new load after a real idle spell");
    });
  }
});
