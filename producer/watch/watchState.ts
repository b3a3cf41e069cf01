import { createHash } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import type { QueueKeys } from "../../shared/queueKeys.ts";
import { ioredisScripts, type ScriptClient } from "../../shared/redisScripts.ts";

// What a watch of one prefix has enqueued, kept in Redis beside the queue and shared by every
// watcher of the prefix, so that a restarted watcher neither misses what arrived meanwhile nor
// repeats what is done, and two watchers at once agree.
//
// Each key has a record: the version (ETag) its last job was made for, that version's time, a
// sequence number and whether the job is added yet. A new version is claimed in one step that
// takes the next number of a counter; the job's id names the ETag and that number, so content
// that comes back (A, then B, then A again) is a new job, and a claim is never made twice. The
// job is added after its claim and the record settled after the job: a watcher killed in
// between finds the claim pending and adds the job again under the same id, which BullMQ keeps
// once. Records of objects that are gone are forgotten (two listings that no longer show them, a
// removal event), so the state is bounded by the prefix's objects, and an object made again
// after it was deleted is a new job.

/** What is known of one key. */
export interface WatchRecord {
  /** Numbers each claimed version; 0 for versions recorded without a job. */
  seq: number;
  etag: string;
  /** The version's time (listing's LastModified, an event's time), ms; -1 when unknown. */
  modifiedMs: number;
  /** When the claim was made (the claiming watcher's clock), ms. */
  claimedMs: number;
  /** Claimed but its job not known to be added. */
  pending: boolean;
  /** Stored by s3csv 0.3.0 (the ETag alone): rewritten by the next claim of its key. */
  legacy: boolean;
}

/**
 * Times from listings (to the second on some S3s) and from events (the request's time) differ
 * by up to a second or so for one version: a version is taken for older than the recorded one
 * only when it is older by more than this, and a record is forgotten only when it is older
 * than the listing or removal by more than this (clocks of watchers apart included).
 */
export const TIME_MARGIN_MS = 5000;

// A record in one field: "seq modifiedMs claimedMs p|d etag". A 0.3.0 watcher stored the bare
// ETag (it starts with a quote): read as a version recorded without a job, rewritten when seen.
const PARSE = `
local function parse(value)
  local seq, modified, claimed, state, etag = string.match(value, '^(%d+) (%-?%d+) (%d+) ([pd]) (.*)$')
  if not seq then return 0, -1, 0, 'd', value, true end
  return tonumber(seq), tonumber(modified), tonumber(claimed), state, etag, false
end
`;

// KEYS: records, key order, counter, output owners. ARGV: key, etag, modifiedMs, nowMs, margin,
// output ("" for none). Returns the key's record after the claim; "stale": the version offered is older than
// the one recorded (an event or listing that arrived late); or "clash OWNER": the output is
// another key's, which still has a record (the version is recorded without a job).
const CLAIM = `${PARSE}
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local seq, modified, claimed, state, etag, legacy = parse(current)
  if etag == ARGV[2] then
    if legacy then
      current = '0 ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' d ' .. etag
      redis.call('HSET', KEYS[1], ARGV[1], current)
      redis.call('ZADD', KEYS[2], 0, ARGV[1])
    end
    return current
  end
  local offered = tonumber(ARGV[3])
  if offered >= 0 and modified >= 0 and offered + tonumber(ARGV[5]) < modified then return 'stale' end
end
if ARGV[6] ~= '' then
  local owner = redis.call('HGET', KEYS[4], ARGV[6])
  if owner and owner ~= ARGV[1] and redis.call('HEXISTS', KEYS[1], owner) == 1 then
    redis.call('HSET', KEYS[1], ARGV[1], '0 ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' d ' .. ARGV[2])
    redis.call('ZADD', KEYS[2], 0, ARGV[1])
    return 'clash ' .. owner
  end
  redis.call('HSET', KEYS[4], ARGV[6], ARGV[1])
end
local seq = redis.call('INCR', KEYS[3])
local record = seq .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' p ' .. ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return record
`;

