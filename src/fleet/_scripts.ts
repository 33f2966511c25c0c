// Copyright the @ocycle/core authors. MIT license.
// The keys and Lua scripts of the fleet protocol (fleet/_protocol.ts). Both
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

/**
 * The hash of a chunk stream that counts, per entry id, the workers that
 * started it (START) and have not ended it: what tells a worker's death
 * mid-chunk from an entry claimed and never started (docs/fleet.md).
 */
export function startedHash(stream: string): string {
  return `${stream}:started`;
}

/** The hash of one producer's adds: the add keys it sent (marked with their XADD). */
export function addedHash(stream: string, producer: string): string {
  return `${stream}:added:${producer}`;
}

/** The dead-letter stream of a chunk stream. */
export function deadStream(stream: string): string {
  return `${stream}:dead`;
}

/**
 * How long a result stream lives after its last result, in ms: the stream of
 * a producer that died, or a result that came after its producer left,
 * expires instead of staying in Redis for good. A producer deletes its own
 * when it closes.
 */
export const RESULTS_TTL = 24 * 60 * 60 * 1000;

/** Whether entry `id` of KEYS[1] is pending for consumer ARGV[2] in group ARGV[1]. */
const OWNS = `
local function owns(id)
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  return #p == 1 and p[1][2] == ARGV[2]
end
`;

/**
 * The field of the started hash that names the delivery whose start was
 * counted last (`consumer delivery-count`), so that a START run again (its
 * reply lost with the connection, the script run all the same) counts once.
 */
export function startedBy(id: string): string {
  return `${id}:by`;
}

/**
 * The fenced start. KEYS[1] the chunk stream, KEYS[2] its started hash;
 * ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] the most
 * workers that may have started it and vanished (maxStalls). Returns
 * `{"started", n}` having counted this worker (n started it before),
 * `{"poison", n}` when n reached ARGV[4] (nothing changed), or
 * `{"fenced", 0}` when the entry is not pending for this consumer.
 * Idempotent per delivery: run again by the same consumer for the same
 * delivery (the same delivery count), it counts nothing more and answers
 * as the first run did.
 */
export const START_SCRIPT = new Script(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p ~= 1 or p[1][2] ~= ARGV[2] then return {'fenced', 0} end
local mark = ARGV[2] .. ' ' .. p[1][4]
local by = ARGV[3] .. ':by'
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
if redis.call('HGET', KEYS[2], by) == mark then return {'started', n - 1} end
if n >= tonumber(ARGV[4]) then return {'poison', n} end
redis.call('HSET', KEYS[2], ARGV[3], n + 1, by, mark)
return {'started', n}
`);

/**
 * The fenced commit. KEYS[1] the chunk stream, KEYS[2] its started hash,
 * KEYS[3] the target stream;
 * ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] the mode.
 * - `result`: XADD ARGV[5..] (a result entry) to KEYS[3].
 * - `dead`: XADD to KEYS[3] (the dead-letter stream) a copy of the chunk
 *   entry's fields (read here, so its bytes do not travel again) with `error`
 *   ARGV[5], `worker` ARGV[2] and `deliveries` ARGV[6]; and when KEYS[4] is
 *   given, XADD ARGV[7..] (an error result) to it.
 * A result stream written to expires RESULTS_TTL after its last result.
 * Then XACK and XDEL the chunk entry, and drop its start count. Returns `{"committed", ids...}`; or
 * `{"fenced"}`, having changed nothing, when the entry is not pending for
 * this consumer (reclaimed by another, or committed already); or
 * `{"wrongtype", key}`, having changed nothing, when a key it would append
 * to holds something other than a stream (a reply field written by hand):
 * checked before any write, as a script's writes are not undone by a later
 * error.
 */
export const COMMIT_SCRIPT = new Script(
  OWNS + `
local RESULTS_TTL = ${RESULTS_TTL}
if not owns(ARGV[3]) then return {'fenced'} end
for i = 3, #KEYS do
  local t = redis.call('TYPE', KEYS[i])
  t = t.ok or t
  if t ~= 'stream' and t ~= 'none' then return {'wrongtype', KEYS[i]} end
end
local ids = {}
if ARGV[4] == 'result' then
  ids[1] = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 5))
  redis.call('PEXPIRE', KEYS[3], RESULTS_TTL)
