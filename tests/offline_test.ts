// Copyright the @ocycle/core authors. MIT license.
// Offline after install (RELIABILITY 39): this package is served over HTTP on
// loopback, a user's program is cached with `deno cache` into a fresh
// DENO_DIR, the server stops, and thread and process modes still start: the
// Worker and child entries are part of the module graph Deno caches.

import { assertEquals } from "@std/assert";

const ROOT = new URL("../", import.meta.url);
const CI_MAP = new URL("../.ci/import_map.json", import.meta.url);

const PROGRAM = (base: string) => `
import { BufferEmit } from "${base}mod.ts";
const results = [];
for (const mode of ["thread", "process"]) {
  const emitter = new BufferEmit(new URL("./callback.ts", import.meta.url), 4, {
    mode,
    pool: 1,
    onDone: (n) => results.push([mode, n]),
    onError: (error) => results.push([mode, error.message]),
  });
  emitter.write(new Uint8Array(4));
  await emitter.close();
}
console.log(JSON.stringify(results));
`;

/**
 * Serves this package's source files on loopback until the returned server
 * shuts down; with `std`, its bare `@std/*` imports rewritten through that
 * map, as publishing rewrites them (to `jsr:` specifiers), so that a program
 * needs no import map of its own.
 */
function serve(std?: Record<string, string>): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const path = new URL(request.url).pathname;
      if (!/^\/(mod|cli)\.ts$|^\/src\/[\w/]+\.ts$/.test(path)) {
        return new Response("not found", { status: 404 });
      }
      try {
        let body = await Deno.readTextFile(new URL(`.${path}`, ROOT));
        if (std !== undefined) body = unfurl(body, std);
        return new Response(body, {
          headers: { "content-type": "application/typescript" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
}

/** Rewrites the bare `@std/<pkg>[/<file>]` specifiers of `source` through `std`. */
function unfurl(source: string, std: Record<string, string>): string {
  return source.replace(
    /(["'])(@std\/[\w-]+)(\/[\w/-]+)?\1/g,
    (whole, quote: string, name: string, sub: string | undefined) => {
      // A subpath the map names ("@std/path/posix/to-file-url"), as is.
      const exact = sub === undefined ? undefined : std[`${name}${sub}`];
      if (exact !== undefined) return `${quote}${exact}${quote}`;
      const target = std[name];
      if (target === undefined) return whole;
      // "@std/bytes/concat" next to "@std/bytes" -> ".../bytes/mod.js".
      const to = sub === undefined
        ? target
        : target.replace(/\/[^/]*$/, `${sub}.js`);
      return `${quote}${to}${quote}`;
    },
  );
}

async function deno(
  args: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    env,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

Deno.test("thread and process modes start with no network after deno cache (RELIABILITY 39)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ocycle-offline-" });
  const server = serve();
  try {
    const base = `http://127.0.0.1:${server.addr.port}/`;
    // The user's program, its callback, and the @std packages this package
    // imports (from JSR for users; from npm on this machine).
    const std = JSON.parse(await Deno.readTextFile(CI_MAP)).imports as Record<
      string,
      string
    >;
    const imports = Object.fromEntries(
      Object.entries(std).filter(([name]) => name.startsWith("@std/")),
    );
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({ imports }),
    );
    await Deno.writeTextFile(`${dir}/main.ts`, PROGRAM(base));
    await Deno.writeTextFile(
      `${dir}/callback.ts`,
      "export default (chunk: Uint8Array) => chunk.length;\n",
    );
    const env = { DENO_DIR: `${dir}/cache`, DENO_NO_UPDATE_CHECK: "1" };
    const host = `--allow-import=127.0.0.1:${server.addr.port}`;
    const cached = await deno(["cache", host, "main.ts"], env, dir);
    assertEquals(cached.code, 0, cached.stderr);
    await server.shutdown();
    const run = await deno(["run", "-A", "main.ts"], env, dir);
    assertEquals(run.code, 0, run.stderr);
    assertEquals(JSON.parse(run.stdout), [["thread", 4], ["process", 4]]);
    // The process pool's watchdog started too.
    assertEquals(run.stderr.includes("watchdog"), false, run.stderr);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process mode as installed runs offline with only the README's permissions (RELIABILITY 53)", async () => {
  // Installed, the package is remote (JSR) and the program runs with no
  // --allow-env: it may not read DENO_DIR to pass it on, yet its children
  // must load the package from the cache the program uses, not download it
  // into another (and fail, the registry being out of reach).
  const dir = await Deno.makeTempDir({ prefix: "ocycle-installed-" });
  const std = JSON.parse(await Deno.readTextFile(CI_MAP)).imports as Record<
    string,
    string
  >;
  const server = serve(std);
  try {
    const base = `http://127.0.0.1:${server.addr.port}/`;
    await Deno.writeTextFile(`${dir}/main.ts`, PROGRAM(base));
    await Deno.writeTextFile(
      `${dir}/callback.ts`,
      "export default (chunk: Uint8Array) => chunk.length;\n",
    );
    const env = { DENO_DIR: `${dir}/cache`, DENO_NO_UPDATE_CHECK: "1" };
    const host = `--allow-import=127.0.0.1:${server.addr.port}`;
    const cached = await deno(["cache", host, "main.ts"], env, dir);
    assertEquals(cached.code, 0, cached.stderr);
    await server.shutdown();
    // The README's permissions (and the import of a host JSR's is not).
    const run = await deno(
      [
        "run",
        host,
        "--allow-read=./callback.ts",
        `--allow-run=${Deno.execPath()}`,
        "main.ts",
      ],
      env,
      dir,
    );
    assertEquals(run.code, 0, run.stderr);
    assertEquals(JSON.parse(run.stdout), [["thread", 4], ["process", 4]]);
    assertEquals(run.stderr, "");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Where the official std sources and the local JSR registry are, if given. */
const STD_GIT = Deno.env.get("OCYCLE_STD_GIT");
const JSR_REGISTRY = Deno.env.get("OCYCLE_JSR_REGISTRY");

Deno.test({
  name:
    "process mode installed from a JSR registry runs offline after deno cache with the README's permissions (RELIABILITY 53; needs OCYCLE_STD_GIT and OCYCLE_JSR_REGISTRY)",
  // The registry serves std from its official sources, which CI cannot
  // fetch: the test above, which needs neither, is the one CI runs.
  ignore: STD_GIT === undefined || JSR_REGISTRY === undefined,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "ocycle-jsr-" });
  const files: string[] = [
    "mod.ts",
    "cli.ts",
    "redis.ts",
    "README.md",
    "LICENSE",
    "deno.json",
  ];
  const walk = async (sub: string) => {
    for await (const entry of Deno.readDir(new URL(sub, ROOT))) {
      const path = `${sub}${entry.name}`;
      if (entry.isDirectory) await walk(`${path}/`);
      else if (path.endsWith(".ts")) files.push(path);
    }
  };
  await walk("src/");
  await Deno.writeTextFile(`${dir}/files.txt`, files.join("\n") + "\n");
  const registry = new Deno.Command("python3", {
    args: [
      JSR_REGISTRY!,
      "--std",
      STD_GIT!,
      ROOT.pathname,
      `${dir}/files.txt`,
      `${dir}/port`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    let port = "";
    for (let i = 0; i < 100 && port === ""; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      port = await Deno.readTextFile(`${dir}/port`).catch(() => "");
    }
    const user = `${dir}/user`;
    await Deno.mkdir(user);
    await Deno.writeTextFile(
      `${user}/analyze.ts`,
      "export default (chunk: Uint8Array) => chunk.length;\n",
    );
    await Deno.writeTextFile(
      `${user}/main.ts`,
      `import { BufferEmit } from "@ocycle/core";
const results: unknown[] = [];
const emitter = new BufferEmit(new URL("./analyze.ts", import.meta.url), 4, {
  mode: "process",
  pool: 1,
  onDone: (n) => results.push(n),
  onError: (error) => results.push(error.message),
});
emitter.write(new Uint8Array(4));
await emitter.close();
console.log(JSON.stringify(results));
`,
    );
    const env = {
      DENO_DIR: `${dir}/cache`,
      DENO_NO_UPDATE_CHECK: "1",
      JSR_URL: `http://127.0.0.1:${port.trim()}/`,
    };
    const added = await deno(["add", "jsr:@ocycle/core"], env, user);
    assertEquals(added.code, 0, added.stderr);
    const cached = await deno(["cache", "main.ts"], env, user);
    assertEquals(cached.code, 0, cached.stderr);
    registry.kill();
    await registry.status;
    const run = await deno(
      [
        "run",
        "--allow-read=./analyze.ts",
        `--allow-run=${Deno.execPath()}`,
        "main.ts",
      ],
      env,
      user,
    );
    assertEquals(run.code, 0, run.stderr);
    assertEquals(run.stdout, "[4]\n");
    assertEquals(run.stderr, "");
  } finally {
    try {
      registry.kill();
    } catch {
      // Stopped already.
    }
    await registry.status;
    await Deno.remove(dir, { recursive: true });
  }
});
