// Copyright the @ocycle/core authors. MIT license.
// The one way this package starts a process: process-mode children
// (pool/_process.ts), `--exec` commands (cli/_exec.ts) and the pool's watchdog
// (pool/_groups.ts). A process is started in a session and process group of
// its own, so that a terminal's Ctrl-C (SIGINT to the whole foreground group)
// reaches only the parent, which decides when it stops, and so that killing
// it kills whatever it started too (`sh -c`'s grandchildren). When `groups`
// is given, the group is watched there (the watchdog kills it if the parent
// dies) and, once the process exits, what it left running in its group is
// killed, so that nothing outlives it or holds its pipes open.
//
// How the group is made is what costs. Deno's `detached` calls setsid() in a
// fork() of this whole process: the parent copies its page tables, and the
// child throws them away at exec, the copy on the parent's one JavaScript
// thread; per `--exec` command it cost more than the command (issue 16). So
// a process started once per chunk (`perChunk`) starts, on Linux where
// setsid(1) is at hand and allowed, through it: spawned without a fork (vfork
// and exec), it calls setsid() and execs the program under the same pid. The
// price: until setsid(1) gets to setsid(), a fraction of a millisecond, it is
// still in the parent's group, where a terminal's Ctrl-C would reach it. So
// processes that live long (children, the watchdog) start `detached`, once,
// in a session of their own before they run anything; so does a command
// elsewhere, or when setsid(1) cannot be run.

import type { Groups } from "./_transport.ts";

/** What to start, and how. */
export interface SpawnOptions {
  /** The arguments after the program. */
  readonly args?: readonly string[];
  /** Environment variables to set. */
  readonly env?: Record<string, string>;
  /** Start from an empty environment (plus `env`). */
  readonly clearEnv?: boolean;
  /** @default {"piped"} */
  readonly stdin?: "piped" | "null";
  /** @default {"piped"} */
  readonly stdout?: "piped" | "null";
  /** @default {"piped"} */
  readonly stderr?: "piped" | "inherit";
  /**
   * Where its process group is watched; without it the process still gets a
   * session of its own (the watchdog itself), but nobody kills it with its
   * leftovers.
   */
  readonly groups?: Groups;
  /**
   * Started once per chunk, so that its start must be cheap: through
   * setsid(1) where it may be (see above).
   *
   * @default {false}
   */
  readonly perChunk?: boolean;
}

/** A started process. */
export interface Spawned {
  readonly pid: number;
  /** Its stdin, when piped. */
  readonly stdin: WritableStream<Uint8Array>;
  /** Its stdout, when piped. */
  readonly stdout: ReadableStream<Uint8Array>;
  /** Its stderr, when piped. */
  readonly stderr: ReadableStream<Uint8Array>;
  /**
   * How it exited; with `groups`, resolves once what it left running in its
   * group has been killed too.
   */
  readonly status: Promise<Deno.CommandStatus>;
  /**
   * Kills it and, with `groups`, its whole group; never throws (it may be
   * gone already).
   */
  kill(): void;
  /** Lets this program end while it runs (as `Deno.ChildProcess.unref()`). */
  unref(): void;
  /** Keeps this program running until it exits again (the default). */
  ref(): void;
}

/** POSIX has sessions and process groups; Windows has neither here. */
const POSIX = Deno.build.os !== "windows";

/**
 * setsid(1), where it may be used: undefined until the first start looks
 * for it, then its path, or null when processes start `detached` instead.
 */
let setsid: string | null | undefined;

/** Resolved paths of programs named without a slash, by name. */
const resolved = new Map<string, string | null>();

/**
 * Starts `command` in a session and process group of its own.
 *
 * @throws {Deno.errors.NotFound} If there is no such program.
 * @throws {Error} If it cannot be started (permission, not executable).
 */
