import type { Queue } from "bullmq";
import { z } from "zod";
import { type QueueKeys, queueKeys } from "../../shared/queueKeys.ts";
import { bullmqScripts, type ScriptClient } from "../../shared/redisScripts.ts";

// The queue's registry of what its jobs made in S3, read back for s3csv sweep. Workers write it
// atomically with their own records (worker/checkpoint/checkpointStore.ts): `u:<upload id>` an
// upload a job recorded, `c:<job>:<side>` an upload a job was about to create, `s:<job>` a split
// job's shard objects. An entry names its job; the job is live while it exists and has not
// finished, read in one script per page, so a sweep never misjudges a job that moves between
// states while it runs.

export const RegistryEntry = z.object({
  bucket: z.string(),
  key: z.string(),
  job: z.string(),
  /** When the entry was written (ms, Redis's clock). */
  at: z.number(),
  /** A split job's child job ids (its shard objects are named after them). */
  children: z.array(z.string()).optional(),
});
export type RegistryEntry = z.infer<typeof RegistryEntry>;

export interface Registered {
  field: string;
  /** The value as stored: an entry is forgotten only while it still says this. */
  value: string;
  entry: RegistryEntry;
}

// A job's standing, as Lua: 0 gone or completed (what it made is done with), 1 it may still
// run, 2 it failed (a retry may still need what it made: its checkpoint names it).
const STANDING = `
local function standing(prefix, completed, failed, id)
  if redis.call('EXISTS', prefix .. id) == 0 then return 0 end
  if redis.call('ZSCORE', completed, id) then return 0 end
  if redis.call('ZSCORE', failed, id) then return 2 end
  return 1
end`;

// KEYS: the registry (for the slot). ARGV: a job's hash key prefix, the completed and failed
// sets, then job ids: the standing of each.
const JOB_STANDINGS = `${STANDING}
local out = {}
for i = 4, #ARGV do out[#out + 1] = standing(ARGV[1], ARGV[2], ARGV[3], ARGV[i]) end
return out`;

// KEYS: the registry. ARGV: cursor, count. One HSCAN page (BullMQ's client interface has none).
const PAGE_OF = `return redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])`;

// KEYS: the registry. ARGV: field, value, then a job's hash key prefix, the completed and
// failed sets, and the entry's job. Drops the entry, in the same instant as it checks that the
// entry is unchanged and its job still gone or completed: 1 when it did, else 0.
const FORGET_IF_GONE = `${STANDING}
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if standing(ARGV[3], ARGV[4], ARGV[5], ARGV[6]) ~= 0 then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])`;

// KEYS: the registry. ARGV: field, value.
const RESTORE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1`;

/** Where a job stands for what it made: done with it, may still run, or failed (retryable). */
export type Standing = "gone" | "live" | "failed";
const STANDINGS: Standing[] = ["gone", "live", "failed"];

const PAGE = 500;

export class UploadRegistry {
  readonly #keys: QueueKeys;
  readonly #scripts: ScriptClient;
  readonly #queue: Queue;

  private constructor(queue: Queue, scripts: ScriptClient) {
    this.#queue = queue;
    this.#keys = queueKeys(queue.opts.prefix ?? "bull", queue.name);
    this.#scripts = scripts;
    scripts.define("s3csvJobStandings", JOB_STANDINGS, 1);
    scripts.define("s3csvForgetIfGone", FORGET_IF_GONE, 1);
    scripts.define("s3csvRestoreRegistered", RESTORE, 1);
    scripts.define("s3csvRegistryPage", PAGE_OF, 1);
  }

  static async of(queue: Queue): Promise<UploadRegistry> {
    return new UploadRegistry(queue, bullmqScripts(await queue.getBackend().client));
  }

  /** The registry's entries, a page at a time (HSCAN: memory bounded by the page). */
  async *pages(): AsyncGenerator<Registered[]> {
    let cursor = "0";
    do {
      const [next, flat] = (await this.#scripts.run("s3csvRegistryPage", [
        this.#keys.registry,
        cursor,
        PAGE,
      ])) as [string, string[]];
      cursor = next;
      const page: Registered[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const field = flat[i] as string;
        const value = flat[i + 1] as string;
        const entry = RegistryEntry.safeParse(parseJson(value));
        if (entry.success) page.push({ field, value, entry: entry.data });
      }
      yield page;
    } while (cursor !== "0");
  }

  /** Where each job of `ids` stands, read at one instant. */
  async standings(ids: readonly string[]): Promise<Map<string, Standing>> {
    if (ids.length === 0) return new Map();
    const answer = (await this.#scripts.run("s3csvJobStandings", [
      this.#keys.registry,
      ...this.#jobSets(),
      ...ids,
    ])) as number[];
    return new Map(ids.map((id, i) => [id, STANDINGS[Number(answer[i])] ?? "live"]));
  }

  #jobSets(): string[] {
    return [this.#keys.job(""), this.#keys.completed, this.#keys.failed];
  }

  /** Whether an upload is recorded by some job of the queue. */
  async recorded(uploadId: string): Promise<boolean> {
    const client = await this.#queue.getBackend().client;
    return (await client.hexists(this.#keys.registry, `u:${uploadId}`)) === 1;
  }

  /**
   * Drops an entry whose job is gone or completed, judged again in the same instant (a job
   * re-added or retried since the page was read keeps it); true when it did. Act on what the
   * entry names only then, and put it back (restore) if acting fails.
   */
  async forgetIfGone(registered: Registered): Promise<boolean> {
    const forgotten = await this.#scripts.run("s3csvForgetIfGone", [
      this.#keys.registry,
      registered.field,
      registered.value,
      ...this.#jobSets(),
      registered.entry.job,
    ]);
    return Number(forgotten) === 1;
  }

  /** Puts a forgotten entry back (acting on it failed), unless another took its place. */
  async restore(registered: Registered): Promise<void> {
    await this.#scripts.run("s3csvRestoreRegistered", [
      this.#keys.registry,
      registered.field,
      registered.value,
    ]);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
