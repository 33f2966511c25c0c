// Copyright the @ocycle/core authors. MIT license.
// ocycle-example-args: --fast --seconds 12
/**
 * The audio fan-out demo, the use case of the Python original: one 16 kHz
 * mono 16-bit stream feeding three consumers through {@linkcode fanout}, each
 * with its own chunk size and execution mode.
 *
 * - a level meter every 0.5 s, inline (`mode: "serial"`): RMS level in dBFS;
 * - a trained model every 2 s in a Web Worker pool (`mode: "thread"`) with a
 *   50% duty cycle (`sampler: 2000`): Silero VAD v5, a voice-activity
 *   network, run by ONNX Runtime's WebAssembly build; per chunk, the mean
 *   speech probability, the share of 32 ms windows above 0.5, and where in
 *   the chunk speech was heard;
 * - an encrypted recorder every 10 s in a Deno subprocess pool
 *   (`mode: "process"`): each segment a FLAC file (libFLAC, lossless) sealed
 *   with AES-256-GCM, the child allowed only to write the output directory.
 *
 * The model and FLAC come from npm (onnxruntime-web, @ricky0123/vad-web,
 * libflacjs; pinned): dependencies of this example only, downloaded by Deno
 * on the first run (about 41 MiB), which the demo says on screen.
 *
 * ```sh
 * deno task demo                       # speech, tones and silence, real time
 * deno task demo --fast --seconds 60   # the same, as fast as possible
 * deno task demo --wav speech.wav      # a 16 kHz 16-bit WAV file
 * arecord -f S16_LE -r 16000 -c 1 | deno task demo --stdin   # a microphone
 * deno task demo --decrypt /tmp/ocycle-demo-XXXX/segment-0000.flac.enc
 * ```
 *
 * Ctrl-C (or SIGTERM) stops the input, flushes what each consumer holds, and
 * prints the summary; a second Ctrl-C stops at once. Under `deno task` one
 * press arrives twice (from the terminal, and forwarded by the task runner):
 * {@linkcode closeOnSignals} counts a repeat within a second as the same one.
 *
 * @module
 */

import {
  type ChunkError,
  type ChunkInfo,
  closeOnSignals,
  type EmitterStats,
  fanout,
  type FrameWriter,
  type Mode,
  SampleEmit,
  type SampleEmitOptions,
} from "@ocycle/core";
import { analyzeVoice, levelDbfs, peakDbfs } from "./audio/dsp.ts";
import type { VadResult } from "./audio/vad.ts";
import type * as VadFiles from "./audio/vad_files.ts";
import type * as FlacModule from "./audio/flac.ts";
import type { RecorderResult } from "./audio/recorder.ts";
import { FLAC_ENV, OUT_ENV } from "./audio/recorder_env.ts";
import {
  decodeKey,
  generateKey,
  importKey,
  KEY_ENV,
  open,
} from "./audio/seal.ts";
import { paced, synthFrames } from "./audio/synth.ts";
import { encodeWav, parseWav, toMonoInt16 } from "./audio/wav.ts";

const RATE = 16000;
const FRAME = 320; // 20 ms
const KEY_FILE = "demo.key";
/** The directory of the consumers' modules, which a child may read. */
const AUDIO_DIR = decodeURIComponent(
  new URL("./audio/", import.meta.url).pathname,
);
/** Real speech for the default input: see audio/synth.ts. */
const SPEECH = new URL("./audio/speech.flac", import.meta.url);

