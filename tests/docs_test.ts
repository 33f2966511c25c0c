// Copyright the @ocycle/core authors. MIT license.
// The README and docs/ as a newcomer meets them: every runnable example is
// linked from the README, and no relative link points at nothing. (Their code
// blocks are tests of their own, run by `deno test --doc`.)

import { assert, assertEquals } from "@std/assert";

const ROOT = new URL("../", import.meta.url);

/** The relative link targets of a Markdown file, without their #fragment. */
function relativeLinks(markdown: string): string[] {
  const links: string[] = [];
  // Skip fenced code: a link-like text there is code, not a link.
  const prose = markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, "");
  for (const m of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^[a-z]+:/i.test(target) || target.startsWith("#")) continue;
    links.push(target.replace(/#.*$/, ""));
  }
  return links;
}

function exists(url: URL): boolean {
  try {
    Deno.statSync(url);
    return true;
  } catch {
    return false;
  }
}

Deno.test("README links every example in examples/", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const linked = new Set(relativeLinks(readme));
  const entries = [...Deno.readDirSync(new URL("examples/", ROOT))]
    .map((e) => e.isDirectory ? `examples/${e.name}/` : `examples/${e.name}`)
    .filter((path) => path.endsWith(".ts") || path.endsWith("/"))
    .sort();
  assert(entries.includes("examples/audio_fanout.ts"));
  const missing = entries.filter((path) => !linked.has(path));
  assertEquals(missing, [], "examples the README does not link");
});

Deno.test("README and docs/ have no relative link that points at nothing", async () => {
  const files = [
    "README.md",
    ...[...Deno.readDirSync(new URL("docs/", ROOT))]
      .filter((e) => e.isFile && e.name.endsWith(".md"))
      .map((e) => `docs/${e.name}`),
  ];
  assert(files.includes("docs/modes.md"));
  const broken: string[] = [];
  for (const file of files) {
    const base = new URL(file, ROOT);
    for (const target of relativeLinks(await Deno.readTextFile(base))) {
      if (!exists(new URL(target, base))) broken.push(`${file}: ${target}`);
    }
  }
  assertEquals(broken, []);
});
