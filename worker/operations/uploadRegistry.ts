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

// KEYS: the registry (for the slot). ARGV: a job's hash key prefix, the completed and failed
// sets, then job ids. For each id, 1 when the job exists and has not finished, else 0.
const LIVE_JOBS = `
local live = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local alive = redis.call('EXISTS', ARGV[1] .. id) == 1
    and not redis.call('ZSCORE', ARGV[2], id) and not redis.call('ZSCORE', ARGV[3], id)
  live[#live + 1] = alive and 1 or 0
end
return live`;

// KEYS: the registry. ARGV: cursor, count. One HSCAN page (BullMQ's client interface has none).
const PAGE_OF = `return redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])`;

// KEYS: the registry. ARGV: field, value. Drops the field while it still holds that value.
const FORGET = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

const PAGE = 500;

export class UploadRegistry {
  readonly #keys: QueueKeys;
  readonly #scripts: ScriptClient;
  readonly #queue: Queue;

  private constructor(queue: Queue, scripts: ScriptClient) {
    this.#queue = queue;
    this.#keys = queueKeys(queue.opts.prefix ?? "bull", queue.name);
    this.#scripts = scripts;
    scripts.define("s3csvLiveJobs", LIVE_JOBS, 1);
    scripts.define("s3csvForgetRegistered", FORGET, 1);
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

  /** The jobs among `ids` that exist and have not finished, read at one instant. */
  async liveJobs(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const answer = (await this.#scripts.run("s3csvLiveJobs", [
      this.#keys.registry,
      this.#keys.job(""),
      this.#keys.completed,
      this.#keys.failed,
      ...ids,
    ])) as number[];
    return new Set(ids.filter((_, i) => Number(answer[i]) === 1));
  }

  /** Whether an upload is recorded by some job of the queue. */
  async recorded(uploadId: string): Promise<boolean> {
    const client = await this.#queue.getBackend().client;
    return (await client.hexists(this.#keys.registry, `u:${uploadId}`)) === 1;
  }

  /** Drops an entry, unless it changed since it was read. */
  async forget(registered: Registered): Promise<void> {
    await this.#scripts.run("s3csvForgetRegistered", [
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