else
  local fields = {}
  local e = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
  if #e == 1 then fields = e[1][2] end
  for _, v in ipairs({'error', ARGV[5], 'worker', ARGV[2], 'deliveries', ARGV[6]}) do
    fields[#fields + 1] = v
  end
  ids[1] = redis.call('XADD', KEYS[3], '*', unpack(fields))
  if #KEYS >= 4 then
    ids[2] = redis.call('XADD', KEYS[4], '*', unpack(ARGV, 7))
    redis.call('PEXPIRE', KEYS[4], RESULTS_TTL)
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[3], ARGV[3] .. ':by')
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

/**
 * The consumer that holds handed-back entries until a worker takes them: a
 * name no worker uses, so that no one's fenced commit passes for them, and
 * the worker that handed them back may leave the group.
 */
export const HANDED_BACK = "ocycle:handed-back";

/**
 * How idle a handed-back entry is made, in ms (ten years): past any
 * `staleAfter`, so the next XAUTOCLAIM of any worker takes it at once, and
 * below the clock's epoch milliseconds, which Redis requires of IDLE.
 */
export const HANDED_BACK_IDLE = 315_360_000_000;

/**
 * The fenced hand-back. KEYS[1] the chunk stream, KEYS[2] its started hash;
 * ARGV[1] group, ARGV[2] consumer, ARGV[3] the idle time to give, ARGV[4]
 * the consumer that takes them (HANDED_BACK), ARGV[5] how many of the ids
 * that follow this worker had started (they come first), ARGV[6..] entry
 * ids, or none for every entry pending for this consumer. Moves those still pending for this consumer to ARGV[4]
 * (XCLAIM ... IDLE ... RETRYCOUNT ... JUSTID), their delivery count lowered
 * by one, as the delivery that ends here never ran them to the end and the
 * next XAUTOCLAIM counts one again; the start count of those it had
 * started is lowered by one (stopping is not a death). Then, when this consumer holds nothing,
 * XGROUP DELCONSUMER (which would drop what it still held from the group).
 * Returns `{handed back, 1 if the consumer was deleted else 0}`.
 */
export const HANDBACK_SCRIPT = new Script(
  OWNS + `
local ids = {}
local started = tonumber(ARGV[5])
if #ARGV >= 6 then
  for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 10000, ARGV[2])) do
    ids[#ids + 1] = p[1]
  end
end
local n = 0
for i, id in ipairs(ids) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    local count = math.max(p[1][4] - 1, 0)
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, id, 'IDLE', ARGV[3],
      'RETRYCOUNT', count, 'JUSTID')
    if i <= started then
      redis.call('HDEL', KEYS[2], id .. ':by')
      if redis.call('HINCRBY', KEYS[2], id, -1) <= 0 then
        redis.call('HDEL', KEYS[2], id)
      end
    end
    n = n + 1
  end
end
local deleted = 0
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  deleted = 1
end
return {n, deleted}
`,
);

/**
 * Removes the group's consumers that hold nothing and were last seen more
 * than ARGV[2] ms ago: the names of workers that were killed (a worker that
 * stops leaves by itself). KEYS[1] the chunk stream; ARGV[1] the group.
 * Atomic, so a consumer cannot be given an entry between the look and the
 * removal (XGROUP DELCONSUMER would drop it from the group). A live worker
 * reads every second or so; one removed by mistake comes back with its next
 * read. Returns how many it removed.
 */
export const PRUNE_SCRIPT = new Script(`
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    n = n + 1
  end
end
return n
`);
