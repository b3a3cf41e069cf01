import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
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
/**
 * A producer claims before it adds its jobs, so that a refused enqueue adds nothing (and so
 * removes nothing); until the job exists, its claim holds for this long, then lapses (the
 * producer died between the two).
 */
export const PENDING_CLAIM_MS = 60_000;

/** What a producer claims with before its job is added: never a BullMQ job id (no ":"). */
const PENDING_PREFIX = "enqueue:";
const PENDING_POLL_MS = 25;

function isPending(holder: string): boolean {
  return holder.startsWith(PENDING_PREFIX);
}

// ARGV: what a job's hash key starts with ("bull:csv-transform:"), the completed and failed
// sets, the mode ("check", "claim", or "pending": claimed for jobs not added yet), the pending
// lapse, then triples of owner hash, the holder to write and the job's own id ("" when it has
// none yet). A key held by the job's own id stays so (the same job enqueued again); one held
// by another live job, or by another producer's pending claim, refuses the whole batch: returns
// {index of the refused triple (1-based), its holder}. Else claims every key (unless checking)
// and returns {0}. A pending holder is live only while its claim is young: a "pending" field
// beside any other holder (left by a worker of 0.2) means nothing.
const CLAIM = `
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local function active(key, id)
  if string.sub(id, 1, ${PENDING_PREFIX.length}) == '${PENDING_PREFIX}' then
    local pending = redis.call('HGET', key, 'pending')
    return pending ~= false and now - tonumber(pending) < tonumber(ARGV[5])
  end
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then return false end
  if redis.call('ZSCORE', ARGV[2], id) then return false end
  if redis.call('ZSCORE', ARGV[3], id) then return false end
  return true
end
local count = (#ARGV - 5) / 3
for i = 1, count do
  local key, holder, own = ARGV[3 * i + 3], ARGV[3 * i + 4], ARGV[3 * i + 5]
  local current = redis.call('HGET', key, 'job')
  if current and current ~= holder and current ~= own and active(key, current) then
    return {i, current}
  end
end
if ARGV[4] == 'check' then return {0} end
for i = 1, count do
  local key, holder, own = ARGV[3 * i + 3], ARGV[3 * i + 4], ARGV[3 * i + 5]
  if redis.call('HGET', key, 'job') ~= own or own == '' then
    redis.call('HSET', key, 'job', holder)
    if ARGV[4] == 'pending' then redis.call('HSET', key, 'pending', now)
    else redis.call('HDEL', key, 'pending') end
  end
  redis.call('PEXPIRE', key, ${CLAIM_TTL_MS})
end
return {0}`;

// ARGV: triples of owner hash, a pending holder and the job id it became ("" to drop it). A
// pending claim still that holder's becomes the job's, or goes; returns how many did.
const CONFIRM = `
local done = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', ARGV[i], 'job') == ARGV[i + 1] then
    if ARGV[i + 2] == '' then redis.call('DEL', ARGV[i])
    else
      redis.call('HSET', ARGV[i], 'job', ARGV[i + 2])
      redis.call('HDEL', ARGV[i], 'pending')
    end
    done = done + 1
  end
end
return done`;

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
    const url = `s3://${location.bucket}/${location.key}`;
    super(
      isPending(holder)
        ? `${url} is being enqueued by another producer right now; enqueue again once its job is added (and finished)`
        : `${url} is being written by job ${holder}; wait for it to finish (or remove it) and enqueue again`,
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
    scripts.define("s3csvConfirmClaim", CONFIRM, 1);
    scripts.define("s3csvRelease", RELEASE, 1);
    this.#scripts = scripts;
    this.#keys = keys;
  }

  /** Throws DestinationBusyError when another active job holds one of the keys. */
  async check(claims: readonly Claim[]): Promise<void> {
    await this.#run(claims, "check");
  }

  /**
   * Takes every key for its job, all or none; throws DestinationBusyError naming a holder. A
   * key held by a producer still adding its job (most likely this very job, which a worker
   * took before its producer confirmed the claim) is waited for, until it is confirmed or
   * lapses.
   */
  async claim(claims: readonly Claim[], signal?: AbortSignal): Promise<void> {
    const until = Date.now() + PENDING_CLAIM_MS;
    for (;;) {
      try {
        return await this.#run(claims, "claim");
      } catch (error) {
        const pending = error instanceof DestinationBusyError && isPending(error.holder);
        if (!pending || Date.now() > until) throw error;
        // A worker shutting down stops waiting (an AbortError): its job goes back unharmed.
        await sleep(PENDING_POLL_MS, undefined, { signal });
      }
    }
  }

  /**
   * Takes every key, all or none, for jobs about to be added (a claim's `jobId` is the job's own
   * id, or "" when it gets one when added), under one pending holder that is returned: confirm
   * it for the ids the jobs were added under, or drop it; until then it lapses in
   * PENDING_CLAIM_MS. A key the job's own id holds already (the same job enqueued again) stays.
   */
  async claimPending(claims: readonly Claim[]): Promise<string> {
    const holder = `${PENDING_PREFIX}${randomUUID()}`;
    await this.#run(claims, "pending", holder);
    return holder;
  }

  /**
   * What `holder` still holds becomes the job's of `jobIds[i]` (one per claim), or goes where
   * that is "" (the job was not added).
   */
  async confirm(
    claims: readonly Claim[],
    holder: string,
    jobIds: readonly string[],
  ): Promise<void> {
    const triples = claims.flatMap((c, i) => [
      this.#keys.owner(c.location),
      holder,
      jobIds[i] ?? "",
    ]);
    if (triples.length > 0)
      await this.#scripts.run("s3csvConfirmClaim", [this.#slotKey(), ...triples]);
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

  async #run(
    claims: readonly Claim[],
    mode: "check" | "claim" | "pending",
    holder?: string,
  ): Promise<void> {
    if (claims.length === 0) return;
    const triples = claims.flatMap((c) => [
      this.#keys.owner(c.location),
      holder ?? c.jobId,
      c.jobId,
    ]);
    const [status, current] = (await this.#scripts.run("s3csvClaim", [
      this.#slotKey(),
      this.#keys.job(""),
      this.#keys.completed,
      this.#keys.failed,
      mode,
      PENDING_CLAIM_MS,
      ...triples,
    ])) as [number, string?];
    if (status === 0) return;
    throw new DestinationBusyError((claims[status - 1] as Claim).location, current as string);
  }
}
