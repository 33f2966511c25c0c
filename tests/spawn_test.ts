// Copyright the @ocycle/core authors. MIT license.
// pool/_spawn.ts, the one way the package starts a process (process-mode
// children, --exec commands, the watchdog), and the watchdog's line queue
// in pool/_groups.ts, with real processes and real process groups.

import { assert, assertEquals, assertLess, assertThrows } from "@std/assert";
import { spawn } from "../src/pool/_spawn.ts";
import type { Groups } from "../src/pool/_transport.ts";

/** /proc and process groups are Linux's here. */
const LINUX = Deno.build.os === "linux";

/** Whether setsid(1) is here, so that processes start without a fork. */
const SETSID = LINUX && ["/usr/bin/setsid", "/bin/setsid"].some((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

const decoder = new TextDecoder();

/** A process's stat fields after its name: state is [0], group [2], session [3], minor faults [7]. */
function stat(pid: number | "self"): string[] {
  const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** Whether a process is alive: it exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    return stat(pid)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Polls `check` every 20 ms until it holds or `ms` pass; whether it held. */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

function cleanUp(pids: number[]): void {
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Gone, as it should be.
    }
  }
}

/** A sleep no other test run shares, to find it by its command line. */
function sleepFor(): string {
  return `${40 + Math.floor(Math.random() * 10)}.${
    String(Math.random()).slice(2, 9)
  }`;
}

/** Groups that record what they are told, and kill groups as the pool's do. */
function recorder(): Groups & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    watch: (pid) => calls.push(`watch ${pid}`),
    kill: (pid) => {
      calls.push(`kill ${pid}`);
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // The group is gone already.
      }
    },
  };
}

/** Starts `sh -c script` with `groups`; the pid of the background sleep it starts, and the process. */
async function shellWithSleep(script: string, groups: Groups) {
  const child = spawn("sh", { args: ["-c", script], groups, perChunk: true });
  child.stdin.close().catch(() => {});
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
  }
  reader.releaseLock();
  return { child, sleep: Number(text.trim()) };
}

Deno.test({
  name:
    "spawn() starts a process as the leader of a session and process group of its own",
  ignore: !LINUX,
  async fn(t) {
    for (const perChunk of [false, true]) {
      await t.step(perChunk ? "once per chunk" : "to live long", async () => {
        const child = spawn("sleep", {
          args: [sleepFor()],
          stdin: "null",
          perChunk,
        });
        try {
          // Through setsid(1) it gets there a moment after the start.
          assert(
            await until(() => stat(child.pid)[2] === String(child.pid), 2000),
            `group ${stat(child.pid)[2]} of ${child.pid}`,
          );
          assertEquals(stat(child.pid)[3], String(child.pid), "its session");
        } finally {
          child.kill();
          await child.status;
          await child.stdout.cancel();
          await child.stderr.cancel();
        }
      });
    }
  },
});

