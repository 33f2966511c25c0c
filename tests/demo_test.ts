// Copyright the @ocycle/core authors. MIT license.
import {
  assert,
  assertEquals,
  assertGreater,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { encodeWav, parseWav, toMonoInt16 } from "../examples/audio/wav.ts";
import { analyzeVoice, fft, levelDbfs } from "../examples/audio/dsp.ts";
import { synthFrames } from "../examples/audio/synth.ts";
import { decodeFlac, encodeFlac } from "../examples/audio/flac.ts";
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
    const bytes = options.stdin;
    const writer = child.stdin.getWriter();
    // In odd-sized pieces, as a pipe may hand them on: reads then split
    // samples, which the demo's SampleEmit must carry.
    feeding = (async () => {
      for (let i = 0; i < bytes.length; i += 4097) {
        await writer.write(bytes.subarray(i, i + 4097));
        // Apart, so that each read sees one piece, not several run together.
        await new Promise((r) => setTimeout(r, 5));
      }
      await writer.close();
    })();
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

interface Verdict {
  speech: boolean;
  p: number;
  share: number;
  /** Windows of 512 samples in the chunk: 62 in a whole one. */
  windows: number;
  /** Where the chunk ends, in seconds of the stream. */
  end: number;
  line: string;
}

/** The model's verdict on each chunk, by index, from the live view. */
function modelVerdicts(stdout: string): Map<number, Verdict> {
  const verdicts = new Map<number, Verdict>();
  for (const line of lines(stdout, "model")) {
    const m =
      /^\s+([\d.]+)s model +#(\d+) +(speech|no speech) +p ([\d.]+) +(\d+)% of (\d+) windows/
        .exec(line);
    if (m === null) throw new Error(`not a model line: ${line}`);
    verdicts.set(Number(m[2]), {
      end: Number(m[1]),
      speech: m[3] === "speech",
      p: Number(m[4]),
      share: Number(m[5]) / 100,
      windows: Number(m[6]),
      line,
    });
  }
  return verdicts;
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
        model.some((l) => / speech +p 0\.\d\d +\d+% of 62 windows/.test(l)),
        model.join("\n"),
      );
      assert(model.some((l) => l.includes("no speech")), model.join("\n"));
      assertEquals(lines(run.stdout, "recorder").length, 3);
    });
    await t.step(
      "the trained model hears the default input's recorded speech, and no speech in its silence and tones",
      () => {
        // The default input's 15 s cycle: speech 0-3 s, silence and a tone
        // 3-5 s, speech 5-7.5 s, silence and a tone 7.5-10 s, speech 10-14 s;
        // the model runs on 0-2, 4-6, 8-10, 12-14, 16-18 (1-3 of the cycle).
        const verdicts = modelVerdicts(run.stdout);
        for (const index of [0, 4]) {
          const v = verdicts.get(index)!;
          assert(v.speech && v.p >= 0.7, `chunk ${index}: ${v.line}`);
        }
        const quiet = verdicts.get(2)!;
        assert(!quiet.speech && quiet.p < 0.1, quiet.line);
        assertMatch(
          run.stdout,
          /^speech +in \d+ of 7 model chunks, heard at 0\.\d-/m,
        );
      },
    );
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
        "segment-0000.flac.enc",
        "segment-0001.flac.enc",
        "segment-0002.flac.enc",
      ]);
      const head = (await Deno.readFile(`${out}/segment-0000.flac.enc`))
        .subarray(0, 64);
      assert(!decoder.decode(head).includes("fLaC"));
      assertMatch(
        run.stdout,
        /^files +3 encrypted FLAC segment\(s\), \d+ KiB \(\d+% of WAV's 781 KiB\)/m,
      );
    });
    await t.step(
      "--decrypt verifies a segment and prints its length and level",
      async () => {
        const plain = `${out}/plain.wav`;
        const dec = await deno([
          DEMO,
          "--decrypt",
          `${out}/segment-0000.flac.enc`,
          "--wav-out",
          plain,
        ]);
        assertEquals(dec.code, 0, dec.stdout + dec.stderr);
        assertStringIncludes(dec.stdout, "tag verified");
        assertStringIncludes(
          dec.stdout,
          "16-bit, 1 channel(s), 16000 Hz, 10.00 s",
        );
        assertMatch(dec.stdout, /frame CRCs and MD5 [0-9a-f]{32} verified/);
        assertMatch(dec.stdout, /level +-\d+\.\d dBFS RMS/);
        assertEquals(parseWav(await Deno.readFile(plain)).seconds, 10);
        // The plain FLAC, beside the sealed one, holds the same samples.
        const flac = await decodeFlac(
          await Deno.readFile(`${out}/segment-0000.flac`),
        );
        assertEquals(
          flac.samples,
          new Int16Array(
            parseWav(await Deno.readFile(plain)).data.slice().buffer,
          ),
        );
      },
    );
    await t.step(
      "--decrypt refuses a wrong key",
      async () => {
        const wrong = await deno([
          DEMO,
          "--decrypt",
          `${out}/segment-0001.flac.enc`,
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
        // The same levels, chunk by chunk: no sample was cut or shifted
        // where a read split one.
        const level = (l: string) => l.match(/(-?[\d.]+) dBFS/)?.[1];
        assertEquals(
          lines(raw.stdout, "meter").map(level),
          lines(wav.stdout, "meter").map(level),
        );
        assertStringIncludes(raw.stdout, "input      10.0 s of audio");
      },
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("audio demo refuses --flac-out or --wav-out without --decrypt, and a decrypt onto the sealed file itself", async () => {
  for (const flag of ["--flac-out", "--wav-out"]) {
    const run = await deno([DEMO, flag, "x"]);
    assertEquals(run.code, 2, run.stderr);
    assertStringIncludes(run.stderr, `${flag} goes with --decrypt <file>`);
  }
  const dir = await Deno.makeTempDir({ prefix: "ocycle-demo-test-" });
  try {
    // A sealed file named .flac: its plain FLAC would take its name.
    const sealed = `${dir}/segment.flac`;
    const key = generateKey();
    await Deno.writeFile(
      sealed,
      await seal(
        await importKey(decodeKey(key)),
        await encodeFlac(new Int16Array(100), 16000),
      ),
    );
    const run = await deno([DEMO, "--decrypt", sealed], {
      env: { OCYCLE_DEMO_KEY: key },
    });
    assertEquals(run.code, 2, run.stderr);
    assertStringIncludes(run.stderr, "give --flac-out <file>");
    const ok = await deno(
      [DEMO, "--decrypt", sealed, "--flac-out", `${dir}/plain.flac`],
      { env: { OCYCLE_DEMO_KEY: key } },
    );
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(
      (await decodeFlac(await Deno.readFile(`${dir}/plain.flac`))).samples,
      new Int16Array(100),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
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
    // FLAC of speech and tones: well over half a byte a sample.
    const segment = await Deno.stat(`${out}/segment-0000.flac.enc`);
    assertGreater(segment.size, 16000);
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

// ---- real speech and the reference FLAC tools ----

/** Whether a program runs here. */
async function runs(program: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(program, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

const CI = Deno.env.get("CI") === "true";
const MISSING = [
  ...(await runs("flac")) ? [] : ["flac"],
  ...(await runs("espeak-ng")) ? [] : ["espeak-ng"],
];
/** What a test's name says when it skips; under CI=true it runs and fails. */
function skipping(needs: string[]): string {
  const missing = needs.filter((n) => MISSING.includes(n));
  return missing.length === 0 || CI
    ? ""
    : ` (skipped: ${
      missing.join(" and ")
    } not installed; .ci/run installs them)`;
}

async function tool(program: string, args: string[]): Promise<Uint8Array> {
  assert(
    !MISSING.includes(program),
    `${program} is missing: .ci/run installs it under CI=true`,
  );
  const out = await new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(
    out.success,
    `${program} ${args.join(" ")}: ${decoder.decode(out.stderr)}`,
  );
  return out.stdout;
}

/**
 * Asserts two sample arrays equal, naming the first difference (a diff of
 * 160,000 numbers would take minutes to print).
 */
function assertSamples(actual: Int16Array, expected: Int16Array, what: string) {
  const at = actual.findIndex((s, i) => s !== expected[i]);
  assert(
    actual.length === expected.length && at === -1,
    `${what}: ${actual.length} samples, expected ${expected.length}${
      at === -1
        ? ""
        : `; first difference at ${at}: ${actual[at]}, expected ${expected[at]}`
    }`,
  );
}

/** What `flac -d` makes of a FLAC file: its samples, s16le. */
async function flacDecode(file: string): Promise<Int16Array> {
  await tool("flac", ["-s", "-t", file]);
  const raw = `${file}.raw`;
  await tool("flac", [
    "-s",
    "-d",
    "-f",
    "--force-raw-format",
    "--endian=little",
    "--sign=signed",
    "-o",
    raw,
    file,
  ]);
  const bytes = await Deno.readFile(raw);
  await Deno.remove(raw);
  return new Int16Array(bytes.buffer, 0, bytes.length / 2);
}

/** espeak-ng saying `text`, at 16 kHz (linear interpolation from 22.05 kHz). */
async function speak(text: string, voice = "en"): Promise<Int16Array> {
  const wav = parseWav(
    await tool("espeak-ng", ["-v", voice, "-s", "170", "--stdout", text]),
  );
  const source = toMonoInt16(wav.data, wav.channels);
  const out = new Int16Array(Math.floor(source.length * 16000 / wav.rate));
  for (let i = 0; i < out.length; i++) {
    const x = i * wav.rate / 16000;
    const j = Math.floor(x), f = x - j;
    out[i] = Math.round(
      source[j]! * (1 - f) + (source[j + 1] ?? source[j]!) * f,
    );
  }
  return out;
}

Deno.test({
  name:
    `flac: encodeFlac() writes what flac -t passes and flac -d decodes to the exact samples, and decodeFlac() reads flac's own files${
      skipping(["flac"])
    }`,
  ignore: skipping(["flac"]) !== "",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "ocycle-flac-test-" });
    try {
      // Digital silence, full-scale extremes, noise, and a last block that
      // is not full: the cases a hand-made converter gets wrong.
      const samples = new Int16Array(16000 * 3 + 123);
      let seed = 7;
      for (let i = 0; i < samples.length; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        samples[i] = i < 8000
          ? 0
          : i < 9000
          ? [32767, -32768, 0, 255, -256, 1, -1][i % 7]!
          : (seed >> 16) - 32768;
      }
      const flac = await encodeFlac(samples, 16000);
      await Deno.writeFile(`${dir}/a.flac`, flac);
      assertSamples(await flacDecode(`${dir}/a.flac`), samples, "flac -d");
      const back = await decodeFlac(flac);
      assertEquals(
        [back.rate, back.channels, back.bitsPerSample, back.totalSamples],
        [16000, 1, 16, samples.length],
      );
      assertSamples(back.samples, samples, "decodeFlac()");
      // flac's own file, the default input's speech, as flac reads it.
      const speech = new URL("../examples/audio/speech.flac", import.meta.url)
        .pathname;
      assertSamples(
        (await decodeFlac(await Deno.readFile(speech))).samples,
        await flacDecode(speech),
        "decodeFlac() of speech.flac",
      );
      // A flipped bit in a frame is caught (CRC), not decoded silently.
      const damaged = flac.slice();
      damaged[damaged.length >> 1]! ^= 0x10;
      await assertRejects(() => decodeFlac(damaged), TypeError, "FLAC");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    `audio demo on espeak-ng speech and silence: the model hears speech where it is and none in silence, and every decrypted segment decodes with flac to the exact samples${
      skipping(["flac", "espeak-ng"])
    }`,
  ignore: skipping(["flac", "espeak-ng"]) !== "",
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "ocycle-demo-speech-" });
    try {
      // 20 s in blocks of 4 s: speech, silence, speech, silence, speech. The
      // model runs on about 0-2, 4-6, 8-10, 12-14 and 16-18 s.
      const block = 4 * 16000;
      const sentences = [
        ["The quick brown fox jumps over the lazy dog.", "en"],
        ["Stream buffering feeds every consumer its own chunk.", "en+f3"],
        ["Speech, then silence, then speech again.", "en"],
      ] as const;
      const samples = new Int16Array(5 * block);
      const speechBlocks = [0, 2, 4];
      for (const [i, b] of speechBlocks.entries()) {
        const [text, voiceName] = sentences[i]!;
        const voice = await speak(text, voiceName);
        samples.set(voice.subarray(0, block), b * block);
      }
      const wav = `${out}/speech.wav`;
      await Deno.writeFile(wav, encodeWav(samples, 16000));
      const key = generateKey();
      const run = await deno([
        DEMO,
        "--wav",
        wav,
        "--fast",
        "--out",
        `${out}/rec`,
      ], { env: { OCYCLE_DEMO_KEY: key } });
      assertEquals(run.code, 0, run.stdout + run.stderr);

      // Verdicts: a chunk at least 1.8 s of which is in a speech block is
      // speech; one of digital silence is not (and scores near 0). The live
      // view gives each chunk's end to 0.1 s: a margin of 0.05 s either side.
      const verdicts = modelVerdicts(run.stdout);
      let heard = 0, quiet = 0;
      for (const v of verdicts.values()) {
        // The last, flushed chunk may be short: judge whole ones only.
        if (v.windows !== 62) continue;
        const from = Math.max(0, Math.round((v.end - 2.05) * 16000));
        const to = Math.round((v.end + 0.05) * 16000);
        const inSpeech = speechBlocks.reduce(
          (n, b) =>
            n +
            Math.max(
              0,
              Math.min(to, (b + 1) * block) - Math.max(from, b * block),
            ),
          0,
        );
        if (inSpeech >= 1.8 * 16000) {
          assert(v.speech && v.p >= 0.5 && v.share >= 0.5, v.line);
          heard++;
        } else if (samples.subarray(from, to).every((x) => x === 0)) {
          assert(!v.speech && v.p < 0.1 && v.share === 0, v.line);
          quiet++;
        }
      }
      assert(heard >= 3 && quiet >= 2, run.stdout);
      // The summary says when: every range it gives lies in a speech block.
      const when = /^speech +in 3 of \d model chunks, heard at (.*) s$/m.exec(
        run.stdout,
      );
      if (when === null) throw new Error(`no "heard at": ${run.stdout}`);
      const ranges = when[1]!.split(" ").map((r) => r.split("-").map(Number));
      assertGreater(ranges.length, 2);
      for (const [a, b] of ranges) {
        const at = Math.floor(a! * 16000 / block);
        assert(
          speechBlocks.includes(at) && b! * 16000 <= (at + 1) * block + 800,
          `${a}-${b} s is not in a speech block: ${when[0]}`,
        );
      }

      // Each segment, decrypted by --decrypt, is a FLAC file that flac
      // decodes to exactly the samples the demo read.
      const segments = [...Deno.readDirSync(`${out}/rec`)]
        .map((e) => e.name).filter((n) => n.endsWith(".flac.enc")).sort();
      assertEquals(segments, [
        "segment-0000.flac.enc",
        "segment-0001.flac.enc",
      ]);
      for (const [i, name] of segments.entries()) {
        const dec = await deno([DEMO, "--decrypt", `${out}/rec/${name}`], {
          env: { OCYCLE_DEMO_KEY: key },
        });
        assertEquals(dec.code, 0, dec.stdout + dec.stderr);
        const plain = `${out}/rec/${name.replace(/\.enc$/, "")}`;
        assertSamples(
          await flacDecode(plain),
          samples.subarray(i * 160000, (i + 1) * 160000),
          `flac -d ${name}`,
        );
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