export function spawn(command: string, options: SpawnOptions = {}): Spawned {
  const args = options.args ?? [];
  const stdio = {
    stdin: options.stdin ?? "piped",
    stdout: options.stdout ?? "piped",
    stderr: options.stderr ?? "piped",
    ...(options.clearEnv === undefined ? {} : { clearEnv: options.clearEnv }),
    ...(options.env === undefined ? {} : { env: options.env }),
  } as const;
  let child: Deno.ChildProcess | undefined;
  const wrapper = POSIX && options.perChunk === true ? findSetsid() : null;
  const program = wrapper === null ? null : resolve(command);
  if (wrapper !== null && program !== null) {
    try {
      child = new Deno.Command(wrapper, {
        args: ["--", program, ...args],
        ...stdio,
      }).spawn();
    } catch (error) {
      // Not allowed to run it after all (--allow-run names only some
      // programs): from now on, `detached`.
      if (!(error instanceof Deno.errors.NotCapable)) throw error;
      setsid = null;
    }
  }
  child ??= new Deno.Command(command, {
    args: args as string[],
    ...stdio,
    detached: POSIX,
  }).spawn();
  return new Process(child, options.groups);
}

class Process implements Spawned {
  readonly pid: number;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #groups: Groups | undefined;
  /** Set once its group is killed, or it exited: nothing is left to kill. */
  #done = false;

  constructor(child: Deno.ChildProcess, groups: Groups | undefined) {
    this.#child = child;
    this.#groups = groups;
    this.pid = child.pid;
    groups?.watch(child.pid);
    this.status = child.status.then((status) => {
      // Whatever it started dies with it, and lets go of its pipes.
      if (!this.#done) groups?.kill(child.pid);
      this.#done = true;
      return status;
    });
  }

  get stdin(): WritableStream<Uint8Array> {
    return this.#child.stdin;
  }

  get stdout(): ReadableStream<Uint8Array> {
    return this.#child.stdout;
  }

  get stderr(): ReadableStream<Uint8Array> {
    return this.#child.stderr;
  }

  unref(): void {
    this.#child.unref();
  }

  ref(): void {
    this.#child.ref();
  }

  kill(): void {
    if (!this.#done) this.#groups?.kill(this.pid);
    this.#done = true;
    try {
      // In case the group could not be killed: the process at least.
      this.#child.kill("SIGKILL");
    } catch {
      // It has just exited.
    }
  }
}

/** setsid(1)'s path, if it may be used here; looked for once. */
function findSetsid(): string | null {
  if (setsid !== undefined) return setsid;
  setsid = null;
  if (Deno.build.os !== "linux") return setsid;
  for (const path of ["/usr/bin/setsid", "/bin/setsid"]) {
    if (!granted({ name: "run", command: path }) || !isProgram(path)) continue;
    setsid = path;
    break;
  }
  return setsid;
}

/**
 * Whether this process holds a permission. Only ever asked, never
 * requested: a terminal would prompt for it.
 */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/** Whether `path` is an executable file (false when it may not be looked at). */
function isProgram(path: string): boolean {
  if (!granted({ name: "read", path })) return false;
  try {
    const info = Deno.statSync(path);
    return info.isFile && (info.mode === null || (info.mode & 0o111) !== 0);
  } catch {
    return false;
  }
}

/**
 * The path setsid(1) is to exec: `command` itself when it names a path to a
 * program, else the first match in PATH (as execvp looks); null when it
 * cannot be found, PATH cannot be read, or this process may not run it
 * (setsid(1) would run it unasked), so that it starts `detached` and Deno
 * reports a missing program or a denied one as it does.
 */
function resolve(command: string): string | null {
  let path = resolved.get(command);
  if (path !== undefined) return path;
  path = null;
  // A path is checked too: setsid(1) would start and fail, exit 126 or 127,
  // where Deno's own spawn throws NotFound or PermissionDenied at once.
  if (command.includes("/")) path = isProgram(command) ? command : null;
  else if (granted({ name: "env", variable: "PATH" })) {
    for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
      const candidate = `${dir === "" ? "." : dir}/${command}`;
      if (isProgram(candidate)) {
        path = candidate;
        break;
      }
    }
  }
  if (path !== null && !granted({ name: "run", command: path })) path = null;
  resolved.set(command, path);
  return path;
}