// KEYS: records. ARGV: key, the pending record. Marks it done if it is still the key's record.
const SETTLE = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], (string.gsub(ARGV[2], ' p ', ' d ', 1)))
  return 1
end
return 0
`;

// KEYS: records, key order, output owners, missed marks. ARGV: margin, whether a listing
// missed the keys ("1") or events removed them ("0"), then triples of key, its output and a time
// (ms). A key's record is forgotten only if it is older than that time (by its claim and its
// version's time) by more than the margin, so a version claimed meanwhile by another watcher is
// kept; and with it the key's hold on its output. A removal event is taken at its word; a key a
// listing misses is forgotten when a second listing, begun more than the margin after the first,
// misses it too (the first is marked), so one listing that came back short forgets nothing.
const FORGET = `${PARSE}
local forgotten = 0
local margin = tonumber(ARGV[1])
for i = 3, #ARGV, 3 do
  local key, output, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local current = redis.call('HGET', KEYS[1], key)
  local gone = not current
  if current then
    local _, modified, claimed = parse(current)
    if claimed < at - margin and modified < at - margin then
      local mark = tonumber(redis.call('HGET', KEYS[4], key))
      if ARGV[2] == '0' or (mark and mark < at - margin) then
        redis.call('HDEL', KEYS[1], key)
        forgotten = forgotten + 1
        gone = true
      elseif not mark then
        redis.call('HSET', KEYS[4], key, at)
      end
    end
  end
  if gone then
    redis.call('ZREM', KEYS[2], key)
    redis.call('HDEL', KEYS[4], key)
    if redis.call('HGET', KEYS[3], output) == key then redis.call('HDEL', KEYS[3], output) end
  end
