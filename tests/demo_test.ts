// Copyright the @ocycle/core authors. MIT license.
import {
  assert,
  assertEquals,
  assertGreater,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { encodeWav, parseWav } from "../examples/audio/wav.ts";
import { analyzeVoice, fft, levelDbfs } from "../examples/audio/dsp.ts";
import { synthFrames } from "../examples/audio/synth.ts";
import {
  decodeKey,
  generateKey,
  importKey,
  open,
  seal,
} from "../examples/audio/seal.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const EXAMPLES = new URL("../examples/", import.meta.url).pathname;
const IMPORT_MAP = new URL("../.ci/import_map.json", import.meta.url).pathname;
const DEMO = `${EXAMPLES}audio_fanout.ts`;
const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function deno(
  args: string[],
  options: { env?: Record<string, string>; stdin?: Uint8Array } = {},
): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--import-map=${IMPORT_MAP}`, ...args],
    cwd: ROOT,
    // A clean environment, so that an OCYCLE_DEMO_KEY of the caller's
    // cannot change what the demo does; only what Deno needs to find its cache.
    clearEnv: true,
    env: { ...baseEnv(), ...options.env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let feeding: Promise<void> = Promise.resolve();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    feeding = writer.write(options.stdin).then(() => writer.close());
  }
  const [output] = await Promise.all([child.output(), feeding]);
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function lines(stdout: string, consumer: string): string[] {
  return stdout.split("\n").filter((l) =>
    new RegExp(`^\\s+[\\d.]+s ${consumer}\\s+#`).test(l)
  );
}

Deno.test("dsp: fft(), levelDbfs() and analyzeVoice() measure real signals", () => {
  const re = new Float64Array(64), im = new Float64Array(64);
  for (let i = 0; i < 64; i++) re[i] = Math.cos((2 * Math.PI * 5 * i) / 64);
  fft(re, im);
  assert(Math.abs(re[5]! - 32) < 1e-9 && Math.abs(re[59]! - 32) < 1e-9);
  assert(Math.abs(re[4]!) < 1e-9);

  const sine = new Int16Array(16000);
  for (let i = 0; i < sine.length; i++) {
    sine[i] = Math.round(32767 * Math.sin((2 * Math.PI * 1000 * i) / 16000));
  }
  assert(
    Math.abs(levelDbfs(sine) - -3.01) < 0.05,
    "a full-scale sine is -3 dBFS",
  );
  assertEquals(levelDbfs(new Int16Array(100)), -120);
  // A pure tone is periodic but not voiced speech.
  assertEquals(analyzeVoice(sine).voicedFrames, 0);

  const speech = new Int16Array(32000);
  let at = 0;
  for (const frame of synthFrames({ seconds: 2, seed: 7 })) {
    speech.set(frame, at);
    at += frame.length;
  }
  const voice = analyzeVoice(speech);
  assertGreater(voice.speechRatio, 0.5);
  assert(
    Math.abs(voice.pitchHz! - 120) < 10,
    `pitch ${voice.pitchHz} near 120 Hz`,
  );
});

Deno.test("wav and seal: a segment round-trips, and tampering is caught", async () => {
  const samples = Int16Array.from(
    { length: 1000 },
    (_, i) => (i * 37) % 2000 - 1000,
  );
  const wav = encodeWav(samples, 16000) as Uint8Array<ArrayBuffer>;
  const parsed = parseWav(wav);
  assertEquals([parsed.rate, parsed.channels, parsed.bitsPerSample], [
    16000,
    1,
    16,
  ]);
  assertEquals(new Int16Array(parsed.data.slice().buffer), samples);
  const key = await importKey(decodeKey(generateKey()));
  const sealed = await seal(key, wav) as Uint8Array<ArrayBuffer>;
  assertEquals(await open(key, sealed), wav);
  sealed[sealed.length - 1]! ^= 1;
  await assertRejects(() => open(key, sealed), TypeError, "altered");
});

