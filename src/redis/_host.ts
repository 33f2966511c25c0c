// Copyright the @ocycle/core authors. MIT license.
// The host name that fleet producers and workers put in their names, read
// only where it is granted: Deno.hostname() without --allow-sys would prompt
// in a terminal, and a prompt is no place for a name.

/** This machine's host name, or `undefined` where it may not be read without asking. */
export function hostName(): string | undefined {
  try {
    const sys = { name: "sys", kind: "hostname" } as const;
    if (Deno.permissions.querySync(sys).state !== "granted") return undefined;
    return Deno.hostname();
  } catch {
    return undefined; // a runtime without permissions or host names
  }
}

/** A name unique in a fleet: `${host}-${pid}-<8 hex digits>` (no host where it may not be read). */
export function fleetName(): string {
  const random = crypto.getRandomValues(new Uint8Array(4));
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const host = hostName();
  return `${host === undefined ? "" : host + "-"}${Deno.pid}-${hex}`;
}
