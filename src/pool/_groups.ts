// Copyright the @ocycle/core authors. MIT license.
// The process groups of a pool's children and `--exec` commands. Each one is
// started in a session and process group of its own (pool/_spawn.ts), so that a
// terminal's Ctrl-C, which signals the whole foreground process group, reaches
// only the parent, which decides when they stop; and so that killing one ends
// its whole tree, such as `sh -c`'s grandchildren. The price is that nothing
// ends them when the parent dies: so the pool's first process also starts a
// watchdog (pool/_watchdog.ts), told of every group, which kills those still
// registered once its stdin ends, however the parent ended.

import { describe, warn } from "../run/_runner.ts";
import { spawn, type Spawned } from "./_spawn.ts";
import type { Groups } from "./_transport.ts";

/** POSIX has sessions and process groups; Windows has neither here. */
const POSIX = Deno.build.os !== "windows";

const encoder = new TextEncoder();

/** Said once per process: the watchdog could not be started. */
let warned = false;

/** The watchdog's entry, wherever this package was loaded from. */
const WATCHDOG_URL = new URL("./_watchdog.ts", import.meta.url);

/**
 * Never called: it puts the watchdog in this package's module graph, so that
 * `deno cache` and `deno install` fetch it with the rest, and it starts with
 * no network.
 */
export const watchdogEntry = (): Promise<unknown> => import("./_watchdog.ts");

/**
 * A pool's process groups and their watchdog, started on first use. What it
 * tells the watchdog goes in one write per turn of the event loop, so that
 * a command's end and the next one's start cost one write, not two.
 */
export class ProcessGroups implements Groups {
  #watchdog: Spawned | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #closing: Promise<void> | undefined;
  /** Lines not yet written to the watchdog. */
  #lines = "";
  /** Set once the watchdog was asked to kill a group ("!"): it has work to do. */
  #asked = false;

  watch(pid: number): void {
    if (POSIX) this.#tell(`+${pid}`, true);
  }

  kill(pid: number): void {
    if (!POSIX || pid <= 1) return;
    // Deno.kill needs the whole run permission, which a parent allowed to
    // run only Deno may lack; the watchdog always has it.
    if (Deno.permissions.querySync({ name: "run" }).state === "granted") {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // The group is gone already.
      }
      this.#tell(`-${pid}`, false);
    } else {
      this.#asked = true;
      this.#tell(`!${pid}`, false);
    }
  }

  /**
   * Ends the watchdog, once every group it was told of has ended; resolves
   * once it is gone. When this process killed them all itself, the watchdog
   * has nothing left to do and is killed, not waited for: it may still be
   * starting (a Deno process), which a short run would otherwise wait for.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      if (this.#watchdog === undefined) return;
      // Waited for now: its exit must keep this program running.
      this.#watchdog.ref();
      this.#flush();
      if (!this.#asked) this.#watchdog.kill();
      await this.#writer!.close().catch(() => {});
      await this.#watchdog.status;
    })();
  }

  /** Sends the watchdog one line (at the end of this turn), starting it first if `start`. */
  #tell(line: string, start: boolean): void {
    if (this.#closing !== undefined) return;
    if (this.#watchdog === undefined) {
      if (!start || !this.#start()) return;
    }
    if (this.#lines === "") queueMicrotask(() => this.#flush());
    this.#lines += line + "\n";
  }

  #flush(): void {
    if (this.#lines === "") return;
    this.#writer!.write(encoder.encode(this.#lines)).catch(() => {
      // It is gone: its status says so.
    });
    this.#lines = "";
  }

  #start(): boolean {
    try {
      this.#watchdog = spawn(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--no-prompt",
          "--no-config",
          "--no-lock",
          "--allow-run",
          // Loaded from a host Deno does not allow by default.
          ...(/^https?:$/.test(WATCHDOG_URL.protocol)
            ? [`--allow-import=${WATCHDOG_URL.host}`]
            : []),
          WATCHDOG_URL.href,
        ],
        stdout: "null",
        stderr: "inherit",
      });
    } catch (error) {
      this.#closing = Promise.resolve();
      say(`could not be started (${describe(error)})`);
      return false;
    }
    // It outlives the children it watches, and must not keep this program
    // running once they are gone (a pool whose idle children ended).
    this.#watchdog.unref();
    this.#writer = this.#watchdog.stdin.getWriter();
    this.#watchdog.status.then((status) => {
      if (this.#closing === undefined) {
        say(`exited early (${status.signal ?? `exit code ${status.code}`})`);
      }
    });
    return true;
  }
}

function say(what: string): void {
  if (warned) return;
  warned = true;
  warn(
    "watchdog",
    `${what}: children and commands will outlive this process if it is killed`,
  );
}
