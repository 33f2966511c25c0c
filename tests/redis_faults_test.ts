// Copyright the @ocycle/core authors. MIT license.
// Redis mode's faults with several worker processes: a producer (BufferEmit
// in mode "redis") in the test process, and fleet workers as OS processes of
// their own (fixtures/redis/worker_main.ts, serial mode, so that the worker
// process is the one running the callback), against a real redis-server.
// Each test kills, stops, poisons or cuts something mid-run, then checks that
// every chunk's result reached onDone exactly once (or its error onError),
// that nothing is left in the stream or pending in the group, and that no
// process is left behind. The last one puts the broker, the producer and two
// workers on hosts of their own (network namespaces), where that works.
// The in-process worker tests are tests/redis_worker_test.ts; the producer
// against scripted workers, tests/redis_mode_test.ts.

import { assert, assertEquals, assertLess } from "@std/assert";
import { BufferEmit, type ChunkError, type ChunkInfo } from "@ocycle/core";
import type { RedisWorkerStats } from "../redis.ts";
import { RedisClient } from "../src/fleet/_client.ts";
import { deadStream, startedHash } from "../src/fleet/_scripts.ts";
import { xpending } from "../src/fleet/_streams.ts";
import { decodeTaskEntry } from "../src/wire/_entries.ts";
import { deserialize } from "node:v8";
import { CI, RedisServer, skipWithoutRedis } from "./_redis_server.ts";
import type { FaultResult } from "./fixtures/redis/fault_handler.ts";

/** Signals, /proc and process groups are Linux's here. */
const LINUX = Deno.build.os === "linux";
if (!LINUX) {
  console.warn(
    "redis_faults_test.ts: skipped, as it needs Linux (signals, /proc)",
  );
}
const ignore = skipWithoutRedis("redis_faults_test.ts") || !LINUX;
const IMPORT_MAP = new URL("../.ci/import_map.json", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/redis/", import.meta.url);
const WORKER_MAIN = new URL("worker_main.ts", FIXTURES).pathname;
const PRODUCER_MAIN = new URL("producer_main.ts", FIXTURES).pathname;
const HANDLER = new URL("fault_handler.ts", FIXTURES);
const STREAM = "faults";
const SIZE = 64;
const POISON = 255;
const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a worker process printed when it stopped: its counts and its name. */
interface WorkerStats extends RedisWorkerStats {
  name: string;
}

/** A worker process: its name, pid, exit and output. */
interface WorkerProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: Deno.ChildProcess;
  readonly exited: Promise<
    { status: Deno.CommandStatus; stdout: string; stderr: string }
  >;
  gone: boolean;
}

/** Whether a process is alive: it exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** `deno run` of a fixture, optionally inside a network namespace. */
function denoCommand(
  script: string,
  args: string[],
  { netns, env = {} }: { netns?: string; env?: Record<string, string> } = {},
): Deno.Command {
  const deno = [
    Deno.execPath(),
    "run",
    "-A",
    "--no-lock",
    `--import-map=${IMPORT_MAP}`,
    script,
    ...args,
  ];
  const [command, ...rest] = netns === undefined
    ? deno
    : ["ip", "netns", "exec", netns, ...deno];
  return new Deno.Command(command!, {
    args: rest,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Polls `check` every 20 ms until it holds; fails naming `what` after `ms`. */
async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<number> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > ms) {
      throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    }
    await sleep(20);
  }
  return performance.now() - start;
}

/** Awaits `promise`, failing the test if it takes more than `ms`. */
async function within<T>(what: string, ms: number, promise: Promise<T>) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) =>
        timer = setTimeout(
          () => reject(new Error(`${what} took more than ${ms} ms`)),
          ms,
        )
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A redis-server, an admin connection and the worker processes of one test;
 * disposing of it kills whatever still runs, awaits it, and stops the server.
 */
class Fleet implements AsyncDisposable {
  readonly server: RedisServer;
  readonly admin: RedisClient;
  readonly workers = new Map<string, WorkerProcess>();
  readonly #sleepMs: number;

  private constructor(
    server: RedisServer,
    admin: RedisClient,
    sleepMs: number,
  ) {
    this.server = server;
    this.admin = admin;
    this.#sleepMs = sleepMs;
  }

  static async start(
    { sleepMs = 200, redisArgs = [] as string[] } = {},
  ): Promise<Fleet> {
    const server = await RedisServer.start(redisArgs);
    const admin = await RedisClient.connect(server.url, {
      connectTimeout: 1000,
      maxDelay: 100,
    });
    return new Fleet(server, admin, sleepMs);
  }

  get url(): string {
    return this.server.url;
  }