const HELP =
  `The @ocycle/core audio demo: one 16 kHz mono 16-bit stream, three consumers.

  level meter  every 0.5 s   serial    RMS level in dBFS
  model        every 2 s     thread    Silero VAD v5 (ONNX Runtime, WebAssembly):
                                       speech probability, 50% duty cycle
  recorder     every 10 s    process   FLAC segments encrypted with AES-256-GCM

The model and FLAC encoder come from npm; the first run downloads them
(about 41 MiB) and says so.

Input (one of):
  (default)            recorded speech (espeak-ng), beeps and silence, looped
  --wav <file>         a WAV file, 16-bit PCM at 16 kHz (stereo is mixed down)
  --stdin              raw s16le mono 16 kHz PCM on stdin, e.g.
                       arecord -f S16_LE -r 16000 -c 1 | deno task demo --stdin

Options:
  --seconds <n>        length of the default signal (default 30)
  --fast               default or WAV input as fast as possible, not in real time
  --out <dir>          where segments and the key go (default: a new temp dir)
  --pool <n>           Workers / subprocesses per consumer (default 1)
  --model-mode <m>     serial, thread (default) or process
  --recorder-mode <m>  serial, thread or process (default)
  --quiet              no live lines, only notes and the summary

Decrypting a segment:
  --decrypt <file>     decrypt and decode a segment-NNNN.flac.enc (FLAC CRCs and
                       MD5 checked), print duration and level, and write the
                       plain segment-NNNN.flac beside it (flac -d decodes it)
  --flac-out <file>    with --decrypt: write the FLAC file there instead
  --wav-out <file>     with --decrypt: also write it as a WAV file
  The key comes from $${KEY_ENV} (base64, 32 bytes) or ${KEY_FILE} beside the file.

Ctrl-C (or SIGTERM) stops the input, flushes every consumer and prints the
summary; a second Ctrl-C, a second or more later, stops at once.
`;

interface DemoArgs {
  wav?: string;
  stdin: boolean;
  seconds: number;
  fast: boolean;
  out?: string;
  pool: number;
  modelMode: Mode;
  recorderMode: Mode;
  quiet: boolean;
  decrypt?: string;
  flacOut?: string;
  wavOut?: string;
  help: boolean;
}

function parseArgs(args: string[]): DemoArgs {
  const parsed: DemoArgs = {
    stdin: false,
    seconds: 30,
    fast: false,
    pool: 1,
    modelMode: "thread",
    recorderMode: "process",
    quiet: false,
    help: false,
  };
  const mode = (flag: string, value: string): Mode => {
    if (value === "serial" || value === "thread" || value === "process") {
      return value;
    }
    throw new TypeError(
      `${flag} must be serial, thread or process: received "${value}"`,
    );
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new TypeError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--wav":
        parsed.wav = value();
        break;
      case "--stdin":
        parsed.stdin = true;
        break;
      case "--seconds": {
        const text = value();
        parsed.seconds = Number(text);
        if (!(parsed.seconds > 0) || !Number.isFinite(parsed.seconds)) {
          throw new RangeError(
            `--seconds must be a positive number: received "${text}"`,
          );
        }
        break;
      }
      case "--fast":
        parsed.fast = true;
        break;
      case "--out":
        parsed.out = value();
        break;
      case "--pool": {
        const text = value();
        parsed.pool = Number(text);
        if (!Number.isSafeInteger(parsed.pool) || parsed.pool < 1) {
          throw new RangeError(
            `--pool must be a positive integer: received "${text}"`,
          );
        }
        break;
      }
      case "--model-mode":
        parsed.modelMode = mode(flag, value());
        break;
      case "--recorder-mode":
        parsed.recorderMode = mode(flag, value());
        break;
      case "--quiet":
        parsed.quiet = true;
        break;
      case "--decrypt":
        parsed.decrypt = value();
        break;
      case "--flac-out":
        parsed.flacOut = value();
        break;
      case "--wav-out":
        parsed.wavOut = value();
        break;
      case "--help":
      case "-h":
        parsed.help = true;
        break;
      default:
        throw new TypeError(`unknown option "${flag}" (see --help)`);
    }
  }
  if (parsed.wav !== undefined && parsed.stdin) {
    throw new TypeError("give either --wav or --stdin, not both");
  }
  if (parsed.decrypt === undefined) {
    const lone = parsed.flacOut !== undefined
      ? "--flac-out"
      : parsed.wavOut !== undefined
      ? "--wav-out"
      : undefined;
    if (lone !== undefined) {
      throw new TypeError(`${lone} goes with --decrypt <file>`);
    }
  }
  return parsed;
}

// ---- the npm packages, loaded when needed ----

/**
 * Imports a module of this example by a computed specifier: Deno fetches
 * what a literal `import("...")` needs before the program starts, and on a
 * first run the download would then come before the demo says what it is.
 */
function importLate<T>(path: string): Promise<T> {
  return import(new URL(path, import.meta.url).href);
}

function importFlac(): Promise<typeof FlacModule> {
  return importLate<typeof FlacModule>("./audio/flac.ts");
}

// ---- decrypting a segment ----

