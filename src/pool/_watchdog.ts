// Copyright the @ocycle/core authors. MIT license.
// The entry of a pool's watchdog: `deno run --allow-run _watchdog.ts`, started
// by pool/_groups.ts in a session and process group of its own, so that a
// terminal's Ctrl-C never reaches it. Its parent tells it, one line each, the
// process group of every child or command it starts ("+pid"), of each one
// that ended ("-pid"), and of one to kill now ("!pid": the parent may lack
// the permission to kill a group itself). When its stdin ends it kills every
// group still registered, and exits: the kernel closes that pipe however the
// parent ends (SIGKILL, out of memory, a crash), and a child busy in its
// callback never reads its own stdin, but this process always does.
// It imports nothing, so it starts fast and needs no network. While lines
// keep coming it reads them at most every READ_EVERY ms, all at once: a
// parent starting thousands of commands a second does not wake it for each.

const groups = new Set<number>();

/** Kills a process group; it may be gone already. */
function kill(group: number): void {
  try {
    Deno.kill(-group, "SIGKILL");
  } catch {
    // No such group any more.
  }
}

/** Applies one line from the parent. */
function apply(line: string): void {
  const group = Number(line.slice(1));
  // Never 0 or 1: kill(0) is our own group, kill(-1) every process we may signal.
  if (!Number.isSafeInteger(group) || group <= 1) return;
  switch (line[0]) {
    case "+":
      groups.add(group);
      break;
    case "-":
      groups.delete(group);
      break;
    case "!":
      groups.delete(group);
      kill(group);
      break;
  }
}

/** Milliseconds between reads while lines keep coming; its parent's end is noticed this much later at most. */
const READ_EVERY = 50;

const decoder = new TextDecoder();
const buffer = new Uint8Array(1 << 16);
let text = "";
while (true) {
  let n: number | null;
  try {
    n = await Deno.stdin.read(buffer);
  } catch {
    n = null;
  }
  if (n === null) break;
  text += decoder.decode(buffer.subarray(0, n), { stream: true });
  const lines = text.split("\n");
  text = lines.pop()!;
  for (const line of lines) apply(line);
  await new Promise((resolve) => setTimeout(resolve, READ_EVERY));
}
for (const group of groups) kill(group);
Deno.exit(0);
