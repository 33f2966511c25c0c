// Copyright the @ocycle/core authors. MIT license.
// The keys and Lua scripts of the fleet protocol (redis/_fleet.ts). Both
// scripts first check that the entry is still pending for the calling
// consumer (XPENDING stream group id id 1), so that a worker that stalled and
// lost its entries to another can neither publish, ack, delete, nor take them
// back: the fence.

import { Script } from "./_streams.ts";

/** The task field naming the stream its result goes to (added by the producer). */
export const REPLY_FIELD = "reply";

/** The result stream of one producer of a chunk stream. */
export function resultStream(stream: string, producer: string): string {
  return `${stream}:results:${producer}`;
}

/** The dead-letter stream of a chunk stream. */
export function deadStream(stream: string): string {
  return `${stream}:dead`;
}

/** Whether entry `id` of KEYS[1] is pending for consumer ARGV[2] in group ARGV[1]. */
const OWNS = `
local function owns(id)
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  return #p == 1 and p[1][2] == ARGV[2]
end
`;

/**
 * The fenced commit. KEYS[1] the chunk stream, KEYS[2] the target stream;
 * ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] the mode.
 * - `result`: XADD ARGV[5..] (a result entry) to KEYS[2].
 * - `dead`: XADD to KEYS[2] (the dead-letter stream) a copy of the chunk
 *   entry's fields (read here, so its bytes do not travel again) with `error`
 *   ARGV[5], `worker` ARGV[2] and `deliveries` ARGV[6]; and when KEYS[3] is
 *   given, XADD ARGV[7..] (an error result) to it.
 * Then XACK and XDEL the chunk entry. Returns `{"committed", ids...}`; or
 * `{"fenced"}`, having changed nothing, when the entry is not pending for
 * this consumer (reclaimed by another, or committed already).
 */
export const COMMIT_SCRIPT = new Script(
  OWNS + `
if not owns(ARGV[3]) then return {'fenced'} end
local ids = {}
if ARGV[4] == 'result' then
  ids[1] = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
else
  local fields = {}
  local e = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
  if #e == 1 then fields = e[1][2] end
  for _, v in ipairs({'error', ARGV[5], 'worker', ARGV[2], 'deliveries', ARGV[6]}) do
    fields[#fields + 1] = v
  end
  ids[1] = redis.call('XADD', KEYS[2], '*', unpack(fields))
  if #KEYS >= 3 then
    ids[2] = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7))
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return {'committed', unpack(ids)}
`,
);

/**
 * The fenced heartbeat. KEYS[1] the chunk stream; ARGV[1] group, ARGV[2]
 * consumer, ARGV[3..] entry ids. Resets the idle time (XCLAIM 0 JUSTID, which
 * leaves the delivery count alone) of those still pending for this consumer
 * only, so a worker that wakes up never takes back what another took over.
 * Returns the ids it refreshed.
 */
export const HEARTBEAT_SCRIPT = new Script(
  OWNS + `
local held = {}
for i = 3, #ARGV do
  if owns(ARGV[i]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    held[#held + 1] = ARGV[i]
  end
end
return held
`,
);