  /** Starts worker process `name` (serial mode, staleAfter 1000 ms, heartbeat 200 ms). */
  spawn(
    name: string,
    { mode = "serial", pool = 1 }: { mode?: string; pool?: number } = {},
  ): WorkerProcess {
    const child = denoCommand(WORKER_MAIN, [
      "--url",
      this.url,
      "--stream",
      STREAM,
      "--name",
      name,
      "--stale-after",
      "1000",
      "--heartbeat",
      "200",
      "--mode",
      mode,
      "--pool",
      String(pool),
    ], { env: { OCYCLE_SLEEP_MS: String(this.#sleepMs) } }).spawn();
    const stdout = new Response(child.stdout).text();
    const stderr = new Response(child.stderr).text();
    const worker: WorkerProcess = {
      name,
      pid: child.pid,
      child,
      gone: false,
      exited: Promise.all([child.status, stdout, stderr]).then(
        ([status, stdout, stderr]) => {
          worker.gone = true;
          return { status, stdout, stderr };
        },
      ),
    };
    this.workers.set(name, worker);
    return worker;
  }

  /**
   * Waits until `n` workers read the group: a consumer shows in XINFO only
   * once it got an entry, so count the connections blocked in XREADGROUP.
   */
  async ready(n: number): Promise<void> {
    await until(`${n} workers read the group`, async () => {
      const list = decoder.decode(
        await this.admin.command("CLIENT", "LIST") as Uint8Array,
      );
      return list.split("\n").filter((l) => l.includes(" cmd=xreadgroup"))
        .length >= n;
    }, 15_000);
  }

  /** The ids of the entries pending for consumer `name`. */
  async pendingFor(name: string): Promise<string[]> {
    const rows = await this.admin.command(
      "XPENDING",
      STREAM,
      "ocycle",
      "-",
      "+",
      100,
      name,
    ) as Uint8Array[][];
    return rows.map((r) => decoder.decode(r[0]));
  }

  /** The consumer that holds entry `id`, or undefined once it is acked. */
  async holder(id: string): Promise<string | undefined> {
    const rows = await this.admin.command(
      "XPENDING",
      STREAM,
      "ocycle",
      id,
      id,
      1,
    ) as Uint8Array[][];
    return rows[0] === undefined ? undefined : decoder.decode(rows[0][1]);
  }

  /** The chunk index of entry `id` in the stream. */
  async indexOf(id: string): Promise<number> {
    const [row] = await this.admin.command("XRANGE", STREAM, id, id) as [
      Uint8Array,
      Uint8Array[],
    ][];
    if (row === undefined) throw new Error(`entry ${id} is not in the stream`);
    const fields = new Map<string, Uint8Array>();
    for (let i = 0; i + 1 < row[1].length; i += 2) {
      fields.set(decoder.decode(row[1][i]), row[1][i + 1]!);
    }
    return decodeTaskEntry(fields, deserialize).info.index;
  }

  /** SIGTERMs each live worker and returns the stats each printed; each must exit 0. */
  async stop(): Promise<Map<string, WorkerStats>> {
    const stats = new Map<string, WorkerStats>();
    for (const w of this.workers.values()) {
      if (!w.gone) w.child.kill("SIGTERM");
    }
    for (const w of this.workers.values()) {
      const { status, stdout, stderr } = await w.exited;
      if (status.signal !== null) continue; // killed by the test
      if (status.code !== 0) continue; // died on purpose (poison)
      const last = stdout.trim().split("\n").at(-1) ?? "";
      assert(last.startsWith("{"), `${w.name} printed no stats: ${stderr}`);
      stats.set(w.name, JSON.parse(last));
    }
    return stats;
  }

  /** The end state of every test: nothing in the stream, nothing pending, no process left. */
  async assertClean(): Promise<void> {
    assertEquals(await this.admin.command("XLEN", STREAM), 0, "XLEN");
    assertEquals(
      (await xpending(this.admin, STREAM, "ocycle")).count,
      0,
      "XPENDING",
    );
    for (const w of this.workers.values()) {
      assert(w.gone, `${w.name} was not awaited`);
      assert(!alive(w.pid), `${w.name} (pid ${w.pid}) is still running`);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const w of this.workers.values()) {
      if (!w.gone) w.child.kill("SIGKILL");
    }
    await Promise.all([...this.workers.values()].map((w) => w.exited));
    await this.admin.close();
    await this.server[Symbol.asyncDispose]();
  }
}

/**
 * A producer of chunks of SIZE bytes (chunk i filled with i), results and
 * errors collected; `onDoneMs` makes each onDone busy for that long.
 */
function producer(
  url: string,
  options: { retries?: number; inFlight?: number; onDoneMs?: number } = {},
) {
  const done: [FaultResult, ChunkInfo][] = [];
  const errors: ChunkError[] = [];
  const { onDoneMs = 0, inFlight } = options;
  const emitter = new BufferEmit(HANDLER, SIZE, {
    mode: "redis",
    clip: true,
    redis: {
      url,
      stream: STREAM,
      ...(inFlight === undefined ? {} : { inFlight }),
    },
    retries: options.retries ?? 2,
    retryDelay: 50,
    onDone: (value, info) => {
      const until = performance.now() + onDoneMs;
      while (performance.now() < until) { /* a slow consumer */ }
      done.push([value as FaultResult, info]);
    },
    onError: (error) => errors.push(error),
  });
  return {
    emitter,
    done,
    errors,
    write(fill: number): void {
      emitter.write(new Uint8Array(SIZE).fill(fill));
    },
    /** Writes chunks 0 to n - 1 (chunk i filled with i % 250), waiting for room (`ready`) as a writer should. */
    async feed(n: number): Promise<void> {
      for (let i = 0; i < n; i++) {
        const chunk = new Uint8Array(SIZE).fill(i % 250);
        if (!emitter.write(chunk)) await emitter.ready;
      }
    },
    /** close(), failing (and aborting, so that nothing runs on) after `ms`. */
    async close(ms = 20_000): Promise<void> {
      try {
        await within("close()", ms, emitter.close());
      } catch (error) {
        await emitter.abort(error);
        throw error;
      }
    },
  };
}

/** Each index of `expected` came to onDone exactly once, with its own chunk's sum. */
function assertOnce(done: [FaultResult, ChunkInfo][], expected: number[]) {
  const indices = done.map(([, info]) => info.index).sort((a, b) => a - b);
  assertEquals(indices, expected, "one result per chunk");
  for (const [value, info] of done) {
    assertEquals(value.index, info.index, "a result reached its own chunk");
    assertEquals(value.sum, SIZE * (info.index % 250));
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

Deno.test({
  name:
    "redis mode: a worker process SIGKILLed mid-chunk loses it to another within seconds; every result once",
  ignore,
  async fn() {
    const started = performance.now();
    // Chunks longer than staleAfter (1000 ms): only the heartbeat keeps them
    // with the live workers.
    await using fleet = await Fleet.start({ sleepMs: 1300 });
    const names = ["w0", "w1", "w2"];
    for (const name of names) fleet.spawn(name);
    await fleet.ready(names.length);
    const p = producer(fleet.url);
    const n = 8;
    for (let i = 0; i < n; i++) p.write(i);

    let held: string[] = [];
    await until(
      "w1 runs a chunk",
      async () => (held = await fleet.pendingFor("w1")).length > 0,
    );
    await sleep(300); // into its run
    const victim = fleet.workers.get("w1")!;
    victim.child.kill("SIGKILL");
    const killed = performance.now();
    const [id] = held;
    assertEquals(await fleet.holder(id!), "w1", "w1 held it when killed");
    const index = await fleet.indexOf(id!);
    const took = await until(
      "another worker takes w1's chunk over",
      async () => (await fleet.holder(id!)) !== "w1",
    );
    assertLess(took, 3000, "taken over within staleAfter and a reclaim pass");

    await p.close(20_000);
    assertEquals(p.errors, []);
    assertOnce(p.done, range(n));
    const result = p.done.find(([, info]) => info.index === index);
    assert(
      result !== undefined && result[0].pid !== victim.pid,
      "the killed worker's chunk came from another",
    );
    assertEquals((await victim.exited).status.signal, "SIGKILL");
    const stats = await fleet.stop();
    const survivors = [stats.get("w0")!, stats.get("w2")!];
    // The killed worker's chunk, and no chunk of a live worker.
    assertEquals(
      [
        survivors.reduce((a, s) => a + s.reclaimed, 0),
        survivors.reduce((a, s) => a + s.fenced, 0),
      ],
      [1, 0],
      `reclaimed and fenced: ${JSON.stringify(survivors)}`,
    );
    await fleet.assertClean();
    console.log(
      `taken over ${Math.round(took)} ms after SIGKILL (${
        Math.round(performance.now() - killed)
      } ms to the end); test ${Math.round(performance.now() - started)} ms`,
    );
  },
});

Deno.test({
  name:
    "redis mode: a worker process SIGSTOPped past staleAfter, then SIGCONTed, has its late commit fenced; every result once",
  ignore,
  async fn() {
    const started = performance.now();
    await using fleet = await Fleet.start({ sleepMs: 400 });
    const names = ["w0", "w1", "w2"];
    for (const name of names) fleet.spawn(name);
    await fleet.ready(names.length);
    const p = producer(fleet.url);
    const n = 12;
    for (let i = 0; i < n; i++) p.write(i);

    let held: string[] = [];
    await until(
      "w0 runs a chunk",
      async () => (held = await fleet.pendingFor("w0")).length > 0,
    );
    await sleep(100); // into its 400 ms run
    const stalled = fleet.workers.get("w0")!;
    Deno.kill(stalled.pid, "SIGSTOP");
    let resumed = false;
    try {
      const [id] = held;
      const index = await fleet.indexOf(id!);
      // Past the deadline: another worker takes it over (or has run it).
      const took = await until(
        "another worker takes the stalled worker's chunk over",
        async () => (await fleet.holder(id!)) !== "w0",
      );
      assertLess(took, 3000);
      await until(
        "the stalled worker's chunk has its result",
        () => p.done.some(([, info]) => info.index === index),
      );
      Deno.kill(stalled.pid, "SIGCONT");
      resumed = true;
      await p.close(20_000);
      assertEquals(p.errors, []);
      assertOnce(p.done, range(n));
      const result = p.done.find(([, info]) => info.index === index)!;
      assert(result[0].pid !== stalled.pid, "the result came from another");
    } finally {
      if (!resumed) Deno.kill(stalled.pid, "SIGCONT");
    }
    // Its timer fires at once on SIGCONT; give its commit a moment.
    await sleep(300);
    const stats = await fleet.stop();
    const w0 = stats.get("w0")!;
    assert(
      w0.fenced >= 1,
      `w0's late commit was fenced: ${JSON.stringify(w0)}`,
    );
    assert(
      stats.get("w1")!.reclaimed + stats.get("w2")!.reclaimed >= 1,
      "another worker reclaimed it",
    );
    await fleet.assertClean();
    console.log(
      `w0 ${JSON.stringify(w0)}; test ${
        Math.round(performance.now() - started)
      } ms`,
    );
  },
});

Deno.test({
  name:
    "redis mode: a poison chunk that kills every worker process running it lands in STREAM:dead once it took down maxStalls (3) workers, whatever its retries; onError gets a crash naming a worker",
  ignore,
  async fn() {
    const started = performance.now();
    await using fleet = await Fleet.start({ sleepMs: 100 });
    const retries = 1;
    let next = 0;
    const died: string[] = [];
    let stopping = false;
    // Keeps three workers alive: one that dies is replaced.
    const keep = (): void => {
      const w = fleet.spawn(`w${next++}`);
      void w.exited.then(({ status }) => {
        if (stopping) return;
        died.push(`${w.name}: ${status.code}`);
        if (next < 8) keep();
      });
    };
    for (let i = 0; i < 3; i++) keep();
    await fleet.ready(3);
    const p = producer(fleet.url, { retries });
    const n = 10;
    const poison = 3;
    for (let i = 0; i < n; i++) p.write(i === poison ? POISON : i);
    await p.close(20_000);
    stopping = true;

    assertOnce(p.done, range(n).filter((i) => i !== poison));
    assertEquals(p.errors.length, 1, p.errors.map(String).join("\n"));
    const error = p.errors[0]!;
    assertEquals([error.kind, error.mode, error.info.index], [
      "crash",
      "redis",
      poison,
    ]);
    assert(
      error.worker !== undefined && fleet.workers.has(error.worker),
      `the error names a worker: ${error.worker}`,
    );
    assert(
      error.message.includes(`(worker ${error.worker})`),
      error.message,
    );
    assert(
      error.message.includes("took down 3 workers in a row"),
      error.message,
    );
    // Each delivery but the last killed a worker process (retries spent on
    // none of them); the last one dead-lettered it without running it.
    assertEquals(died.length, 3, died.join(", "));
    assert(died.every((d) => d.endsWith(": 3")), died.join(", "));
    const dead = await fleet.admin.command(
      "XRANGE",
      deadStream(STREAM),
      "-",
      "+",
    ) as [Uint8Array, Uint8Array[]][];
    assertEquals(dead.length, 1);
    const fields = dead[0]![1].map((b) => decoder.decode(b));
    assertEquals(fields[fields.indexOf("deliveries") + 1], "4");
    assertEquals(fields[fields.indexOf("worker") + 1], error.worker);
    const stats = await fleet.stop();
    assertEquals(
      [...stats.values()].reduce((a, s) => a + s.deadLettered, 0),
      1,
    );
    await fleet.assertClean();
    console.log(
      `died: ${died.join(", ")}; test ${
        Math.round(performance.now() - started)
      } ms`,
    );
  },
});

Deno.test({
  name:
    "redis mode: redis-server SIGKILLed and restarted mid-run, with or without its data: every result once, close() ends",
  ignore,
  async fn(t) {
    for (
      const [how, redisArgs] of [
        ["comes back empty", []],
        ["comes back with its data (appendonly)", [
          "--appendonly",
          "yes",
          "--appendfsync",
          "always",
        ]],
      ] as const
    ) {
      await t.step(how, async () => {
        const started = performance.now();
        await using fleet = await Fleet.start({
          sleepMs: 100,
          redisArgs: [...redisArgs],
        });
        for (const name of ["w0", "w1"]) fleet.spawn(name);
        await fleet.ready(2);
        const p = producer(fleet.url, { retries: 3 });
        const n = 20;
        for (let i = 0; i < n; i++) p.write(i);
        await until("some results", () => p.done.length >= 4);
        await fleet.server.stop("SIGKILL");
        const before = p.done.length;
        await sleep(500);
        await fleet.server.restart();
        await p.close(20_000);
        assertEquals(p.errors, []);
        assertOnce(p.done, range(n));
        const { retried } = p.emitter.stats;
        // Entries that went with the data are added again by the producer;
        // kept (appendfsync always), they are not.
        if (redisArgs.length === 0) assert(retried > 0, "entries were lost");
        else assertEquals(retried, 0, "entries were kept");
        await fleet.stop();
        await fleet.assertClean();
        console.log(
          `${how}: ${before} results before the kill, ${retried} chunks added again; ${
            Math.round(performance.now() - started)
          } ms`,
        );
      });
    }
  },
});

/** Lines written to this process's stderr (the producer's warnings) until `restore()`. */
function captureStderr(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  const original = Deno.stderr.writeSync;
  Deno.stderr.writeSync = (bytes: Uint8Array): number => {
    lines.push(decoder.decode(bytes));
    return original.call(Deno.stderr, bytes);
  };
  return { lines, restore: () => void (Deno.stderr.writeSync = original) };
}

/** The entries of STREAM:dead. */
async function deadLetters(admin: RedisClient): Promise<number> {
  return await admin.command("XLEN", deadStream(STREAM)) as number;
}

Deno.test({
  name:
    "redis mode: a worker process SIGKILLed under the default retries (0) fails no chunk, its claimed and never started entries included",
  ignore,
  async fn() {
    const started = performance.now();
    // Fast chunks, so each worker reads a few ahead of the one it runs.
    await using fleet = await Fleet.start({ sleepMs: 4 });
    const names = ["w0", "w1", "w2"];
    for (const name of names) fleet.spawn(name);
    await fleet.ready(names.length);
    const p = producer(fleet.url, { retries: 0 });
    const n = 600;
    const feeding = p.feed(n);
    // Frozen (SIGSTOP) where it holds one entry started and one read ahead,
    // never started, it is killed: both must run elsewhere, free.
    const victim = fleet.workers.get("w1")!;
    const startCount = async (id: string) =>
      await fleet.admin.command("HGET", startedHash(STREAM), id) !== null;
    let held: string[] = [];
    let running = 0;
    await until(
      "w1 is caught holding a started and an unstarted entry",
      async () => {
        if ((await fleet.pendingFor("w1")).length < 2) return false;
        Deno.kill(victim.pid, "SIGSTOP");
        held = await fleet.pendingFor("w1");
        running = 0;
        for (const id of held) if (await startCount(id)) running++;
        if (running >= 1 && running < held.length) return true;
        Deno.kill(victim.pid, "SIGCONT");
        return false;
      },
    );
    victim.child.kill("SIGKILL");
    await victim.exited;
    const neverStarted = held.length - running;
    await feeding;
    await p.close(30_000);
    assertEquals(p.errors.map(String), []);
    assertOnce(p.done, range(n));
    assertEquals(p.emitter.stats.retried, 0, "chunks added again");
    assertEquals(await deadLetters(fleet.admin), 0);
    const stats = await fleet.stop();
    const reclaimed = [...stats.values()].reduce((a, s) => a + s.reclaimed, 0);
    assert(reclaimed >= held.length, `reclaimed ${reclaimed} of ${held}`);
    await fleet.assertClean();
    console.log(
      `w1 held ${held.length} entries when killed, ${neverStarted} never started; test ${
        Math.round(performance.now() - started)
      } ms`,
    );
  },
});

Deno.test({
  name:
    "redis mode: more than 100 chunks in flight and an onDone of a few ms: every result exactly once, none failed as lost, none dropped as late",
  ignore,
  async fn() {
    const started = performance.now();
    await using fleet = await Fleet.start({ sleepMs: 0 });
    const names = ["w0", "w1", "w2"];
    for (const name of names) fleet.spawn(name);
    await fleet.ready(names.length);
    const stderr = captureStderr();
    try {
      const p = producer(fleet.url, {
        retries: 0,
        inFlight: 400,
        onDoneMs: 10,
      });
      const n = 400;
      const feeding = p.feed(n);
      await feeding;
      await p.close(60_000);
      assertEquals(p.errors.map(String), []);
      assertOnce(p.done, range(n));
      // Nothing was lost, so nothing may have been judged lost and added again.
      assertEquals(p.emitter.stats.retried, 0, "chunks added again");
    } finally {
      stderr.restore();
    }
    const said = stderr.lines.join("");
    assert(!said.includes("dropped a result"), said);
    await fleet.stop();
    await fleet.assertClean();
    console.log(`test ${Math.round(performance.now() - started)} ms`);
  },
});

Deno.test({
  name:
    "redis mode: redis-server SIGSTOPped past the command deadline and every staleAfter, then SIGCONTed: under the default retries (0) no chunk fails, none is dead-lettered, every result once",
  ignore,
  async fn() {
    const started = performance.now();
    await using fleet = await Fleet.start({ sleepMs: 100 });
    for (const name of ["w0", "w1"]) fleet.spawn(name);
    await fleet.ready(2);
    const info = decoder.decode(
      await fleet.admin.command("INFO", "server") as Uint8Array,
    );
    const pid = Number(/process_id:(\d+)/.exec(info)![1]);
    const p = producer(fleet.url, { retries: 0 });
    const n = 40;
    const feeding = p.feed(n);
    await until("some results", () => p.done.length >= 4);
    Deno.kill(pid, "SIGSTOP");
    try {
      // Past the clients' command deadline (5 s): connections torn down;
      // past staleAfter (1 s): every pending entry looks abandoned.
      await sleep(7000);
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    await feeding;
    await p.close(40_000);
    assertEquals(p.errors.map(String), []);
    assertOnce(p.done, range(n));
    assertEquals(p.emitter.stats.retried, 0, "chunks added again");
    assertEquals(await deadLetters(fleet.admin), 0);
    await fleet.stop();
    await fleet.assertClean();
    console.log(`test ${Math.round(performance.now() - started)} ms`);
  },
});

Deno.test({
  name:
    "redis mode: redis-server SIGKILLed and restarted with its data (AOF), no worker fault, default retries (0): no chunk fails, none is dead-lettered, no result dropped as late",
  ignore,
  async fn() {
    const started = performance.now();
    await using fleet = await Fleet.start({
      sleepMs: 50,
      redisArgs: ["--appendonly", "yes", "--appendfsync", "always"],
    });
    for (const name of ["w0", "w1"]) fleet.spawn(name);
    await fleet.ready(2);
    const stderr = captureStderr();
    try {
      const p = producer(fleet.url, { retries: 0 });
      const first = 40;
      await p.feed(first);
      await until("the first results", () => p.done.length === first);
      // A burst of adds, cut off by the kill: no reply comes for any.
      const n = first + 40;
      for (let i = first; i < n; i++) p.write(i);
      await fleet.server.stop("SIGKILL");
      await sleep(1500);
      await fleet.server.restart();
      await p.close(40_000);
      assertEquals(p.errors.map(String), []);
      assertOnce(p.done, range(n));
      assertEquals(p.emitter.stats.retried, 0, "no attempt spent");
    } finally {
      stderr.restore();
    }
    const said = stderr.lines.join("");
    assert(!said.includes("dropped a result"), said);
    assertEquals(await deadLetters(fleet.admin), 0);
    await fleet.stop();
    await fleet.assertClean();
    console.log(`test ${Math.round(performance.now() - started)} ms`);
  },
});

Deno.test({
  name:
    "redis mode: a killed worker's entry behind more live pending entries than one XAUTOCLAIM scans is taken over within seconds, while they run",
  ignore,
  async fn() {
    const started = performance.now();
    // Every chunk runs 20 s: the live ones stay pending all through the test.
    await using fleet = await Fleet.start({ sleepMs: 20_000 });
    const live = fleet.spawn("live", { mode: "thread", pool: 12 });
    await fleet.ready(1);
    const p = producer(fleet.url, { retries: 0 });
    try {
      for (let i = 0; i < 12; i++) p.write(i);
      await until(
        "the live worker holds 12",
        async () => (await fleet.pendingFor("live")).length === 12,
        20_000,
      );
      const doomed = fleet.spawn("doomed");
      await until(
        "the doomed worker reads",
        async () =>
          (await fleet.pendingFor("live")).length === 12 &&
          decoder.decode(
              await fleet.admin.command("CLIENT", "LIST") as Uint8Array,
            ).split("\n").filter((l) => l.includes(" cmd=xreadgroup"))
              .length >= 2,
        20_000,
      );
      p.write(12);
      let held: string[] = [];
      await until(
        "the doomed worker holds the 13th",
        async () => (held = await fleet.pendingFor("doomed")).length === 1,
      );
      doomed.child.kill("SIGKILL");
      await doomed.exited;
      const [id] = held;
      // Its reclaims ask for 1 entry: XAUTOCLAIM ... COUNT 1 scans about 10.
      fleet.spawn("heir");
      const took = await until(
        "the heir takes the killed worker's entry over",
        async () => (await fleet.holder(id!)) === "heir",
        10_000,
      );
      assertEquals((await fleet.pendingFor("live")).length, 12);
      assert(!live.gone, "the live worker still runs its 12");
      console.log(
        `taken over ${Math.round(took)} ms after the heir started; test ${
          Math.round(performance.now() - started)
        } ms`,
      );
    } finally {
      await p.emitter.abort(new Error("the test is over"));
    }
  },
});

/** Runs a command to its end; its success and its output. */
async function run(command: string, args: string[]) {
  const { success, stdout, stderr } = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    success,
    stdout: decoder.decode(stdout).trim(),
    stderr: decoder.decode(stderr).trim(),
  };
}

/** Runs `ip` with `args`, failing with its stderr. */
async function ip(...args: string[]): Promise<void> {
  const { success, stderr } = await run("ip", args);
  if (!success) throw new Error(`ip ${args.join(" ")} failed: ${stderr}`);
}

/** Why network namespaces cannot be made here, or undefined where they can. */
async function netnsUnavailable(): Promise<string | undefined> {
  if (ignore) return "the Redis tests do not run here";
  if (Deno.uid() !== 0) return "not root (ip netns add needs root)";
  const probe = `ocprobe${Deno.pid}`;
  const added = await run("ip", ["netns", "add", probe]).catch((e) => ({
    success: false,
    stderr: String(e),
  }));
  if (!added.success) return `'ip netns add' failed: ${added.stderr}`;
  await run("ip", ["netns", "del", probe]);
  const cli = await run("redis-cli", ["--version"]).catch(() => undefined);
  if (!cli?.success) return "redis-cli is missing";
  return undefined;
}

const NO_NETNS = await netnsUnavailable();
if (NO_NETNS !== undefined && !ignore) {
  console.warn(
    `redis_faults_test.ts: the test with separate network namespaces is skipped${
      CI ? " (also under CI=true)" : ""
    }: ${NO_NETNS}`,
  );
}

/**
 * Hosts of their own on one machine: a network namespace each, the broker's
 * holding a bridge (SUBNET.1), the others joined to it by a veth pair each.
 * Names and the subnet are random, so that runs side by side do not meet;
 * disposing of it deletes the namespaces, and with them the links.
 */
class Hosts implements AsyncDisposable {
  readonly tag = `oc${Deno.pid % 100_000}${
    Math.floor(Math.random() * 256).toString(16)
  }`;
  readonly subnet = `10.77.${1 + Math.floor(Math.random() * 250)}`;
  readonly #made: string[] = [];
  readonly #links: string[] = [];
  #hosts = 1;

  /** The broker's namespace, with the bridge; returns its address. */
  async broker(): Promise<string> {
    const ns = this.ns("b");
    await this.#add(ns);
    await ip("-n", ns, "link", "add", "br0", "type", "bridge");
    await ip("-n", ns, "addr", "add", `${this.subnet}.1/24`, "dev", "br0");
    await ip("-n", ns, "link", "set", "br0", "up");
    return `${this.subnet}.1`;
  }

  /** Host `name`'s namespace, wired to the broker's bridge; returns its address. */
  async host(name: string): Promise<string> {
    const ns = this.ns(name);
    const address = `${this.subnet}.${++this.#hosts}`;
    await this.#add(ns);
    const [here, there] = [`${this.tag}${name}h`, `${this.tag}${name}b`];
    await ip("link", "add", here, "type", "veth", "peer", "name", there);
    this.#links.push(here);
    await ip("link", "set", here, "netns", ns);
    await ip("link", "set", there, "netns", this.ns("b"));
    await ip("-n", ns, "link", "set", here, "name", "eth0");
    await ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0");
    await ip("-n", ns, "link", "set", "eth0", "up");
    await ip("-n", this.ns("b"), "link", "set", there, "master", "br0");
    await ip("-n", this.ns("b"), "link", "set", there, "up");
    return address;
  }

  ns(name: string): string {
    return `${this.tag}${name}`;
  }

  async #add(ns: string): Promise<void> {
    await ip("netns", "add", ns);
    this.#made.push(ns);
    await ip("-n", ns, "link", "set", "lo", "up");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // A link still in this namespace (not moved yet) goes by itself.
    for (const link of this.#links) await run("ip", ["link", "del", link]);
    for (const ns of this.#made.reverse()) {
      await run("ip", ["netns", "del", ns]);
    }
  }
}

Deno.test({
  name:
    "redis mode: broker, producer and two workers on hosts of their own (network namespaces): every result once",
  ignore: NO_NETNS !== undefined,
  async fn() {
    const started = performance.now();
    const children: Deno.ChildProcess[] = [];
    const dir = await Deno.makeTempDir({ prefix: "ocycle_netns_" });
    let tag = "";
    try {
      await using hosts = new Hosts();
      tag = hosts.tag;
      const broker = await hosts.broker();
      const addresses = {
        producer: await hosts.host("p"),
        w1: await hosts.host("w1"),
        w2: await hosts.host("w2"),
      };
      const port = 6379;
      // Another host: protected mode takes a password (and the URL carries it).
      const password = `pw${crypto.randomUUID().slice(0, 8)}`;
      const url = `redis://default:${password}@${broker}:${port}`;
      const redis = new Deno.Command("ip", {
        args: ["netns", "exec", hosts.ns("b"), "redis-server"]
          .concat(["--port", String(port), "--bind", broker])
          .concat(["--save", "", "--appendonly", "no", "--dir", dir])
          .concat(["--logfile", `${dir}/redis.log`])
          .concat(["--requirepass", password]),
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      children.push(redis);
      const cli = (...args: string[]) =>
        run("ip", [
          "netns",
          "exec",
          hosts.ns("b"),
          "redis-cli",
          "-h",
          broker,
          "-p",
          String(port),
          "-a",
          password,
          "--no-auth-warning",
          ...args,
        ]);
      await until(
        "redis-server answers in the broker's namespace",
        async () => (await cli("PING")).stdout === "PONG",
      );
      const workers = ["w1", "w2"].map((name) => {
        const child = denoCommand(WORKER_MAIN, [
          "--url",
          url,
          "--stream",
          STREAM,
          "--name",
          name,
        ], { netns: hosts.ns(name), env: { OCYCLE_SLEEP_MS: "100" } })
          .spawn();
        children.push(child);
        return {
          name,
          child,
          out: Promise.all([
            new Response(child.stdout).text(),
            new Response(child.stderr).text(),
          ]),
        };
      });
      const n = 20;
      const producerChild = denoCommand(PRODUCER_MAIN, [
        "--url",
        url,
        "--stream",
        STREAM,
        "--chunks",
        String(n),
        "--size",
        String(SIZE),
      ], { netns: hosts.ns("p") }).spawn();
      children.push(producerChild);
      const [status, stdout, stderr] = await within(
        "the producer",
        25_000,
        Promise.all([
          producerChild.status,
          new Response(producerChild.stdout).text(),
          new Response(producerChild.stderr).text(),
        ]),
      );
      assert(status.success, `the producer failed: ${stderr}`);
      const report = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
        done: FaultResult[];
        errors: string[];
        xlen: number;
        pending: number;
      };
      assertEquals(report.errors, []);
      assertEquals(
        report.done.map((r) => r.index).sort((a, b) => a - b),
        range(n),
        "one result per chunk",
      );
      for (const r of report.done) assertEquals(r.sum, SIZE * (r.index % 250));
      assertEquals([report.xlen, report.pending], [0, 0]);
      // The workers reach the broker from their own addresses.
      const clients = (await cli("CLIENT", "LIST")).stdout;
      for (const address of [addresses.w1, addresses.w2]) {
        assert(clients.includes(`addr=${address}:`), clients);
      }
      const pids = new Set(report.done.map((r) => r.pid));
      for (const w of workers) {
        assert(pids.has(w.child.pid), `${w.name} ran chunks`);
        w.child.kill("SIGTERM");
      }
      for (const w of workers) {
        const [{ code }, [out, err]] = await Promise.all([
          w.child.status,
          w.out,
        ]);
        assertEquals(code, 0, err);
        const stats = JSON.parse(out.trim()) as WorkerStats;
        assert(stats.done > 0, JSON.stringify(stats));
      }
      assertEquals((await cli("XLEN", STREAM)).stdout, "0");
      assertEquals(
        (await cli("XPENDING", STREAM, "ocycle")).stdout.split("\n")[0],
        "0",
      );
      redis.kill("SIGTERM");
      await redis.status;
      console.log(
        `hosts ${broker} (broker), ${addresses.producer} (producer), ${addresses.w1} and ${addresses.w2} (workers); test ${
          Math.round(performance.now() - started)
        } ms`,
      );
    } finally {
      for (const child of children) {
        try {
          child.kill("SIGKILL");
        } catch {
          // ended already
        }
      }
      await Promise.all(children.map((c) => c.status));
      await Deno.remove(dir, { recursive: true });
    }
    for (const child of children) assert(!alive(child.pid));
    const hosts = await run("ip", ["netns", "list"]);
    assert(!hosts.stdout.includes(tag), `namespaces left: ${hosts.stdout}`);
    const links = await run("ip", ["-o", "link", "show"]);
    assert(!links.stdout.includes(tag), `links left: ${links.stdout}`);
  },
});
