import type { QueueKeys } from "./queueKeys.ts";
import type { ScriptClient } from "./redisScripts.ts";
import type { S3Location } from "./s3Url.ts";

// One active job per output object, within a queue. A job claims the keys it writes (its
// destination and its reject report) in Redis, next to its queue; a claim held by a job that
// exists and has not finished (completed or failed) refuses every other job of the queue.
// Producers claim at enqueue, and workers claim again before an attempt writes anything, so a
// job added by a raw BullMQ client cannot write over another's output either. Jobs of other
// queues are not seen: send all the jobs for one destination through one queue.

// Every key a script touches is under the queue's prefix, so on a Redis Cluster (with a
// hash-tagged prefix) they share one slot: KEYS[1] names that slot for routing. The owner
// hashes come as ARGV because their number varies with the batch, and BullMQ's client defines
// a script with a fixed number of KEYS.

/** A claim that outlives every job (a removed one, say) expires: it guards nothing then. */
const CLAIM_TTL_MS = 30 * 24 * 3600 * 1000;

// ARGV: what a job's hash key starts with ("bull:csv-transform:"), the completed and failed
// sets, 1 to only check, then pairs of owner hash and job id. When every key is free or the
// job's own, claims them (unless checking) and returns {0}; else {index of the refused pair
// (1-based), its holder}.
const CLAIM = `
local function active(id)
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then return false end
  if redis.call('ZSCORE', ARGV[2], id) then return false end
  if redis.call('ZSCORE', ARGV[3], id) then return false end
  return true
end
local count = (#ARGV - 4) / 2
for i = 1, count do
  local key, id = ARGV[2 * i + 3], ARGV[2 * i + 4]
  local holder = redis.call('HGET', key, 'job')
  if holder and holder ~= id and active(holder) then return {i, holder} end
end
if ARGV[4] == '1' then return {0} end
for i = 1, count do
  local key, id = ARGV[2 * i + 3], ARGV[2 * i + 4]
  redis.call('HSET', key, 'job', id)
  redis.call('PEXPIRE', key, ${CLAIM_TTL_MS})
end
return {0}`;

// ARGV: the job id, its lock key and token ("" when not running), then owner hashes. Drops the
// claims the job holds, unless the job's lock is another worker's now (this one lost the job).
const RELEASE = `
if ARGV[2] ~= '' and redis.call('GET', ARGV[2]) ~= ARGV[3] then return 0 end
for i = 4, #ARGV do
  if redis.call('HGET', ARGV[i], 'job') == ARGV[1] then redis.call('DEL', ARGV[i]) end
end
return 1`;

export class DestinationBusyError extends Error {
  override name = "DestinationBusyError";
  readonly holder: string;
  constructor(location: S3Location, holder: string) {
    super(
      `s3://${location.bucket}/${location.key} is being written by job ${holder}; wait for it to finish (or remove it) and enqueue again`,
    );
    this.holder = holder;
  }
}

/** One job's claim on one output object. */
export interface Claim {
  jobId: string;
  location: S3Location;
}

export class DestinationClaims {
  readonly #scripts: ScriptClient;
  readonly #keys: QueueKeys;

  constructor(scripts: ScriptClient, keys: QueueKeys) {
    // Defined once per client; calls then go by EVALSHA.
    scripts.define("s3csvClaim", CLAIM, 1);
    scripts.define("s3csvRelease", RELEASE, 1);
    this.#scripts = scripts;
    this.#keys = keys;
  }

  /** Throws DestinationBusyError when another active job holds one of the keys. */
  async check(claims: readonly Claim[]): Promise<void> {
    await this.#run(claims, true);
  }

  /** Takes every key for its job, all or none; throws DestinationBusyError naming a holder. */
  async claim(claims: readonly Claim[]): Promise<void> {
    await this.#run(claims, false);
  }

  /** Drops the job's claims; with `lock`, only while the job's lock is still that token's. */
  async release(
    jobId: string,
    locations: readonly S3Location[],
    lock?: { key: string; token: string },
  ): Promise<void> {
    const keys = locations.map((l) => this.#keys.owner(l));
    await this.#scripts.run("s3csvRelease", [
      this.#slotKey(),
      jobId,
      lock?.key ?? "",
      lock?.token ?? "",
      ...keys,
    ]);
  }

  #slotKey(): string {
    return `${this.#keys.base}:owner`;
  }

  async #run(claims: readonly Claim[], checkOnly: boolean): Promise<void> {
    if (claims.length === 0) return;
    const pairs = claims.flatMap((c) => [this.#keys.owner(c.location), c.jobId]);
    const [status, holder] = (await this.#scripts.run("s3csvClaim", [
      this.#slotKey(),
      this.#keys.job(""),
      this.#keys.completed,
      this.#keys.failed,
      checkOnly ? "1" : "0",
      ...pairs,
    ])) as [number, string?];
    if (status === 0) return;
    throw new DestinationBusyError((claims[status - 1] as Claim).location, holder as string);
  }
}
