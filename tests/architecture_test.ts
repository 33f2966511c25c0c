// Copyright the @ocycle/core authors. MIT license.
// The shape of the house, read from Deno's own module graph: no import cycle
// anywhere, the seam imports no mode, and the Worker and child entries (which
// every Worker and child loads again) reach only the wire format and the code
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
  for (const seam of ["src/run/_runner.ts", "src/run/_transport.ts"]) {
    const reached = [...(await graph(seam)).keys()];
    const modes = reached.filter((m) =>
      /_(serial|thread|process|pool|factory)\.ts$/.test(m)
    );
    assertEquals(modes, [], `${seam} reaches ${modes.join(", ")}`);
  }
});

Deno.test("the Worker and child entries load only the wire format and the callback loader", async () => {
  for (
    const [entry, extra] of [
      ["src/remote/_worker.ts", []],
      ["src/remote/_child.ts", ["node:v8"]],
    ] as const
  ) {
    const reached = [...(await graph(entry)).keys()];
    const stray = reached.filter((m) =>
      !m.startsWith("src/wire/") && !m.startsWith("src/remote/") &&
      m !== "src/chunk_info.ts" && !(extra as readonly string[]).includes(m)
    );
    assertEquals(stray, [], `${entry} loads more than it runs`);
  }
});

Deno.test("the watchdog entry loads nothing at all", async () => {
  assertEquals([...(await graph("src/run/_watchdog.ts")).keys()], [
    "src/run/_watchdog.ts",
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
