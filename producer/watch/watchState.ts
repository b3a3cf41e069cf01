import { createHash } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import type { QueueKeys } from "../../shared/queueKeys.ts";
import { ioredisScripts, type ScriptClient } from "../../shared/redisScripts.ts";

// What a watch of one prefix has enqueued, kept in Redis beside the queue and shared by every
// watcher of the prefix, so that a restarted watcher neither misses what arrived meanwhile nor
// repeats what is done, and two watchers at once agree.
//
// Per key, the version its last job was made for: the object's ETag and its LastModified to the
// second, as HeadObject says them (one clock: S3's). A version is recorded after its job is
// added, and its job id names that version, so a watcher killed in between adds the job again
// under the same id (BullMQ keeps it once), and every watcher makes the same id for the same
// version. A record is replaced only by a writer that read it before asking S3 (compare and
// set). Keys are also kept in an ordered set, so that a listing can find the keys it no longer
// shows (deleted: checked, then forgotten), which keeps the state as large as the prefix, not
// as everything ever seen. Each output belongs to the first key whose job writes it.

/** What is known of one key: the version its last job was made for. */
export interface WatchRecord {
  etag: string;
  /** The version's LastModified in whole seconds, as HeadObject gave it; -1 when not asked. */
  modified: number;
  /**
   * The LastModified a listing showed for this version, in whole seconds (listings and
   * HeadObject may round differently), or -1: a listing showing this ETag with this time is of
   * the recorded version, and S3 is not asked again.
   */
  listed: number;
}

// A record in one field: "modified listed etag". 0.3.0 stored the bare ETag (it starts with a
// quote): read as a version known by its ETag alone. Writers compare versions (modified and
// ETag), not the listing time kept beside them, which any watcher may update; "" (a writer
// that read no record) is no version, as a missing record is.
const VERSION_OF = `
local function versionOf(value)
  if not value or value == '' then return '' end
  local modified, _, etag = string.match(value, '^(%-?%d+) (%-?%d+) (.*)$')
  if modified then return modified .. ' ' .. etag end
  return '-1 ' .. value
end
`;

// KEYS: records, key order. ARGV: key, record, the record it replaces ("" for none). Sets the
// record only if the key's record is still of the version its writer read before asking S3:
// a watcher that lost the race is told so (0) and reads again.
const RECORD = `${VERSION_OF}
local current = redis.call('HGET', KEYS[1], ARGV[1])
if versionOf(current) ~= versionOf(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`;

// KEYS: output owners, key order, clashes, records. ARGV: output, key, the key's version as
// refused, the record read before asking S3 ("" for none). The key whose jobs write the
// output: the first that asks keeps it until it is forgotten (its object gone). Returns the
// owner if another key, else "". A key refused is recorded with its version (if its record is
// still the one read) and noted as waiting for the output ("output NUL key" in the clashes),
// in one step, so that the owner's forgetting, which drops the records of the keys waiting,
// cannot come between the two. The key joins the key order, so that it is looked for once no
// longer listed even if no version of it was ever recorded.
const OWN_OUTPUT = `${VERSION_OF}
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] then
  local current = redis.call('HGET', KEYS[4], ARGV[2])
  if versionOf(current) == versionOf(ARGV[4]) then
    redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
    redis.call('ZADD', KEYS[3], 0, ARGV[1] .. '\\0' .. ARGV[2])
  end
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
  return owner
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1] .. '\\0' .. ARGV[2])
return ''
`;

// KEYS: records, key order, output owners, clashes. ARGV: key, the record read before its
// object was found gone ("" for none), the key's output ("" for none). Forgets the key, with its
// hold on its output, if its record is still that one (a version recorded meanwhile is of an
// object made again). The keys that were refused that output lose their records, so that the
// next listing offers them again (a file moved from one key to another under {name}).
const FORGET = `${VERSION_OF}
local current = redis.call('HGET', KEYS[1], ARGV[1])
if versionOf(current) ~= versionOf(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[4], ARGV[3] .. '\\0' .. ARGV[1])
  if redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[1] then
    redis.call('HDEL', KEYS[3], ARGV[3])
    local from, to = '[' .. ARGV[3] .. '\\0', '[' .. ARGV[3] .. '\\0\\255'
    for _, waiting in ipairs(redis.call('ZRANGEBYLEX', KEYS[4], from, to)) do
      redis.call('HDEL', KEYS[1], string.sub(waiting, #ARGV[3] + 2))
    end
    redis.call('ZREMRANGEBYLEX', KEYS[4], from, to)
  end
end
if current then return 1 end
return 0
`;

// KEYS: records, key order. ARGV: pairs of key and record. Records versions without jobs where
// a key has none (another watcher's record stands).
const BASELINE = `
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], 0, ARGV[i])
  end
end
return 0
`;

export class WatchState {
  readonly #redis: Redis | Cluster;
  readonly #scripts: ScriptClient;
  readonly #records: string;
  readonly #order: string;
  readonly #owners: string;
  readonly #clashes: string;
  readonly #started: string;
  readonly #indexed: string;

