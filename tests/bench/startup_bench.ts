// Copyright the @ocycle/core authors. MIT license.
/**
 * Start-up of a serial program (tests/fixtures/serial_program.ts: import
 * BufferEmit, emit one chunk, close) against an empty program, and against
 * the same program on another checkout of this repository (the code before
 * modes were loaded on first use), each a fresh `deno run` with the offline
 * import map. Rounds alternate the programs, so that the load of a shared
 * machine falls on all of them alike; the median of each counts. Mark: the
 * serial program starts in at most 1.6 × the empty program's time.
 *
 * Usage (from the repository root):
 *
 * ```sh
 * git worktree add --detach /tmp/startup_base 51bf299   # once, for --base
 * deno run -A tests/bench/startup_bench.ts [--rounds 30] [--base /tmp/startup_base]
 * ```
 *
 * Under `deno bench` it registers the empty and the serial program as one
 * group, the empty one the baseline.
 *
 * @module
 */

const ROOT = new URL("../../", import.meta.url);
const EMPTY = new URL("tests/fixtures/empty_program.ts", ROOT).pathname;
const SERIAL = "tests/fixtures/serial_program.ts";

/** A program, and the checkout whose import map (and so mod.ts) it runs with. */
interface Program {
  readonly label: string;
  readonly path: string;
  readonly importMap: string;
}

function program(label: string, checkout: URL, path: string): Program {
  return {
    label,
    path,
    importMap: new URL(".ci/import_map.json", checkout).pathname,
  };
}

/** Milliseconds from spawning `deno run` to its exit. */
async function time(p: Program): Promise<number> {
  const start = performance.now();
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--import-map=${p.importMap}`, p.path],
    stdout: "null",
    stderr: "piped",
  }).output();
  const took = performance.now() - start;
  if (code !== 0) {
    throw new Error(
      `${p.label} exited with ${code}: ${new TextDecoder().decode(stderr)}`,
    );
  }
  return took;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const args = Deno.args;
  const option = (name: string) => {
    const at = args.indexOf(`--${name}`);
    return at === -1 ? undefined : args[at + 1];
  };
  const rounds = Number(option("rounds") ?? 30);
  const base = option("base");
  const programs = [
    program("empty", ROOT, EMPTY),
    program("serial", ROOT, new URL(SERIAL, ROOT).pathname),
  ];
  if (base !== undefined) {
    const checkout = new URL(`file://${base.replace(/\/?$/, "/")}`);
    // The same program, with the other checkout's mod.ts and import map.
    programs.push(
      program("serial at base", checkout, new URL(SERIAL, ROOT).pathname),
    );
  }
  // One warm-up of each: Deno's caches (transpiled modules, npm) filled.
  for (const p of programs) await time(p);
  const times = new Map(programs.map((p) => [p.label, [] as number[]]));
  for (let round = 0; round < rounds; round++) {
    // Each round in a different order, so no program always follows another.
    const order = round % 2 === 0 ? programs : [...programs].reverse();
    for (const p of order) times.get(p.label)!.push(await time(p));
  }
  const medians = new Map(
    [...times].map(([label, values]) => [label, median(values)]),
  );
  const empty = medians.get("empty")!;
  const serial = medians.get("serial")!;
  for (const [label, value] of medians) {
    console.log(JSON.stringify({
      program: label,
      rounds,
      medianMs: Number(value.toFixed(2)),
      minMs: Number(Math.min(...times.get(label)!).toFixed(2)),
    }));
  }
  const ratio = serial / empty;
  console.log(
    `serial / empty: ${ratio.toFixed(2)} × (mark: at most 1.6 ×) ${
      ratio <= 1.6 ? "ok" : "OVER"
    }`,
  );
  const before = medians.get("serial at base");
  if (before !== undefined) {
    console.log(
      `serial / serial at base: ${
        (serial / before).toFixed(2)
      } × (base / empty: ${(before / empty).toFixed(2)} ×)`,
    );
  }
}

if (import.meta.main) {
  await main();
} else {
  const group = "start-up";
  Deno.bench({
    name: "empty program",
    group,
    baseline: true,
    // An async function: Deno.bench awaits only what an AsyncFunction returns.
    fn: async () => void await time(program("empty", ROOT, EMPTY)),
  });
  Deno.bench({
    name: "serial program (BufferEmit, one chunk)",
    group,
    fn: async () =>
      void await time(
        program("serial", ROOT, new URL(SERIAL, ROOT).pathname),
      ),
  });
}
