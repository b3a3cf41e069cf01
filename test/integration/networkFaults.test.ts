import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { enqueueTransform } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { type PeopleData, peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { isPartUpload } from "../support/s3Server.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcpProxy.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, queueFor, rejectsKeyOf } from "./helpers.ts";

// Network faults through a TCP proxy on loopback, between the worker and Redis and between the
// worker and S3: every open connection reset mid-job, or frozen past the timeouts. The job must
// complete with exact output, leave no multipart upload open, and the worker must live on.

const MiB = 1024 * 1024;

describe("network faults through a TCP proxy", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let data: PeopleData;
  let redisProxy: TcpProxy;
  let s3Proxy: TcpProxy;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    stack = await startStack({
      PART_SIZE: String(5 * MiB),
      LOCK_DURATION_MS: "3000",
      STALLED_INTERVAL_MS: "500",
      JOB_BACKOFF_MS: "200",
      S3_IDLE_TIMEOUT_MS: "1500",
    });
    queue = queueFor(stack);
    data = peopleData({ rows: 70_000, invalidEvery: 50, pad: 60 });
    await stack.put("net/in.csv", data.csv);
    redisProxy = await startTcpProxy(stack.redis.port);
    s3Proxy = await startTcpProxy(Number(new URL(stack.s3Server.endpoint).port));
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.kill();
  });
  afterAll(async () => {
    await queue?.close();
    await redisProxy?.close();
    await s3Proxy?.close();
    await stack?.stop();
  });

  /** A worker whose Redis and S3 traffic both go through the proxies. */
  const start = () => {
    const w = spawnWorker(stack.env, {
      LOG_LEVEL: "info",
      REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`,
      S3_ENDPOINT: `http://127.0.0.1:${s3Proxy.port}`,
    });
    workers.push(w);
    return w;
  };
  const partsOf = async (id: string) =>
    ((await queue.getJob(id))?.data as { checkpoint?: Checkpoint } | undefined)?.checkpoint?.output
      .parts.length ?? 0;

  async function expectExact(key: string, result: JobResult, worker: WorkerProcess) {
    expect((await stack.get(key)).equals(data.expectedOutput)).toBe(true);
    expect(rejectedRows(await stack.get(rejectsKeyOf(key)))).toEqual(data.rejected);
    expect(result.rows.read).toBe(70_000);
    expect(await stack.openUploads()).toEqual([]);
    expect(worker.child.exitCode, worker.output()).toBeNull();
    expect(worker.output()).not.toMatch(/unhandled/i);
  }

  it("survives every Redis connection reset, twice, mid-job", async () => {
    const w = start();
    const id = await enqueueTransform(job("net/in.csv", "net/redis-reset.csv", peopleSchema), {
      queue,
    });
    await eventually(async () => ((await partsOf(id)) >= 1 ? true : undefined));
    expect(redisProxy.open).toBeGreaterThan(0);
    redisProxy.resetAll();
    await new Promise((r) => setTimeout(r, 300));
    redisProxy.resetAll();
    // The worker felt it (its own client logs each error) and carried on.
    await eventually(() => (w.output().includes("redis connection error") ? true : undefined));
    const result = await waitForResult(queue, id, { timeoutMs: 60_000 });
    await expectExact("net/redis-reset.csv", result, w);
  });

  it("survives every S3 connection reset mid-part, then frozen past the idle timeout", async () => {
    const w = start();
    const key = "net/s3-faults.csv";
    const partRequests = (n: number) =>
      stack.s3Server.requests.filter(
        (r) => isPartUpload(r, key) && r.query.partNumber === String(n),
      ).length;
    // The server sits on the first request for parts 1 and 2 (the output has 2), so each is in
    // flight through the proxy when the network breaks under it.
    const held: Array<() => void> = [];
    stack.s3Server.beforeRequest = (r) =>
      isPartUpload(r, key) &&
      (r.query.partNumber === "1" || r.query.partNumber === "2") &&
      partRequests(Number(r.query.partNumber)) === 1
        ? new Promise<void>((resolve) => held.push(resolve))
        : undefined;
    try {
      const id = await enqueueTransform(job("net/in.csv", key, peopleSchema), { queue });
      await eventually(() => (partRequests(1) === 1 ? true : undefined));
      s3Proxy.resetAll();
      await eventually(() => (partRequests(2) === 1 ? true : undefined), 30_000);
      s3Proxy.freezeAll();
      await new Promise((r) => setTimeout(r, 2500));
      s3Proxy.thawAll();
      const result = await waitForResult(queue, id, { timeoutMs: 90_000 });
      // Both held parts were sent again: the reset and the freeze reached requests in flight.
      expect(partRequests(1)).toBeGreaterThanOrEqual(2);
      expect(partRequests(2)).toBeGreaterThanOrEqual(2);
      await expectExact(key, result, w);
    } finally {
      stack.s3Server.beforeRequest = undefined;
      for (const release of held) release();
    }
  });
});