Deno.test("audio demo runs all three consumers in their real modes, and a segment decrypts", async (t) => {
  const out = await Deno.makeTempDir({ prefix: "ocycle-demo-test-" });
  try {
    const run = await deno([DEMO, "--fast", "--seconds", "25", "--out", out]);
    await t.step("it ends cleanly with a summary", () => {
      assertEquals(run.code, 0, run.stdout + run.stderr);
      assertStringIncludes(run.stdout, "── summary");
      assertStringIncludes(run.stdout, "input      25.0 s of audio");
    });
    await t.step("no consumer fell back from its mode", () => {
      assert(!run.stdout.includes("note:"), run.stdout);
      assertMatch(run.stdout, /^meter +serial +50 chunks/m);
      assertMatch(run.stdout, /^model +thread +7 chunks/m);
      assertMatch(run.stdout, /^recorder +process +3 chunks/m);
    });
    await t.step("the live view shows every consumer's events", () => {
      assertEquals(lines(run.stdout, "meter").length, 50);
      const model = lines(run.stdout, "model");
      assertEquals(model.length, 7);
      assert(
        model.some((l) => /speech +\d+% +pitch \d+ Hz/.test(l)),
        model.join("\n"),
      );
      assert(model.some((l) => l.includes("no speech")), model.join("\n"));
      assertEquals(lines(run.stdout, "recorder").length, 3);
    });
    await t.step(
      "the sampler dropped about half the audio for the model",
      () => {
        const m = /duty cycle: (\d+)% of the audio/.exec(run.stdout);
        assert(m !== null && Number(m[1]) >= 40 && Number(m[1]) <= 60, m?.[0]);
      },
    );
    await t.step(
      "the key was generated with a warning, and saved privately",
      async () => {
        assertStringIncludes(run.stdout, "WARNING: OCYCLE_DEMO_KEY is not set");
        const info = await Deno.stat(`${out}/demo.key`);
        assertEquals(info.mode! & 0o077, 0);
      },
    );
    const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    await t.step("three encrypted segments, none in the clear", async () => {
      assertEquals(files, [
        "demo.key",
        "segment-0000.wav.enc",
        "segment-0001.wav.enc",
        "segment-0002.wav.enc",
      ]);
      const head = (await Deno.readFile(`${out}/segment-0000.wav.enc`))
        .subarray(0, 64);
      assert(!decoder.decode(head).includes("RIFF"));
    });
    await t.step(
      "--decrypt verifies a segment and prints its length and level",
      async () => {
        const plain = `${out}/plain.wav`;
        const dec = await deno([
          DEMO,
          "--decrypt",
          `${out}/segment-0000.wav.enc`,
          "--wav-out",
          plain,
        ]);
        assertEquals(dec.code, 0, dec.stdout + dec.stderr);
        assertStringIncludes(dec.stdout, "tag verified");
        assertStringIncludes(
          dec.stdout,
          "PCM 16-bit, 1 channel(s), 16000 Hz, 10.00 s",
        );
        assertMatch(dec.stdout, /level +-\d+\.\d dBFS RMS/);
        assertEquals(parseWav(await Deno.readFile(plain)).seconds, 10);
      },
    );
    await t.step(
      "--decrypt refuses a wrong key",
      async () => {
        const wrong = await deno([
          DEMO,
          "--decrypt",
          `${out}/segment-0001.wav.enc`,
        ], {
          env: { OCYCLE_DEMO_KEY: generateKey() },
        });
        assertEquals(wrong.code, 2);
        assertStringIncludes(
          wrong.stderr,
          "the key is wrong or the file was altered",
        );
      },
    );
    await t.step(
      "the WAV and stdin inputs feed the same consumers",
      async () => {
        const wav = await deno([
          DEMO,
          "--wav",
          `${out}/plain.wav`,
          "--fast",
          "--out",
          `${out}/from-wav`,
        ], {
          env: { OCYCLE_DEMO_KEY: generateKey() },
        });
        assertEquals(wav.code, 0, wav.stdout + wav.stderr);
        assertEquals(lines(wav.stdout, "meter").length, 20);
        assertEquals(lines(wav.stdout, "recorder").length, 1);
        assertStringIncludes(wav.stdout, "key        from $OCYCLE_DEMO_KEY");
        const pcm = parseWav(await Deno.readFile(`${out}/plain.wav`)).data;
        const raw = await deno(
          [DEMO, "--stdin", "--out", `${out}/from-stdin`],
          {
            env: { OCYCLE_DEMO_KEY: generateKey() },
            stdin: pcm,
          },
        );
        assertEquals(raw.code, 0, raw.stdout + raw.stderr);
        assertEquals(lines(raw.stdout, "meter").length, 20);
        assertStringIncludes(raw.stdout, "input      10.0 s of audio");
      },
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("audio demo stops on Ctrl-C, flushing what each consumer holds", async () => {
  const out = await Deno.makeTempDir({ prefix: "ocycle-demo-test-" });
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--import-map=${IMPORT_MAP}`,
        DEMO,
        "--seconds",
        "60",
        "--out",
        out,
      ],
      cwd: ROOT,
      clearEnv: true,
      env: baseEnv(),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    let stdout = "";
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    // Real-time pace: wait for 1.5 s of audio, then interrupt once.
    while (!/meter +#2 /.test(stdout)) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    child.kill("SIGINT");
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    const status = await child.status;
    assertEquals(status.code, 0, stdout + (await stderr));
    assertStringIncludes(stdout, "Ctrl-C: stopping the input and flushing");
    assertStringIncludes(stdout, "stopped by Ctrl-C");
    // The recorder's partial segment was flushed, written and closed.
    assertMatch(stdout, /^recorder +process +1 chunk of 10 s/m);
    const segment = await Deno.stat(`${out}/segment-0000.wav.enc`);
    assertGreater(segment.size, 16000 * 2);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

/** The arguments an example asks to be run with, from its header. */
function exampleArgs(source: string): string[] {
  const m = /^\/\/ ocycle-example-args: (.*)$/m.exec(source);
  return m === null ? [] : m[1]!.trim().split(/\s+/);
}

Deno.test("every example runs and exits 0", async (t) => {
  const entries = [...Deno.readDirSync(EXAMPLES)]
    .filter((e) => e.isFile && e.name.endsWith(".ts"))
    .map((e) => e.name)
    .sort();
  assert(entries.includes("audio_fanout.ts"));
  for (const name of entries) {
    const source = await Deno.readTextFile(`${EXAMPLES}${name}`);
    // Helper modules say so in their header and are run by the examples that
    // import them; examples that need a server say which test runs them.
    if (/^\/\/ ocycle-example: (helper|needs )/m.test(source)) continue;
    await t.step(name, async () => {
      const tmp = await Deno.makeTempDir({ prefix: "ocycle-example-" });
      try {
        // Examples that write files make their own temp dirs: keep them in ours.
        const run = await deno([`${EXAMPLES}${name}`, ...exampleArgs(source)], {
          env: { TMPDIR: tmp },
        });
        assertEquals(run.code, 0, `${name}\n${run.stdout}\n${run.stderr}`);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    });
  }
});
