// Copyright the @ocycle/core authors. MIT license.
// The syntax of the `ocycle` command line: which flags each command has, the
// names each answers to, which take a value, and how a command line is read
// into them. A flag that does not exist, a value forgotten, a flag given
// twice: each is a UsageError that names the flag and the value. What the
// values mean is for _args.ts, and whether they are right for the library.

// 1.0.28 or later (deno.json): before it parseArgs read an empty value,
// `--size=`, as an unknown option named "size=".
import { parseArgs } from "@std/cli/parse-args";
import { redactUrl } from "../fleet/_url.ts";

/** A bad command line; its message names the flag and the value. */
export class UsageError extends Error {
  /** The error's name. */
  override readonly name = "UsageError";
}

/** The flags that take a value, by their long names, as parseArgs knows them. */
const VALUE_NAMES = [
  "size",
  "hop",
  "rate",
  "format",
  "channels",
  "exec",
  "module",
  "export",
  "mode",
  "allow",
  "pool",
  "timeout",
  "retries",
  "retry-delay",
  "redis",
  "redis-env",
  "redis-file",
  "stream",
  "group",
  "in-flight",
  "name",
] as const;
/** The flags that take no value. */
const BOOLEAN_NAMES = [
  "clip",
  "keep-order",
  "keep-failed",
  "quiet",
  "help",
] as const;
export type ValueName = typeof VALUE_NAMES[number];
export type BooleanName = typeof BOOLEAN_NAMES[number];

/** The flags of one command: `ocycle` or `ocycle worker`. */
export interface Command {
  /** How its messages name it. */
  name: string;
  values: readonly ValueName[];
  booleans: readonly BooleanName[];
}

export const OCYCLE: Command = {
  name: "ocycle",
  values: VALUE_NAMES.filter((name) => name !== "name"),
  booleans: BOOLEAN_NAMES,
};

export const WORKER: Command = {
  name: "ocycle worker",
  values: [
    "redis",
    "redis-env",
    "redis-file",
    "stream",
    "group",
    "name",
    "module",
    "export",
    "mode",
    "pool",
    "allow",
    "timeout",
  ],
  booleans: ["quiet", "help"],
};

/** The short and other names of flags, and the long name each stands for. */
const ALIASES: readonly (readonly [string, ValueName | BooleanName])[] = [
  ["-s", "size"],
  ["-j", "pool"],
  ["--jobs", "pool"],
  ["-k", "keep-order"],
  ["-q", "quiet"],
  ["-h", "help"],
];

/** Every name a flag of either command answers to, with or without "=value". */
const ANY_FLAG = new Set(
  [OCYCLE, WORKER].flatMap((command) => {
    const { valueFlags, booleanFlags } = flagNames(command);
    return [...valueFlags.keys(), ...booleanFlags.keys()];
  }),
);
/** The short flags that take a value, which may come attached: -j4. */
const SHORT_VALUE_FLAG = new Set(
  [OCYCLE, WORKER].flatMap((command) =>
    [...flagNames(command).valueFlags.keys()].filter((name) =>
      /^-[a-z]$/i.test(name)
    )
  ),
);

/**
 * `parseArgs` as readFlags calls it, typed here since the offline copy of
 * the standard library has no types; assigning @std/cli's own `parseArgs` to
 * it checks this against @std/cli's types wherever those are present.
 */
type ParseArgs = (
  args: string[],
  options: {
    string: readonly ValueName[];
    collect: readonly ValueName[];
    boolean: readonly BooleanName[];
    unknown: (arg: string) => unknown;
  },
) => { [Name in ValueName]?: string[] } & { [Name in BooleanName]?: boolean };
const parse: ParseArgs = parseArgs;

/** A command line read by its command's flags. */
export interface Flags {
  /** A value flag's value, if given; given twice is an error (but --allow). */
  one(flag: `--${ValueName}`): string | undefined;
  /** Every value of a flag given many times. */
  all(flag: `--${ValueName}`): string[];
  /** Whether a flag that takes no value was given. */
  has(flag: BooleanName): boolean;
}

/**
 * Reads a command line by the flags of `command`: any other flag is unknown
 * to it.
 *
 * @throws {UsageError} Naming the flag and the value.
 */
export function readFlags(args: readonly string[], command: Command): Flags {
  const { spelled, error } = spell(args, command);
  // Each flag parseArgs is given is one it knows, with its value after "=":
  // what is left for it to judge is an unknown option or a bare argument,
  // refused here in the order they come.
  const parsed = parse(spelled, {
    string: command.values,
    collect: command.values,
    boolean: command.booleans,
    unknown: (arg) => {
      throw notAnOption(arg, command);
    },
  });
  // What spell() refused comes after all that parseArgs has just accepted.
  if (error !== undefined) throw error;
  const all = (flag: `--${ValueName}`) =>
    parsed[flag.slice(2) as ValueName] ?? [];
  return {
    all,
    one: (flag) => {
      const list = all(flag);
      if (list.length > 1 && flag !== "--allow") {
        throw new UsageError(
          `${flag} was given ${list.length} times (${
            list.map((v) => `"${flag === "--redis" ? redactUrl(v) : v}"`)
              .join(", ")
          }): give it once`,
        );
      }
      return list[0];
    },
    has: (flag) => parsed[flag] ?? false,
  };
}