Deno.test({
  name:
    "spawn() puts a long-lived process out of reach of a Ctrl-C from its first instant",
  ignore: !LINUX,
  async fn() {
    // A program that spawns sleeps, each followed at once by a Ctrl-C to its
    // own group, as a terminal sends it; it says how each sleep ended.
    const module = new URL("../src/pool/_spawn.ts", import.meta.url).href;
    const script = `
      import { spawn } from ${JSON.stringify(module)};
      Deno.addSignalListener("SIGINT", () => {});
      const children = [];
      for (let i = 0; i < 20; i++) {
        children.push(spawn("sleep", { args: ["30"], stdin: "null", stdout: "null", stderr: "inherit" }));
        Deno.kill(-Deno.pid, "SIGINT");
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      const ends = [];
      for (const child of children) {
        child.kill();
        ends.push((await child.status).signal);
      }
      console.log([...new Set(ends)].join(" "));
      Deno.exit(0);`;
    const file = await Deno.makeTempFile({ suffix: ".ts" });
    try {
      await Deno.writeTextFile(file, script);
      // In a group of its own, as a terminal's foreground job.
      const program = spawn(Deno.execPath(), {
        args: ["run", "-A", "--no-config", "--no-lock", file],
        stdin: "null",
      });
      const [stdout, stderr] = await Promise.all([
        new Response(program.stdout).text(),
        new Response(program.stderr).text(),
        program.status,
      ]);
      assertEquals(stdout.trim(), "SIGKILL", stderr);
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name:
    "spawn() does not fork this process where setsid(1) runs (no copy of its memory)",
  ignore: !SETSID,
  async fn() {
    // A fork write-protects every page of the parent until the child execs:
    // each page written after it faults once. A start without a fork
    // (vfork and exec of setsid) leaves them be.
    const memory = new Uint8Array(64 << 20);
    memory.fill(1);
    const before = Number(stat("self")[7]);
    const child = spawn("true", {
      perChunk: true,
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    });
    assert((await child.status).success);
    memory.fill(2);
    const faults = Number(stat("self")[7]) - before;
    // A fork costs one fault per page here: 16384.
    assertLess(faults, 4096, `${faults} page faults after one start`);
  },
});

Deno.test({
  name:
    "spawn() with groups watches the group at the start and kills what the process left running at its exit",
  ignore: !LINUX,
  async fn() {
    const groups = recorder();
    const { child, sleep } = await shellWithSleep(
      `sleep ${sleepFor()} & echo $!`,
      groups,
    );
    try {
      assert((await child.status).success);
      assertEquals(groups.calls, [`watch ${child.pid}`, `kill ${child.pid}`]);
      assert(await until(() => !alive(sleep), 2000), `${sleep} outlived it`);
    } finally {
      cleanUp([sleep]);
      await child.stdout.cancel();
      await child.stderr.cancel();
    }
  },
});

Deno.test({
  name:
    "Spawned.kill() kills the whole group once; its exit then kills nothing more",
  ignore: !LINUX,
  async fn() {
    const groups = recorder();
    const { child, sleep } = await shellWithSleep(
      `sleep ${sleepFor()} & echo $!; sleep ${sleepFor()}`,
      groups,
    );
    try {
      child.kill();
      const status = await child.status;
      assertEquals(status.signal, "SIGKILL");
      assertEquals(groups.calls, [`watch ${child.pid}`, `kill ${child.pid}`]);
      assert(await until(() => !alive(sleep), 2000), `${sleep} outlived it`);
      child.kill(); // Gone already: nothing happens, nothing throws.
      assertEquals(groups.calls.length, 2);
    } finally {
      cleanUp([sleep]);
      await child.stdout.cancel();
      await child.stderr.cancel();
    }
  },
});

Deno.test("spawn() of a program that is not there throws NotFound, of a file that is no program PermissionDenied", () => {
  // The CLI turns it into "command not found" and exit code 127: setsid(1)
  // would start and fail instead.
  assertThrows(
    () => spawn("ocycle-no-such-program-0", { stdin: "null", perChunk: true }),
    Deno.errors.NotFound,
  );
  // Named by a path too, and a file that is no program throws at once.
  const dir = Deno.makeTempDirSync({ prefix: "ocycle-spawn-" });
  try {
    assertThrows(
      () => spawn(`${dir}/missing`, { stdin: "null", perChunk: true }),
      Deno.errors.NotFound,
    );
    Deno.writeTextFileSync(`${dir}/script`, "#!/bin/sh\n", { mode: 0o644 });
    assertThrows(
      () => spawn(`${dir}/script`, { stdin: "null", perChunk: true }),
      Deno.errors.PermissionDenied,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "spawn() never runs through setsid(1) a program this process may not run",
  ignore: !SETSID,
  async fn() {
    const setsid = ["/usr/bin/setsid", "/bin/setsid"].find((path) => {
      try {
        return Deno.statSync(path).isFile;
      } catch {
        return false;
      }
    })!;
    const module = new URL("../src/pool/_spawn.ts", import.meta.url).href;
    const script = `
      import { spawn } from ${JSON.stringify(module)};
      try {
        const child = spawn("/bin/echo", { args: ["ran"], stdin: "null", stdout: "inherit", perChunk: true });
        await child.status;
        console.log("started");
      } catch (error) {
        console.log(error.name);
      }`;
    const file = await Deno.makeTempFile({ suffix: ".ts" });
    try {
      await Deno.writeTextFile(file, script);
      const { stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          "--no-config",
          "--no-lock",
          `--allow-run=${setsid}`,
          "--allow-read",
          "--allow-env",
          file,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(
        decoder.decode(stdout).trim(),
        "NotCapable",
        decoder.decode(stderr),
      );
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name:
    "ProcessGroups.close() sends the watchdog what it was told in the same turn, and lets it do it",
  ignore: !LINUX,
  async fn() {
    // A parent allowed to run only Deno and sleep cannot kill a group
    // itself: it asks the watchdog to ("!"), and closes at once.
    const groupsModule =
      new URL("../src/pool/_groups.ts", import.meta.url).href;
    const spawnModule = new URL("../src/pool/_spawn.ts", import.meta.url).href;
    const script = `
      import { ProcessGroups } from ${JSON.stringify(groupsModule)};
      import { spawn } from ${JSON.stringify(spawnModule)};
      const child = spawn("sleep", { args: ["30"], stdin: "null", stdout: "null", stderr: "inherit" });
      const groups = new ProcessGroups();
      groups.watch(child.pid);
      groups.kill(child.pid);
      await groups.close();
      const end = await Promise.race([
        child.status.then((status) => status.signal),
        new Promise((resolve) => setTimeout(() => resolve("alive"), 2000)),
      ]);
      console.log(end);
      try { Deno.kill(child.pid, "SIGKILL"); } catch { /* gone */ }
      Deno.exit(0);`;
    const file = await Deno.makeTempFile({ suffix: ".ts" });
    try {
      await Deno.writeTextFile(file, script);
      const { stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          "--no-config",
          "--no-lock",
          `--allow-run=sleep,${Deno.execPath()}`,
          file,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(
        decoder.decode(stdout).trim(),
        "SIGKILL",
        decoder.decode(stderr),
      );
    } finally {
      await Deno.remove(file);
    }
  },
});
