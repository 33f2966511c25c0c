// Copyright the @ocycle/core authors. MIT license.
// The shape of the house, read from Deno's own module graph: no import cycle
// anywhere, the seam imports no mode, and the thread and child entries (which
// every thread and child loads again) reach only the wire format and the code
// they run, and a pool's watchdog loads nothing.

import { assert, assertEquals } from "@std/assert";

const ROOT = new URL("../", import.meta.url);
const IMPORT_MAP = new URL("../.ci/import_map.json", import.meta.url).pathname;

interface InfoModule {
  specifier: string;
  dependencies?: {
    specifier: string;
    code?: { specifier?: string };
    type?: { specifier?: string };
  }[];
}

/** Every module reachable from `entry`, with the modules each one imports (types included). */
async function graph(entry: string): Promise<Map<string, string[]>> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "info",
      "--json",
      `--import-map=${IMPORT_MAP}`,
      new URL(entry, ROOT).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(code, 0, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout)) as {
    modules: InfoModule[];
  };
  const edges = new Map<string, string[]>();
  for (const module of info.modules) {
    const to = (module.dependencies ?? []).flatMap((d) =>
      [d.code?.specifier, d.type?.specifier].filter((s): s is string =>
        s !== undefined
      )
    );
    edges.set(local(module.specifier), to.map(local));
  }
  return edges;
}

/** A module's name relative to the project root, or its specifier. */
function local(specifier: string): string {
  return specifier.startsWith(ROOT.href)
    ? specifier.slice(ROOT.href.length)
    : specifier;
}

/** The cycles of a graph, each as the path that closes it. */
function cycles(edges: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string) => {
    state.set(node, "open");
    path.push(node);
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === "open") {
        found.push([...path.slice(path.indexOf(next)), next]);
      } else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(node, "done");
  };
  for (const node of edges.keys()) if (!state.has(node)) visit(node);
  return found;
}

Deno.test("the module graph has no import cycle", async () => {
  for (const entry of ["mod.ts", "cli.ts"]) {
    assertEquals(cycles(await graph(entry)), [], entry);
  }
});

Deno.test("the seam between the emitter and the modes imports no mode", async () => {
  for (const seam of ["src/run/_runner.ts", "src/pool/_transport.ts"]) {
    const reached = [...(await graph(seam)).keys()];
    const modes = reached.filter((m) =>
      /_(serial|thread|process|pool|factory)\.ts$/.test(m)
    );
    assertEquals(modes, [], `${seam} reaches ${modes.join(", ")}`);
  }
});

Deno.test("the thread and child entries load only the wire format and the callback loader", async () => {
  for (
    const [entry, extra] of [
      ["src/pool/_thread_entry.ts", []],
      ["src/pool/_child_entry.ts", ["node:v8"]],
    ] as const
  ) {
    const reached = [...(await graph(entry)).keys()];
    const stray = reached.filter((m) =>
      !m.startsWith("src/wire/") && m !== entry &&
      m !== "src/run/_load_callback.ts" && m !== "src/chunk_info.ts" &&
      !(extra as readonly string[]).includes(m)
    );
    assertEquals(stray, [], `${entry} loads more than it runs`);
  }
});

Deno.test("the watchdog entry loads nothing at all", async () => {
  assertEquals([...(await graph("src/pool/_watchdog.ts")).keys()], [
    "src/pool/_watchdog.ts",
  ]);
});

Deno.test("the write path loads no standard library and no mode", async () => {
  const reached = [...(await graph("src/core/_write_path.ts")).keys()];
  assert(reached.length > 1);
  const stray = reached.filter((m) =>
    !m.startsWith("src/core/") &&
    m !== "src/chunk_info.ts" && !m.startsWith("src/wire/")
  );
  assertEquals(stray, []);
});

/** The files a program evaluates, read from V8's coverage of its run. */
async function evaluated(program: string): Promise<string[]> {
  const dir = await Deno.makeTempDir({ prefix: "ocycle_coverage_" });
  try {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--coverage=${dir}`,
        `--import-map=${IMPORT_MAP}`,
        new URL(program, ROOT).pathname,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    assertEquals(code, 0, new TextDecoder().decode(stderr));
    const urls: string[] = [];
    for await (const entry of Deno.readDir(dir)) {
      const text = await Deno.readTextFile(`${dir}/${entry.name}`);
      urls.push((JSON.parse(text) as { url: string }).url);
    }
    return urls.sort();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a serial program evaluates the serial path and no other mode", async () => {
  const urls = await evaluated("tests/fixtures/serial_program.ts");
  const src = urls.map(local).filter((m) =>
    m === "mod.ts" || m.startsWith("src/")
  );
  assertEquals(src, [
    "mod.ts",
    "src/buffer_emit.ts",
    "src/chunk_error.ts",
    "src/close_on_signals.ts",
    "src/core/_buffer_pool.ts",
    "src/core/_kinds.ts",
    "src/core/_options.ts",
    "src/core/_queue.ts",
    "src/core/_rules.ts",
    // SampleEmit's raw bytes to whole frames.
    "src/core/_sample_bytes.ts",
    "src/core/_write_path.ts",
    "src/emitter.ts",
    "src/fanout.ts",
    "src/fleet/_url.ts",
    "src/item_emit.ts",
    // Leaves that check options when the emitter is made, in every mode:
    // process mode's options and the pool's default timeouts, the Redis URL.
    "src/pool/_process_options.ts",
    "src/pool/_slot.ts",
    "src/rechunk.ts",
    "src/run/_deadline.ts",
    "src/run/_factory.ts",
    // How a callback module that could not be loaded is worded, in every mode.
    "src/run/_faults.ts",
    "src/run/_load_callback.ts",
    "src/run/_module_url.ts",
    "src/run/_runner.ts",
    "src/run/_serial.ts",
    "src/sample_emit.ts",
    "src/text_emit.ts",
    "src/wire/_layout.ts",
  ]);
  // The standard library by the subpath used: @std/async's deadline, and
  // @std/path's platform functions, never a module that picks the platform
  // by asking `globalThis.process` (which starts Node compatibility).
  const std = urls.filter((u) => !u.startsWith(ROOT.href))
    .map((u) => u.match(/deno-std\/[^/]+\/(.*)$/)?.[1] ?? u);
  const stray = std.filter((m) =>
    !/^async\/(deadline|abortable)\.js$/.test(m) &&
    !/^path\/(posix|windows|_common)\//.test(m)
  );
  assertEquals(stray, []);
});

Deno.test("no file in src is over 600 lines", async () => {
  const long: string[] = [];
  const walk = async (dir: URL) => {
    for await (const entry of Deno.readDir(dir)) {
      const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
      if (entry.isDirectory) await walk(url);
      else if (entry.name.endsWith(".ts")) {
        const lines = (await Deno.readTextFile(url)).split("\n").length - 1;
        if (lines > 600) long.push(`${local(url.href)}: ${lines} lines`);
      }
    }
  };
  await walk(new URL("src/", ROOT));
  assertEquals(long.sort(), []);
});