/**
 * Spells every flag of the command line `--name=value`, the one form in which
 * parseArgs takes a value exactly as given, whatever it looks like: `-j2`,
 * `-j=2`, `-j 2`, `--jobs 2` and `--pool 2` all become `--pool=2`, and a flag
 * that takes no value becomes `--name=true`. Left to itself parseArgs would
 * read `--size -3` as an empty --size and an option -3, `--clip true` as
 * --clip given "true", `-q=yes` as quiet "yes", and `-s1MiB` as -s and four
 * more short flags; and with `alias` for the short names it would also take
 * `--s`, `--k` and `-kq`, and file `--jobs 2 -j 3` under two names, one a
 * list and the other a number (std 1.4.0, tried), so the aliases are here.
 * Other arguments pass through for parseArgs to refuse, except two that it
 * would misread: "--" (it parses nothing after it) and `--no-x=y` (read as
 * `--x=y`).
 *
 * Stops at the first argument it refuses and returns that error with the
 * arguments before it, which parseArgs then judges first.
 */
function spell(
  args: readonly string[],
  command: Command,
): { spelled: string[]; error: UsageError | undefined } {
  const { valueFlags, booleanFlags } = flagNames(command);
  const spelled: string[] = [];
  for (let i = 0; i < args.length; i++) {
    let arg = args[i]!;
    // -j2 and -s1MiB, as parallel and other tools take them, mean -j=2, -s=1MiB.
    if (
      /^-[a-z][^=]/i.test(arg) && valueFlags.has(arg.slice(0, 2))
    ) arg = `${arg.slice(0, 2)}=${arg.slice(2)}`;
    const eq = arg.startsWith("-") ? arg.indexOf("=") : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const valueFlag = valueFlags.get(flag);
    if (valueFlag !== undefined) {
      if (eq < 0 && i + 1 === args.length) {
        return { spelled, error: new UsageError(`${flag} needs a value`) };
      }
      // `--size --exec cat`: the value was forgotten, and the flag after it
      // is not the value. A value that only looks like a flag (-3) is judged
      // as a value; one that is a flag's name can be given as --size=--exec.
      const next = args[i + 1]!;
      if (eq < 0 && isFlag(next)) {
        const error = new UsageError(
          `${flag} needs a value: the next argument, "${next}", is an option`,
        );
        return { spelled, error };
      }
      spelled.push(`${valueFlag}=${eq > 0 ? arg.slice(eq + 1) : args[++i]}`);
      continue;
    }
    const booleanFlag = booleanFlags.get(flag);
    if (booleanFlag !== undefined) {
      if (eq > 0) {
        const error = new UsageError(
          `${flag} takes no value: received "${arg}"`,
        );
        return { spelled, error };
      }
      spelled.push(`${booleanFlag}=true`);
      continue;
    }
    if (arg === "--" || /^--no-.*=/s.test(arg)) {
      return { spelled, error: notAnOption(arg, command) };
    }
    spelled.push(arg);
  }
  return { spelled, error: undefined };
}

/**
 * Every name each flag of `command` answers to, with the `--long` form
 * parseArgs is given: the flags that take a value, and those that do not.
 */
function flagNames(command: Command): {
  valueFlags: Map<string, `--${ValueName}`>;
  booleanFlags: Map<string, `--${BooleanName}`>;
} {
  const valueFlags = new Map<string, `--${ValueName}`>();
  const booleanFlags = new Map<string, `--${BooleanName}`>();
  for (const name of command.values) valueFlags.set(`--${name}`, `--${name}`);
  for (const name of command.booleans) {
    booleanFlags.set(`--${name}`, `--${name}`);
  }
  for (const [alias, name] of ALIASES) {
    if ((command.values as readonly string[]).includes(name)) {
      valueFlags.set(alias, `--${name as ValueName}`);
    } else if ((command.booleans as readonly string[]).includes(name)) {
      booleanFlags.set(alias, `--${name as BooleanName}`);
    }
  }
  return { valueFlags, booleanFlags };
}

/** Whether `arg` is a flag of either command (`--exec`, `-j4`, `--pool=2`). */
function isFlag(arg: string): boolean {
  if (!arg.startsWith("-")) return false;
  const eq = arg.indexOf("=");
  if (ANY_FLAG.has(eq > 0 ? arg.slice(0, eq) : arg)) return true;
  // -j4, -s1MiB: a short value flag with its value attached.
  return /^-[a-z]./i.test(arg) && SHORT_VALUE_FLAG.has(arg.slice(0, 2));
}

/** The error for an argument that is no flag of `command`. */
function notAnOption(arg: string, command: Command): UsageError {
  if (command === WORKER) {
    return new UsageError(
      arg.startsWith("-")
        ? `unknown option "${arg}" for ocycle worker${
          OCYCLE.values.includes(arg.replace(/^--|=.*$/gs, "") as ValueName) ||
            OCYCLE.booleans.includes(arg.slice(2) as BooleanName) ||
            arg === "-s" || arg === "-k"
            ? ": it is the producer's (ocycle --redis ...), which cuts the chunks"
            : ""
        }`
        : `unexpected argument "${arg}"`,
    );
  }
  return new UsageError(
    arg.startsWith("-")
      ? `unknown option "${arg}"`
      : `unexpected argument "${arg}": the command to run goes in one string, --exec "${arg} ..."`,
  );
}

/** Reads one value flag: its value, if given once. */
export type One = Flags["one"];
