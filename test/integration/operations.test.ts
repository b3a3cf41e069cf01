import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../dev/redisServer.ts";
import { enqueueTransform, JOB_NAME } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, queueFor } from "./helpers.ts";

// Operating workers: graceful shutdown hands jobs back, a frozen worker that wakes up after
// losing its lock cannot touch the new owner's work, and payloads that bypass the producer
// fail at once.

const MiB = 1024 * 1024;

describe("worker operations", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let expected: Buffer;
  const workers: WorkerProcess[] = [];
  const start = () => {
    const w = spawnWorker(stack.env, { LOG_LEVEL: "info" });
    workers.push(w);
    return w;
  };

  beforeAll(async () => {
    stack = await startStack({
      PART_SIZE: String(5 * MiB),
      LOCK_DURATION_MS: "2000",
      STALLED_INTERVAL_MS: "500",
      SHUTDOWN_GRACE_MS: "20000",
    });
    queue = queueFor(stack);
    const data = peopleData({ rows: 200_000, invalidEvery: 50, pad: 60 });
    expected = data.expectedOutput;
    await stack.put("ops/in.csv", data.csv);
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) {
      w.child.kill("SIGCONT");
      await w.kill();
    }
  });
  afterAll(async () => {
    await queue?.close();
    await stack?.stop();
  });

  async function checkpointOf(id: string): Promise<Checkpoint | undefined> {
    return ((await queue.getJob(id))?.data as { checkpoint?: Checkpoint } | undefined)?.checkpoint;
  }

  it("SIGTERM finishes the parts in flight, checkpoints, hands the job back and exits", async () => {
    const first = start();
    const id = await enqueueTransform(job("ops/in.csv", "ops/term.csv", peopleSchema), { queue });
    await eventually(
      async () => ((await checkpointOf(id))?.output.parts.length ?? 0) >= 1 || undefined,
    );
    const exited = new Promise<number | null>((resolve) =>
      first.child.once("exit", (code) => resolve(code)),
    );
    first.child.kill("SIGTERM");
    expect(await exited).toBe(0);
    const handed = await queue.getJob(id);
    expect(await handed?.getState()).toBe("waiting");
    expect(handed?.attemptsMade).toBe(0);
    expect(first.output()).toContain("handed the job back");
    // Structured logs name the job, the attempt and every part.
    const partLines = first
      .output()
      .split("\n")
      .filter((line) => line.includes('"part uploaded"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(partLines.length).toBeGreaterThanOrEqual(1);
    expect(partLines[0]).toMatchObject({ jobId: id, part: 1, key: "ops/term.csv" });
    expect(partLines[0]?.attempt).toEqual(expect.any(Number));
    start();
    const result = await waitForResult(queue, id, { timeoutMs: 60_000 });
    expect(result.resumes).toBe(1);
    expect((await stack.get("ops/term.csv")).equals(expected)).toBe(true);
    expect(await stack.openUploads()).toEqual([]);
  });

  it("fences a frozen worker: after SIGCONT it cannot overwrite the new owner's checkpoint", async () => {
    const zombie = start();
    const id = await enqueueTransform(job("ops/in.csv", "ops/zombie.csv", peopleSchema), { queue });
    await eventually(
      async () => ((await checkpointOf(id))?.output.parts.length ?? 0) >= 1 || undefined,
    );
    zombie.child.kill("SIGSTOP");
    start();
    // The lock expires, the job stalls back to the queue, and the second worker resumes it.
    await eventually(
      async () => ((await checkpointOf(id))?.resumes ?? 0) >= 1 || undefined,
      30_000,
    );
    zombie.child.kill("SIGCONT");
    const result = await waitForResult(queue, id, { timeoutMs: 60_000 });
    expect((await stack.get("ops/zombie.csv")).equals(expected)).toBe(true);
    expect(result.rows.read).toBe(200_000);
    await eventually(
      () => (zombie.output().includes("no longer holds the job's lock") ? true : undefined),
      20_000,
    );
    expect(await stack.openUploads()).toEqual([]);
  });

  it("serves the worker's health, readiness, part-latency and part-buffer metrics on WORKER_METRICS_PORT", async () => {
    const port = await freePort();
    const w = spawnWorker(stack.env, { WORKER_METRICS_PORT: String(port) });
    workers.push(w);
    const base = `http://127.0.0.1:${port}`;
    await eventually(async () => {
      try {
        return (await fetch(`${base}/healthz`)).ok ? true : undefined;
      } catch {
        return undefined;
      }
    });
    expect(await (await fetch(`${base}/readyz`)).json()).toEqual({ status: "ready" });
    const id = await enqueueTransform(job("ops/in.csv", "ops/metrics.csv", peopleSchema), {
      queue,
    });
    await waitForResult(queue, id, { timeoutMs: 60_000 });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/s3csv_part_upload_seconds_count [1-9]/);
    expect(metrics).toMatch(/s3csv_worker_jobs_total\{outcome="completed"\} [1-9]/);
    expect(metrics).toMatch(/s3csv_worker_active_jobs 0/);
    // The job's uploaded parts left their buffers to the worker's next job.
    expect(metrics).toMatch(/s3csv_worker_part_buffers_idle [1-9]/);
  });

  it("fails a malformed payload added with raw BullMQ at once, naming the field, without retries", async () => {
    start();
    const bad = await queue.add(
      JOB_NAME,
      {
        source: { bucket: "s3csv-test", key: "ops/in.csv" },
        destination: { bucket: "BAD" },
        schema: peopleSchema,
      },
      { attempts: 5 },
    );
    await expect(waitForResult(queue, bad.id as string, { timeoutMs: 30_000 })).rejects.toThrow(
      /invalid job data: destination.bucket: must be an S3 bucket name.*; destination.key/,
    );
    const failed = await queue.getJob(bad.id as string);
    expect(failed?.attemptsMade).toBe(1);
  });

  it("waitForResult gives up after timeoutMs on a job no worker runs, and leaves the job be", async () => {
    const waiting = await queue.add(JOB_NAME, { source: {}, destination: {} });
    const started = performance.now();
    await expect(waitForResult(queue, waiting.id as string, { timeoutMs: 1500 })).rejects.toThrow(
      /no result after 1500 ms \(the job keeps running\)/,
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(1400);
    expect(await queue.getJobState(waiting.id as string)).toBe("waiting");
    await waiting.remove();
  });
});