async function readKey(dir: string): Promise<{ key: string; from: string }> {
  const fromEnv = Deno.env.get(KEY_ENV);
  if (fromEnv !== undefined) return { key: fromEnv, from: `$${KEY_ENV}` };
  const path = `${dir}/${KEY_FILE}`;
  try {
    return { key: await Deno.readTextFile(path), from: path };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new TypeError(
        `Cannot decrypt as no key was found: set ${KEY_ENV} or put ${KEY_FILE} beside the file (looked for ${path})`,
      );
    }
    throw error;
  }
}

async function decryptCommand(
  file: string,
  flacOut?: string,
  wavOut?: string,
): Promise<void> {
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : ".";
  const { key, from } = await readKey(dir);
  let sealed: Uint8Array<ArrayBuffer>;
  try {
    sealed = await Deno.readFile(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new TypeError(`Cannot decrypt ${file}: no such file`);
  }
  const plain = await open(await importKey(decodeKey(key)), sealed);
  const { decodeFlac } = await importFlac();
  const flac = await decodeFlac(plain);
  if (flac.channels !== 1) {
    throw new TypeError(
      `Cannot check ${file} as its FLAC holds ${flac.channels} channels, not 1`,
    );
  }
  const samples = flac.samples;
  const seconds = flac.totalSamples / flac.rate;
  const voice = analyzeVoice(samples, { rate: flac.rate });
  const flacPath = flacOut ?? file.replace(/(\.enc)?$/, "").replace(
    /(\.flac)?$/,
    ".flac",
  );
  if (flacPath === file) {
    throw new TypeError(
      `Cannot decrypt ${file} beside itself as the plain file would take its name: give --flac-out <file>`,
    );
  }
  await Deno.writeFile(flacPath, plain);
  console.log(`${file}
  decrypted   AES-256-GCM, tag verified, key from ${from}
  flac        16-bit, ${flac.channels} channel(s), ${flac.rate} Hz, ${
    seconds.toFixed(2)
  } s, ${plain.length} bytes (${
    (100 * plain.length / (44 + 2 * samples.length)).toFixed(0)
  }% of WAV), frame CRCs and MD5 ${flac.md5} verified
  level       ${levelDbfs(samples).toFixed(1)} dBFS RMS, peak ${
    peakDbfs(samples).toFixed(1)
  } dBFS
  pitch       voiced in ${(voice.speechRatio * 100).toFixed(0)}% of frames${
    voice.pitchHz === null
      ? ""
      : `, median pitch ${voice.pitchHz.toFixed(0)} Hz`
  } (FFT)
  written     ${flacPath} (plain FLAC: flac -d, or any player)`);
  if (wavOut !== undefined) {
    await Deno.writeFile(wavOut, encodeWav(samples, flac.rate));
    console.log(`  written     ${wavOut} (plain WAV)`);
  }
}

// ---- inputs ----

/** Yields Int16 frames and says what the input is. */
interface Input {
  label: string;
  /** Samples, or the raw s16le bytes of them (a sample may be split between two). */
  frames: AsyncIterable<Int16Array | Uint8Array>;
  /** Stops the input; frames already read are still yielded. */
  stop(): void;
}

function synthInput(
  args: DemoArgs,
  speech: Int16Array,
  signal: AbortSignal,
): Input {
  const frames = synthFrames({
    seconds: args.seconds,
    rate: RATE,
    frame: FRAME,
    speech,
  });
  return {
    label: `recorded speech (espeak-ng), tones and silence, ${args.seconds} s${
      args.fast ? ", as fast as possible" : ", in real time"
    }`,
    frames: args.fast
      ? untilAborted(frames, signal)
      : paced(frames, (f) => (f.length / RATE) * 1000, signal),
    stop() {},
  };
}

async function wavInput(args: DemoArgs, signal: AbortSignal): Promise<Input> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(args.wav!);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new TypeError(`Cannot read --wav ${args.wav}: no such file`);
  }
  const wav = parseWav(bytes);
  if (wav.bitsPerSample !== 16 || wav.rate !== RATE) {
    throw new TypeError(
      `Cannot play ${args.wav} as the demo needs 16-bit PCM at ${RATE} Hz: received ${wav.bitsPerSample}-bit at ${wav.rate} Hz (convert it: sox ${args.wav} -r 16000 -b 16 -c 1 out.wav)`,
    );
  }
  const samples = toMonoInt16(wav.data, wav.channels);
  function* frames() {
    for (let i = 0; i < samples.length; i += FRAME) {
      yield samples.slice(i, i + FRAME);
    }
  }
  return {
    label: `${args.wav}, ${wav.seconds.toFixed(1)} s${
      wav.channels > 1 ? `, ${wav.channels} channels mixed down` : ""
    }${args.fast ? ", as fast as possible" : ", in real time"}`,
    frames: args.fast
      ? untilAborted(frames(), signal)
      : paced(frames(), (f) => (f.length / RATE) * 1000, signal),
    stop() {},
  };
}

