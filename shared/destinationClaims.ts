import type { IRedisClient } from "bullmq";
import type { Cluster, Redis } from "ioredis";
import type { S3Location } from "./s3Url.ts";

// One active job per output object. A job claims the keys it writes (its destination and its
// reject report) in Redis, next to its queue; a claim held by a job that exists and has not
// finished (completed or failed) refuses every other job. Producers claim at enqueue, and
// workers claim again before an attempt writes anything, so a job added by a raw BullMQ client
// cannot write over another's output either. A claim records when it was first taken: every
// upload on that key since then is the holder's own, which is what its cleanup may touch.

// Every key a script touches is under the queue's prefix, so on a Redis Cluster (with a
// hash-tagged prefix) they share one slot: KEYS[1] names that slot for routing, and the owner
// hashes come as ARGV.

// ARGV: the queue's key prefix ("bull:csv-transform:"), 1 to only check, then pairs of owner
// hash and job id. When every key is free or the job's own, claims them (unless checking) and
// returns {0, since of each}; else {index of the refused pair (1-based), its holder}.
const CLAIM = `
local prefix = ARGV[1]
local function active(id)
  if redis.call('EXISTS', prefix .. id) == 0 then return false end
  if redis.call('ZSCORE', prefix .. 'completed', id) then return false end
  if redis.call('ZSCORE', prefix .. 'failed', id) then return false end
  return true
end
local count = (#ARGV - 2) / 2
for i = 1, count do
  local key, id = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local holder = redis.call('HGET', key, 'job')
  if holder and holder ~= id and active(holder) then return {i, holder} end
end
if ARGV[2] == '1' then return {0} end
local now = redis.call('TIME')
local since = tostring(now[1] * 1000 + math.floor(now[2] / 1000))
local result = {0}
for i = 1, count do
  local key, id = ARGV[2 * i + 1], ARGV[2 * i + 2]
  if redis.call('HGET', key, 'job') ~= id then
    redis.call('HSET', key, 'job', id, 'since', since)
  end
  result[i + 1] = redis.call('HGET', key, 'since')
end
return result`;

// ARGV: the job id, then owner hashes. Drops the claims the job holds.
const RELEASE = `
for i = 2, #ARGV do
  if redis.call('HGET', ARGV[i], 'job') == ARGV[1] then redis.call('DEL', ARGV[i]) end
end
return 0`;

/** Runs Lua scripts with one declared key: an ioredis client, or a BullMQ queue's client. */
export interface ScriptClient {
  define(name: string, lua: string): void;
  run(name: string, args: ReadonlyArray<string | number>): Promise<unknown>;
}

/** Our own ioredis connection (a worker's). */
export function ioredisScripts(redis: Redis | Cluster): ScriptClient {
  const commands = redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  return {
    define: (name, lua) => {
      if (!commands[name]) redis.defineCommand(name, { lua, numberOfKeys: 1 });
    },
    run: (name, args) => (commands[name] as (...a: unknown[]) => Promise<unknown>)(...args),
  };
}

/** The client of a BullMQ queue (a producer's), whichever Redis library it wraps. */
export function bullmqScripts(client: IRedisClient): ScriptClient {
  return {
    define: (name, lua) => client.defineCommand(name, { lua, numberOfKeys: 1 }),
    run: (name, args) => client.runCommand(name, [...args]),
  };
}

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
  readonly #queueKey: string;

  /** `queueKey` is the queue's key prefix, like `bull:csv-transform`. */
  constructor(scripts: ScriptClient, queueKey: string) {
    // Defined once per client; calls then go by EVALSHA.
    scripts.define("s3csvClaim", CLAIM);
    scripts.define("s3csvRelease", RELEASE);
    this.#scripts = scripts;
    this.#queueKey = queueKey;
  }

  ownerKey(location: S3Location): string {
    return `${this.#queueKey}:owner:${location.bucket}/${location.key}`;
  }

  /** Throws DestinationBusyError when another active job holds one of the keys. */
  async check(claims: readonly Claim[]): Promise<void> {
    await this.#run(claims, true);
  }

  /**
   * Takes every key for its job, all or none; throws DestinationBusyError naming a holder.
   * Resolves to when each claim was first taken (ms since the epoch, Redis's clock).
   */
  claim(claims: readonly Claim[]): Promise<number[]> {
    return this.#run(claims, false);
  }

  async release(jobId: string, locations: readonly S3Location[]): Promise<void> {
    const keys = locations.map((l) => this.ownerKey(l));
    await this.#scripts.run("s3csvRelease", [this.#slotKey(), jobId, ...keys]);
  }

  #slotKey(): string {
    return `${this.#queueKey}:owner`;
  }

  async #run(claims: readonly Claim[], checkOnly: boolean): Promise<number[]> {
    if (claims.length === 0) return [];
    const pairs = claims.flatMap((c) => [this.ownerKey(c.location), c.jobId]);
    const [status, ...rest] = (await this.#scripts.run("s3csvClaim", [
      this.#slotKey(),
      `${this.#queueKey}:`,
      checkOnly ? "1" : "0",
      ...pairs,
    ])) as [number, ...string[]];
    if (status === 0) return rest.map(Number);
    throw new DestinationBusyError((claims[status - 1] as Claim).location, rest[0] as string);
  }
}
