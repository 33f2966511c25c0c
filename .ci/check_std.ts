// Copyright the @ocycle/core authors. MIT license.
// A developer's check, never run in CI (CI cannot fetch the std sources):
// type-checks everything (src, tests, examples and the JSDoc examples)
// against the official TypeScript sources of the standard library, which is
// what a user who installs @ocycle/core from JSR gets. The offline import map,
// .ci/import_map.json, points @std at an untyped npm copy, so `deno task
// check` cannot see a wrong use of @std's types (a readonly tuple given to
// assertEquals, say).
//
// Usage, from a clone of https://github.com/denoland/std:
//   deno task check:std /path/to/std
//
// It writes an import map of every @std export onto STD_DIR (over the
// project's own offline map) to a temporary file and runs
// `deno check --doc --import-map <that map>`; the exit code is deno check's.

import { fromFileUrl, join, toFileUrl } from "@std/path";

const root = new URL("../", import.meta.url);

/** The import map: the offline map's entries, then every @std export in `stdDir`. */
async function stdImportMap(stdDir: string): Promise<Record<string, string>> {
  const offlineUrl = new URL(".ci/import_map.json", root);
  const offline = JSON.parse(await Deno.readTextFile(offlineUrl)) as {
    imports: Record<string, string>;
  };
  const imports: Record<string, string> = {};
  for (const [key, value] of Object.entries(offline.imports)) {
    imports[key] = value.startsWith(".")
      ? new URL(value, offlineUrl).href
      : value;
  }
  let packages = 0;
  for await (const entry of Deno.readDir(stdDir)) {
    if (!entry.isDirectory || entry.name.startsWith("_")) continue;
    let config: { name?: string; exports?: string | Record<string, string> };
    try {
      config = JSON.parse(
        await Deno.readTextFile(join(stdDir, entry.name, "deno.json")),
      );
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    if (config.exports === undefined) continue;
    const exports = typeof config.exports === "string"
      ? { ".": config.exports }
      : config.exports;
    const name = config.name ?? `@std/${entry.name}`;
    for (const [sub, path] of Object.entries(exports)) {
      imports[sub === "." ? name : `${name}${sub.slice(1)}`] =
        toFileUrl(join(stdDir, entry.name, path)).href;
    }
    packages++;
  }
  if (packages === 0) {
    throw new Error(
      `no std package there (no <package>/deno.json with exports): give a clone of https://github.com/denoland/std`,
    );
  }
  return imports;
}

if (import.meta.main) {
  const [stdArg] = Deno.args;
  if (stdArg === undefined || Deno.args.length !== 1) {
    console.error(
      "usage: deno task check:std STD_DIR  (a clone of https://github.com/denoland/std)",
    );
    Deno.exit(2);
  }
  let imports: Record<string, string>;
  try {
    imports = await stdImportMap(await Deno.realPath(stdArg));
  } catch (error) {
    console.error(
      `check:std: STD_DIR ${stdArg}: ${
        error instanceof Error ? error.message : error
      }`,
    );
    Deno.exit(2);
  }
  const mapFile = await Deno.makeTempFile({
    prefix: "ocycle-std-map-",
    suffix: ".json",
  });
  try {
    await Deno.writeTextFile(mapFile, JSON.stringify({ imports }, null, 1));
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--doc", `--import-map=${mapFile}`],
      cwd: fromFileUrl(root),
    }).spawn().status;
    Deno.exitCode = code;
  } finally {
    await Deno.remove(mapFile);
  }
}