  constructor(redis: Redis | Cluster, keys: QueueKeys, bucket: string, prefix: string) {
    this.#redis = redis;
    this.#scripts = ioredisScripts(redis);
    this.#scripts.define("s3csvWatchRecord", RECORD, 2);
    this.#scripts.define("s3csvWatchOwnOutput", OWN_OUTPUT, 4);
    this.#scripts.define("s3csvWatchForget", FORGET, 4);
    this.#scripts.define("s3csvWatchBaseline", BASELINE, 2);
    const id = createHash("sha256").update(`${bucket}\n${prefix}`).digest("hex").slice(0, 16);
    // One slot with the queue's keys on a Redis Cluster (its prefix is hash-tagged).
    this.#records = `${keys.base}:watch:${id}:seen`;
    this.#order = `${keys.base}:watch:${id}:keys`;
    this.#owners = `${keys.base}:watch:${id}:outputs`;
    this.#clashes = `${keys.base}:watch:${id}:clashes`;
    this.#started = `${keys.base}:watch:${id}:started`;
    this.#indexed = `${keys.base}:watch:${id}:indexed`;
  }

  /** Each key's record (null: none), in one round trip. */
  async records(keys: readonly string[]): Promise<Array<WatchRecord | null>> {
    if (keys.length === 0) return [];
    const values = await this.#redis.hmget(this.#records, ...keys);
    return values.map((value) => (value === null ? null : parseRecord(value)));
  }

  /**
   * Records the version a key's job was made for, if the key's record is still `read` (what
   * its writer read before asking S3; null: none). Resolves to whether it was set.
   */
  async record(key: string, version: WatchRecord, read: WatchRecord | null): Promise<boolean> {
    const reply = await this.#scripts.run("s3csvWatchRecord", [
      this.#records,
      this.#order,
      key,
      formatRecord(version),
      read ? formatRecord(read) : "",
    ]);
    return reply === 1;
  }

  /**
   * Takes `output` for `key`; resolves to the key that holds it instead, if another does. Then
   * `version` is recorded as refused, if the key's record is still `read` (see OWN_OUTPUT).
   */
  async ownOutput(
    key: string,
    output: string,
    version: WatchRecord,
    read: WatchRecord | null,
  ): Promise<string | undefined> {
    const owner = await this.#scripts.run("s3csvWatchOwnOutput", [
      this.#owners,
      this.#order,
      this.#clashes,
      this.#records,
      output,
      key,
      formatRecord(version),
      read ? formatRecord(read) : "",
    ]);
    return owner === "" ? undefined : String(owner);
  }

  /**
   * Forgets a key whose object is gone, if its record is still `read` (read before the object
   * was found gone); `output`, the object its jobs write. Resolves to whether it forgot one.
   */
  async forget(key: string, read: WatchRecord | null, output: string): Promise<boolean> {
    const reply = await this.#scripts.run("s3csvWatchForget", [
      this.#records,
      this.#order,
      this.#owners,
      this.#clashes,
      key,
      read ? formatRecord(read) : "",
      output,
    ]);
    return reply === 1;
  }

  /** Records versions without jobs (--since now: what was there before the first start). */
  async recordBaseline(entries: ReadonlyArray<{ key: string } & WatchRecord>): Promise<void> {
    if (entries.length === 0) return;
    const pairs = entries.flatMap(({ key, ...version }) => [key, formatRecord(version)]);
    await this.#scripts.run("s3csvWatchBaseline", [this.#records, this.#order, ...pairs]);
  }

  /**
   * Puts every recorded key in the key order, a batch at a time: records of 0.3.0 have none,
   * and without it a listing cannot find them gone. Once per prefix (it is marked done).
   */
  async indexKeys(): Promise<void> {
    if ((await this.#redis.exists(this.#indexed)) === 1) return;
    let cursor = "0";
    do {
      const [next, flat] = await this.#redis.hscan(this.#records, cursor, "COUNT", 1000);
      cursor = next;
      const keys = flat.filter((_, i) => i % 2 === 0);
      if (keys.length > 0) await this.#redis.zadd(this.#order, ...keys.flatMap((k) => [0, k]));
    } while (cursor !== "0");
    await this.#redis.set(this.#indexed, new Date().toISOString());
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

  /** Whether any watcher of this prefix started before. */
  async started(): Promise<boolean> {
    return (await this.#redis.exists(this.#started)) === 1;
  }

  async markStarted(): Promise<void> {
    await this.#redis.set(this.#started, new Date().toISOString());
  }
}

/** A record as stored. */
function formatRecord(r: WatchRecord): string {
  return r.modified < 0 && r.listed < 0 ? r.etag : `${r.modified} ${r.listed} ${r.etag}`;
}

function parseRecord(value: string): WatchRecord {
  const match = /^(-?\d+) (-?\d+) (.*)$/s.exec(value);
  if (!match) return { etag: value, modified: -1, listed: -1 };
  return { modified: Number(match[1]), listed: Number(match[2]), etag: match[3] as string };
}

const lexAfter = (key: string | undefined) => (key === undefined ? "-" : `(${key}`);
const lexUpTo = (key: string | undefined) => (key === undefined ? "+" : `[${key}`);