function stdinInput(): Input {
  const reader = Deno.stdin.readable.getReader();
  async function* frames(): AsyncGenerator<Uint8Array> {
    // Raw s16le as read: a read may split a sample, and SampleEmit carries
    // the split sample to the next write itself.
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  return {
    label: "stdin, raw s16le mono 16 kHz",
    frames: frames(),
    stop() {
      reader.cancel().catch(() => {});
    },
  };
}

async function* untilAborted<T>(
  frames: Iterable<T>,
  signal: AbortSignal,
): AsyncGenerator<T> {
  let n = 0;
  for (const frame of frames) {
    if (signal.aborted) return;
    // Let Worker and child replies in now and then, so the live view keeps up.
    if (++n % 25 === 0) await new Promise((r) => setTimeout(r, 0));
    yield frame;
  }
}

// ---- consumers ----

interface Consumer {
  name: string;
  requested: Mode;
  mode: Mode;
  emitter: FrameWriter<Int16Array | Uint8Array> & {
    readonly stats: EmitterStats;
  };
  chunkSeconds: number;
  ms: number[];
  errors: number;
}

/**
 * Creates an emitter in the mode asked for; only if this version of the
 * library says the mode is not available does it fall back to serial, and
 * says so.
 */
function createEmitter<R>(
  name: string,
  callback: URL | ((chunk: Int16Array, t0: number, info: ChunkInfo) => R),
  size: number,
  mode: Mode,
  options: SampleEmitOptions<Int16Array, R>,
  note: (text: string) => void,
): { emitter: SampleEmit<Int16Array, R>; mode: Mode } {
  try {
    return {
      emitter: new SampleEmit<Int16Array, R>(callback, size, {
        ...options,
        mode,
      }),
      mode,
    };
  } catch (error) {
    if (
      !(error instanceof TypeError) ||
      !error.message.includes("not available in this version")
    ) throw error;
    note(
      `the ${name} asked for mode "${mode}", which this version of @ocycle/core does not have yet: it runs in serial mode instead`,
    );
    const { permissions: _p, env: _e, pool: _n, ...serial } = options;
    return {
      emitter: new SampleEmit<Int16Array, R>(callback, size, {
        ...serial,
        mode: "serial",
      }),
      mode: "serial",
    };
  }
}

function bar(dbfs: number): string {
  const cells = Math.max(0, Math.min(40, Math.round((dbfs + 80) / 2)));
  return "█".repeat(cells >> 1) + (cells & 1 ? "▌" : "");
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Time ranges in seconds, as "0.3-1.9 4.0-5.2 s". */
function seconds(ranges: [number, number][]): string {
  return `${
    ranges.map(([a, b]) => `${a.toFixed(1)}-${b.toFixed(1)}`).join(" ")
  } s`;
}

function ms(value: number): string {
  return Number.isNaN(value)
    ? "-"
    : value < 10
    ? `${value.toFixed(2)} ms`
    : `${value.toFixed(0)} ms`;
}

async function runDemo(args: DemoArgs): Promise<number> {
  const print = (text: string) => console.log(text);
  const note = (text: string) => console.log(`note: ${text}`);
  const live = (text: string) => {
    if (!args.quiet) console.log(text);
  };

  // The input first: a bad WAV file should fail before any download, and
  // before any key is made.
  const stopper = new AbortController();
  const given = args.stdin
    ? stdinInput()
    : args.wav !== undefined
    ? await wavInput(args, stopper.signal)
    : undefined;

  // The npm packages, here, so that a first run says what it waits for (Deno
  // lists each download) rather than leaving the Workers silent; the Workers
  // and the recorder's children then load them from Deno's cache.
  print(
    "loading the model and FLAC encoder from npm: the first run downloads them (about 41 MiB)",
  );
  const loading = performance.now();
  const [vadFiles, { decodeFlac }] = await Promise.all([
    importLate<typeof VadFiles>("./audio/vad_files.ts"),
    importFlac(),
  ]);
  print(
    `loaded ${vadFiles.PACKAGES} and libflacjs@5.6.0 in ${
      ((performance.now() - loading) / 1000).toFixed(1)
    } s`,
  );
  const input = given ?? synthInput(
    args,
    (await decodeFlac(await Deno.readFile(SPEECH))).samples,
    stopper.signal,
  );

  const out = args.out ?? await Deno.makeTempDir({ prefix: "ocycle-demo-" });
  await Deno.mkdir(out, { recursive: true });
  const outDir = await Deno.realPath(out);

  let key = Deno.env.get(KEY_ENV);
  let keyNote: string;
  if (key !== undefined) {
    decodeKey(key); // fail now, not in the recorder
    keyNote = `from $${KEY_ENV}`;
  } else {
    key = generateKey();
    const keyPath = `${outDir}/${KEY_FILE}`;
    await Deno.writeTextFile(keyPath, key + "\n", { mode: 0o600 });
    keyNote = `generated, saved in ${keyPath}`;
    print(
      `WARNING: ${KEY_ENV} is not set, so a new AES-256 key was generated and saved beside the recordings in ${keyPath}. Anyone who can read that file can decrypt them. For real use, keep the key elsewhere and pass it as ${KEY_ENV}=<base64 of 32 bytes>.`,
    );
  }

  // ---- the three consumers ----
  const consumers: Consumer[] = [];
  const time = (info: ChunkInfo) =>
    `${((info.offset + info.length) / RATE).toFixed(1).padStart(6)}s`;
  const failed = (c: () => Consumer) => (error: ChunkError) => {
    c().errors++;
    print(`error: ${c().name}: ${error.message}`);
  };

  const meterTimes: number[] = [];
  const meter = createEmitter<number>(
    "level meter",
    (chunk, _t0, info) => {
      const started = performance.now();
      const level = levelDbfs(chunk);
      meterTimes.push(performance.now() - started);
      live(
        `${time(info)} meter    #${String(info.index).padEnd(4)} ${
          level.toFixed(1).padStart(6)
        } dBFS ${bar(level)}`,
      );
      return level;
    },
    RATE / 2,
    "serial",
    {
      type: Int16Array,
      clip: true,
      onError: failed(() => consumers[0]!),
    },
    note,
  );
  consumers.push({
    name: "meter",
    requested: "serial",
    mode: meter.mode,
    emitter: meter.emitter,
    chunkSeconds: 0.5,
    ms: meterTimes,
    errors: 0,
  });

  let speechChunks = 0;
  /** Where the model heard speech, in seconds of the stream. */
  const heard: [number, number][] = [];
  const loads: VadResult["load"][] = [];
  const model = createEmitter<VadResult>(
    "model",
    new URL("./audio/vad.ts", import.meta.url),
    2 * RATE,
    args.modelMode,
    {
      type: Int16Array,
      clip: true,
      // A 50% duty cycle: after each 2 s chunk, skip the next 2 s of audio.
      sampler: 2000,
      pool: args.pool,
      // Each Worker creates the session and warms it up before it says it
      // is ready (a few seconds; longer on a busy machine).
      startTimeout: 120_000,
      // As a child: its modules to read, nothing else (the network and
      // ONNX Runtime's .wasm are imported as bytes from Deno's cache).
      ...(args.modelMode === "process"
        ? { permissions: { read: [AUDIO_DIR] } }
        : {}),
      onDone: (r, info) => {
        consumers[1]!.ms.push(r.ms);
        if (!loads.some((l) => l.sessionMs === r.load.sessionMs)) {
          loads.push(r.load);
          live(
            `         model    a ${
              consumers[1]!.mode === "thread" ? "Worker" : "runner"
            } loaded the network in ${
              ms(r.load.sessionMs)
            }, then warmed it up in ${
              ms(r.load.warmupMs)
            } (${r.load.warmupRuns} dummy runs; 2 s of audio took ${
              ms(r.load.firstMs)
            } at first, ${ms(r.load.lastMs)} at the end)`,
          );
        }
        if (r.speech) speechChunks++;
        const runs = r.runs.map(([a, b]): [number, number] => [
          (info.offset + a) / RATE,
          (info.offset + b) / RATE,
        ]);
        for (const run of runs) {
          const last = heard.at(-1);
          if (last !== undefined && run[0] - last[1] < 0.05) last[1] = run[1];
          else heard.push(run);
        }
        live(
          `${time(info)} model    #${String(info.index).padEnd(4)} ${
            (r.speech ? "speech" : "no speech").padEnd(9)
          } p ${r.mean.toFixed(2)} ${
            (r.speechShare * 100).toFixed(0).padStart(3)
          }% of ${r.windows} windows${
            runs.length === 0 ? "" : `  heard ${seconds(runs)}`
          }  ${ms(r.ms)} [${consumers[1]!.mode}]`,
        );
      },
      onError: failed(() => consumers[1]!),
    },
    note,
  );
  consumers.push({
    name: "model",
    requested: args.modelMode,
    mode: model.mode,
    emitter: model.emitter,
    chunkSeconds: 2,
    ms: [],
    errors: 0,
  });

  // The recorder gets the key and the output directory through its
  // environment, and only those: in process mode the child may read these two
  // variables (and the two libflac.js looks for, which it does not get), its
  // own modules, and write only the output directory.
  const recorderEnv = { [KEY_ENV]: key, [OUT_ENV]: outDir };
  if (args.recorderMode !== "process") {
    // Workers and inline callbacks share this process's environment.
    for (const [name, value] of Object.entries(recorderEnv)) {
      Deno.env.set(name, value);
    }
  }
  const files: RecorderResult[] = [];
  const recorderUrl = new URL("./audio/recorder.ts", import.meta.url);
  const recorder = createEmitter<RecorderResult>(
    "recorder",
    recorderUrl,
    10 * RATE,
    args.recorderMode,
    {
      type: Int16Array,
      clip: true,
      pool: args.pool,
      ...(args.recorderMode === "process"
        ? {
          env: recorderEnv,
          permissions: {
            read: [AUDIO_DIR],
            write: [outDir],
            env: [KEY_ENV, OUT_ENV, ...FLAC_ENV],
          },
        }
        : {}),
      onDone: (r, info) => {
        consumers[2]!.ms.push(r.ms);
        files.push(r);
        live(
          `${time(info)} recorder #${String(info.index).padEnd(4)} ${
            r.file.slice(r.file.lastIndexOf("/") + 1)
          }  ${r.seconds.toFixed(1)} s  ${(r.bytes / 1024).toFixed(0)} KiB  ${
            r.levelDbfs.toFixed(1)
          } dBFS  ${ms(r.ms)} [${consumers[2]!.mode}]`,
        );
      },
      onError: failed(() => consumers[2]!),
    },
    note,
  );
  consumers.push({
    name: "recorder",
    requested: args.recorderMode,
    mode: recorder.mode,
    emitter: recorder.emitter,
    chunkSeconds: 10,
    ms: [],
    errors: 0,
  });

  const all = fanout<Int16Array | Uint8Array>(
    ...consumers.map((c) => c.emitter),
  );

  // ---- Ctrl-C or SIGTERM: the first stops the input and flushes, a ----
  // ---- second one aborts (closeOnSignals tells a second from a repeat) ----
  let stoppedBy: string | undefined;
  const say = (signal: Deno.Signal) => signal === "SIGINT" ? "Ctrl-C" : signal;
  using shutdown = closeOnSignals(all, {
    onSignal: (signal, action) => {
      if (action === "close") {
        stoppedBy = say(signal);
        print(`\n${stoppedBy}: stopping the input and flushing every consumer`);
        stopper.abort();
        input.stop();
      } else print(`\n${say(signal)} again: aborting`);
    },
  });

  print(
    `input: ${input.label}\nconsumers: meter every 0.5 s [${meter.mode}], model every 2 s at a 50% duty cycle [${model.mode}], recorder every 10 s [${recorder.mode}]\nfiles: ${outDir}\n`,
  );

  const started = performance.now();
  const epoch = Date.now();
  /** Bytes of s16le written so far (2 a sample). */
  let bytes = 0;
  let failure: unknown;
  try {
    for await (const frame of input.frames) {
      // The consumers are closing: a write now would throw.
      if (shutdown.signal.aborted) break;
      // Stamp each frame with its place in the stream (its first sample's,
      // split or not), so that the sampler's duty cycle follows audio time
      // even when the input runs faster.
      const t0 = epoch + (Math.floor(bytes / 2) / RATE) * 1000;
      bytes += frame.byteLength;
      if (!all.write(frame, t0)) await all.ready;
    }
  } catch (error) {
    failure = error;
  }
  try {
    // After a signal, the close it started: its flush is waited for here.
    await all.close();
  } catch (error) {
    failure ??= error;
  }
  const elapsed = (performance.now() - started) / 1000;
  const audioSeconds = Math.floor(bytes / 2) / RATE;

  // ---- the summary ----
  print(`\n── summary ${"─".repeat(60)}`);
  print(
    `input      ${audioSeconds.toFixed(1)} s of audio in ${
      elapsed.toFixed(1)
    } s (${(audioSeconds / Math.max(elapsed, 1e-3)).toFixed(1)}x real time)${
      stoppedBy === undefined ? "" : `, stopped by ${stoppedBy}`
    }`,
  );
  for (const c of consumers) {
    const s = c.emitter.stats;
    const droppedSeconds = s.dropped / RATE;
    const fell = c.mode !== c.requested ? ` (asked for ${c.requested})` : "";
    print(
      `${c.name.padEnd(10)} ${(c.mode + fell).padEnd(8)} ${
        String(s.done).padStart(4)
      } chunk${s.done === 1 ? "" : "s"} of ${c.chunkSeconds} s${
        s.emitted > s.done ? ` (${s.emitted - s.done} not done)` : ""
      }, callback p50 ${ms(percentile(c.ms, 0.5))}, max ${
        ms(percentile(c.ms, 1))
      }, dropped ${droppedSeconds.toFixed(1)} s${
        s.droppedChunks > 0 ? ` + ${s.droppedChunks} chunks` : ""
      }${
        c.name === "model"
          ? ` (the sampler's duty cycle: ${
            (100 * droppedSeconds / Math.max(audioSeconds, 1e-9)).toFixed(0)
          }% of the audio)`
          : ""
      }${c.errors > 0 ? `, ${c.errors} FAILED` : ""}`,
    );
  }
  // The model saw every other 2 s: "heard" covers the chunks it ran on.
  const shown = heard.slice(0, 12);
  print(
    `speech     in ${speechChunks} of ${
      consumers[1]!.emitter.stats.done
    } model chunks${
      heard.length === 0
        ? ", heard nowhere"
        : `, heard at ${seconds(shown)}${
          heard.length > shown.length
            ? ` and ${heard.length - shown.length} more`
            : ""
        }`
    }`,
  );
  const totalBytes = files.reduce((n, f) => n + f.bytes, 0);
  const wavBytes = files.reduce((n, f) => n + f.wavBytes, 0);
  files.sort((a, b) => a.file.localeCompare(b.file));
  print(
    `files      ${files.length} encrypted FLAC segment(s), ${
      (totalBytes / 1024).toFixed(0)
    } KiB${
      files.length > 0
        ? ` (${(100 * totalBytes / wavBytes).toFixed(0)}% of WAV's ${
          (wavBytes / 1024).toFixed(0)
        } KiB)`
        : ""
    }, in ${outDir}${
      files.length > 0
        ? `\n           ${
          files.map((f) => f.file.slice(f.file.lastIndexOf("/") + 1)).join(
            " ",
          )
        }`
        : ""
    }`,
  );
  print(`key        ${keyNote}`);
  if (files.length > 0) {
    print(
      `decrypt    deno task demo --decrypt ${
        files[0]!.file
      }   (writes the plain .flac beside it)`,
    );
  }
  const errors = consumers.reduce((n, c) => n + c.errors, 0);
  if (failure !== undefined) {
    print(
      `error: ${failure instanceof Error ? failure.message : String(failure)}`,
    );
    return 1;
  }
  return errors > 0 ? 1 : 0;
}

if (import.meta.main) {
  let code: number;
  try {
    const args = parseArgs(Deno.args);
    if (args.help) {
      console.log(HELP);
      code = 0;
    } else if (args.decrypt !== undefined) {
      await decryptCommand(args.decrypt, args.flacOut, args.wavOut);
      code = 0;
    } else code = await runDemo(args);
  } catch (error) {
    console.error(
      `error: ${error instanceof Error ? error.message : String(error)}`,
    );
    code = error instanceof TypeError || error instanceof RangeError ? 2 : 1;
  }
  Deno.exit(code);
}
