// Copyright the @ocycle/core authors. MIT license.
// Keeps what the library writes to this process's stderr during a test (the
// lines it forwards from a child, its warnings) instead of printing them, so
// that a test asserts on them and the test run stays readable.

/**
 * Runs `fn` with `Deno.stderr`'s writes kept instead of printed, and returns
 * its result with what was written. Whatever `fn` does, stderr is given back.
 */
export async function keepStderr<T>(
  fn: () => Promise<T>,
): Promise<{ value: T; stderr: string }> {
  const stderr = Deno.stderr;
  const own = Object.getOwnPropertyDescriptors(stderr);
  const decoder = new TextDecoder();
  let kept = "";
  const keep = (bytes: Uint8Array) => {
    kept += decoder.decode(bytes, { stream: true });
    return bytes.length;
  };
  stderr.writeSync = keep;
  stderr.write = (bytes) => Promise.resolve(keep(bytes));
  try {
    const value = await fn();
    return { value, stderr: kept + decoder.decode() };
  } finally {
    // Back to the class's own methods, unless they were own properties.
    for (const name of ["writeSync", "write"] as const) {
      if (name in own) Object.defineProperty(stderr, name, own[name]!);
      else delete (stderr as Partial<typeof stderr>)[name];
    }
  }
}
