import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../shared/config.ts";
import { JobData } from "../../shared/job.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { partBufferCapacity } from "../../worker/upload/partBuffer.ts";
import { PartPool } from "../../worker/upload/partPool.ts";
import { runJobAttempt } from "../support/jobAttempt.ts";
import { MemoryS3 } from "../support/memoryS3.ts";
import { MemoryRedis } from "../support/memoryStore.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { Steps } from "../support/steps.ts";

// Jobs one after another on one worker's part pool, as the processor runs them: the second
// fills the part buffers of the first, and its outputs are byte for byte those of a job that
// had buffers of its own. Parts are 1 MiB (S3 would want 5 MiB; this S3 does not), large enough
// for a part buffer to be taken whole.

const PART = 1024 * 1024;
const config = loadConfig({});
const queue = queueKeys(config.QUEUE_PREFIX, config.QUEUE_NAME);

/** One job run to its end; its outputs, and the part-sized buffers it made. */
async function job(id: string, csv: Buffer, partPool?: PartPool) {
  const parsed = JobData.parse({
    source: { bucket: "in-bucket", key: "in.csv" },
    destination: { bucket: "out-bucket", key: "out.csv" },
    schema: peopleSchema,
  });
  const data = { ...parsed, options: { ...parsed.options, partSize: PART } };
  const redis = new MemoryRedis();
  const s3 = new MemoryS3({ listParts: true });
  s3.objects.set("in.csv", { body: csv, etag: '"v1"' });
  const jobKey = queue.job(id);
  const lockKey = queue.lock(id);
  redis.addJob(jobKey, data);
  redis.lock(lockKey, "worker");
  const steps = new Steps(undefined, 1);
  const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
  try {
    await runJobAttempt({
      s3: s3.client(steps),
      redis: redis.client(steps),
      config,
      keys: { jobId: id, jobKey, lockKey, token: "worker", registry: queue.registry },
      data: redis.jobData(jobKey),
      ...(partPool ? { partPool } : {}),
    });
    // Part buffers, not the small ones a buffer grows through on its way to a part's size.
    const made = allocUnsafe.mock.calls.filter(([size]) => size >= partBufferCapacity(PART)).length;
    const body = (key: string) => s3.objects.get(key)?.body.toString("utf8");
    return { output: body("out.csv"), rejects: body("out.rejects.csv"), made };
  } finally {
    allocUnsafe.mockRestore();
  }
}

describe("a worker's part pool across jobs", () => {
  const pools: PartPool[] = [];
  afterEach(() => {
    for (const pool of pools.splice(0)) pool.clear();
  });

  it("gives the next job the part buffers of the one before, and the same outputs", async () => {
    const pool = new PartPool(partBufferCapacity(PART), 4, 30_000);
    pools.push(pool);
    // Long rows first, then shorter and other rows: a part of the second job that showed any
    // byte of the first past what it wrote would differ from the run without the pool.
    const first = peopleData({ rows: 16_000, pad: 300, invalidEvery: 4 }).csv;
    const secondData = peopleData({ rows: 40_000, pad: 40, invalidEvery: 9 });
    const second = secondData.csv;
    const made = await job("1", first, pool);
    expect(made.made).toBeGreaterThan(0);
    expect(pool.size).toBeGreaterThan(0);
    const pooled = await job("2", second, pool);
    const alone = await job("3", second);
    expect(pooled.made).toBe(0);
    expect(alone.made).toBeGreaterThan(0);
    expect(pooled.output).toBe(secondData.expectedOutput.toString("utf8"));
    expect(pooled.output).toBe(alone.output);
    expect(pooled.rejects).toBe(alone.rejects);
  });

  it("leaves the pool to jobs of the worker's part size: they neither take nor give", async () => {
    const capacity = partBufferCapacity(PART * 2);
    const pool = new PartPool(capacity, 4, 30_000);
    pools.push(pool);
    pool.give([1, 2, 3, 4].map(() => Buffer.allocUnsafeSlow(capacity) as Buffer<ArrayBuffer>));
    const other = await job("1", peopleData({ rows: 16_000, pad: 300 }).csv, pool);
    expect(other.made).toBeGreaterThan(0);
    expect(pool.size).toBe(4);
  });
});