end
return forgotten
`;

/**
 * The outcome of claiming a version: its record; `stale` (older than the one recorded); or a
 * clash: its output is another key's.
 */
export type Claim = WatchRecord | "stale" | { clashesWith: string };

export class WatchState {
  readonly #redis: Redis | Cluster;
  readonly #scripts: ScriptClient;
  readonly #records: string;
  readonly #order: string;
  readonly #counter: string;
  readonly #owners: string;
  readonly #missed: string;
  readonly #started: string;

  constructor(redis: Redis | Cluster, keys: QueueKeys, bucket: string, prefix: string) {
    this.#redis = redis;
    this.#scripts = ioredisScripts(redis);
    this.#scripts.define("s3csvWatchClaim", CLAIM, 4);
    this.#scripts.define("s3csvWatchSettle", SETTLE, 1);
    this.#scripts.define("s3csvWatchForget", FORGET, 4);
    const id = createHash("sha256").update(`${bucket}\n${prefix}`).digest("hex").slice(0, 16);
    // One slot with the queue's keys on a Redis Cluster (its prefix is hash-tagged).
    this.#records = `${keys.base}:watch:${id}:seen`;
    this.#order = `${keys.base}:watch:${id}:keys`;
    this.#counter = `${keys.base}:watch:${id}:seq`;
    this.#owners = `${keys.base}:watch:${id}:outputs`;
    this.#missed = `${keys.base}:watch:${id}:missed`;
    this.#started = `${keys.base}:watch:${id}:started`;
  }

  /** Each key's record (null: none), in one round trip. */
  async records(keys: readonly string[]): Promise<Array<WatchRecord | null>> {
    if (keys.length === 0) return [];
    const values = await this.#redis.hmget(this.#records, ...keys);
    return values.map((value) => (value === null ? null : parseRecord(value)));
  }

  /** Claims a version of a key, whose job writes `output`, unless it is recorded; see CLAIM. */
  async claim(key: string, etag: string, modifiedMs: number, output: string): Promise<Claim> {
    const reply = String(
      await this.#scripts.run("s3csvWatchClaim", [
        this.#records,
        this.#order,
        this.#counter,
        this.#owners,
        key,
        etag,
        Math.round(modifiedMs),
        Date.now(),
        TIME_MARGIN_MS,
        output,
      ]),
    );
    if (reply === "stale") return "stale";
    if (reply.startsWith("clash ")) return { clashesWith: reply.slice("clash ".length) };
    return parseRecord(reply);
  }

  /** Marks a claim's job added (nothing if the key was claimed again meanwhile). */
  async settle(key: string, record: WatchRecord): Promise<void> {
    await this.#scripts.run("s3csvWatchSettle", [this.#records, key, formatRecord(record)]);
  }

  /** Records versions without jobs (--since now: what was there before the first start). */
  async recordBaseline(entries: ReadonlyArray<{ key: string; etag: string; modifiedMs: number }>) {
    if (entries.length === 0) return;
    const now = Date.now();
    const fields = entries.flatMap(({ key, etag, modifiedMs }) => [
      key,
      formatRecord({ seq: 0, etag, modifiedMs, claimedMs: now, pending: false, legacy: false }),
    ]);
    await this.#redis
      .multi()
      .hset(this.#records, ...fields)
      .zadd(this.#order, ...entries.flatMap(({ key }) => [0, key]))
      .exec();
  }

  /**
   * How many keys have records in a range of keys (by bytes, as S3 lists them): after `after`
   * (from the first key when undefined) up to and with `upTo` (to the last when undefined).
   */
  async countBetween(after: string | undefined, upTo: string | undefined): Promise<number> {
    return this.#redis.zlexcount(this.#order, lexAfter(after), lexUpTo(upTo));
  }

  /** The keys with records in a range (as countBetween), a bounded batch at a time. */
  async *keysBetween(after: string | undefined, upTo: string | undefined) {
    let from = lexAfter(after);
    for (;;) {
      const batch = await this.#redis.zrangebylex(
        this.#order,
        from,
        lexUpTo(upTo),
        "LIMIT",
        0,
        1000,
      );
      if (batch.length > 0) yield batch;
      if (batch.length < 1000) return;
      from = `(${batch[batch.length - 1]}`;
    }
  }

  /**
   * Keys (with the output each one's jobs write) whose objects are gone: removed by events at
   * `atMs` (`by: "event"`), or missed by a listing begun at `atMs` (`by: "listing"`); see
   * FORGET. Resolves to how many records were forgotten.
   */
  async forget(
    gone: ReadonlyArray<{ key: string; output: string }>,
    atMs: number,
    by: "event" | "listing",
  ): Promise<number> {
    if (gone.length === 0) return 0;
    const triples = gone.flatMap(({ key, output }) => [key, output, Math.round(atMs)]);
    return Number(
      await this.#scripts.run("s3csvWatchForget", [
        this.#records,
        this.#order,
        this.#owners,
        this.#missed,
        TIME_MARGIN_MS,
        by === "listing" ? "1" : "0",
        ...triples,
      ]),
    );
  }

  /** Whether some key is marked as missed by a listing (see FORGET). */
  async anyMissed(): Promise<boolean> {
    return (await this.#redis.hlen(this.#missed)) > 0;
  }

  /** Clears the marks of keys a listing shows again. */
  async listedAgain(keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.#redis.hdel(this.#missed, ...keys);
  }

  /** Whether any watcher of this prefix started before. */
  async started(): Promise<boolean> {
    return (await this.#redis.exists(this.#started)) === 1;
  }

  async markStarted(): Promise<void> {
    await this.#redis.set(this.#started, new Date().toISOString());
  }
}

/** A record as stored; the form CLAIM writes. */
function formatRecord(r: WatchRecord): string {
  return `${r.seq} ${r.modifiedMs} ${r.claimedMs} ${r.pending ? "p" : "d"} ${r.etag}`;
}

function parseRecord(value: string): WatchRecord {
  const match = /^(\d+) (-?\d+) (\d+) ([pd]) (.*)$/s.exec(value);
  if (!match)
    return { seq: 0, etag: value, modifiedMs: -1, claimedMs: 0, pending: false, legacy: true };
  return {
    seq: Number(match[1]),
    modifiedMs: Number(match[2]),
    claimedMs: Number(match[3]),
    pending: match[4] === "p",
    etag: match[5] as string,
    legacy: false,
  };
}

const lexAfter = (key: string | undefined) => (key === undefined ? "-" : `(${key}`);
const lexUpTo = (key: string | undefined) => (key === undefined ? "+" : `[${key}`);
