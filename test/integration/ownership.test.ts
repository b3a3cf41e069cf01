import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  enqueueTransform,
  enqueueTransforms,
  InvalidJobError,
  JOB_NAME,
} from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import { DestinationBusyError } from "../../shared/destinationClaims.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { type PeopleData, peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { enqueueArgs, eventually, job, queueFor, runCli, writeSchemaFile } from "./helpers.ts";

// One active job per output object: a second job for a destination (or reject report) that an
// active job writes is refused at enqueue, naming the holder, and a worker refuses one that a
// raw BullMQ client added, without touching the holder's uploads.

const MiB = 1024 * 1024;
const SOURCE = "owner/in.csv";

describe("one active job per destination", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let data: PeopleData;
  const workers: WorkerProcess[] = [];

  const startWorker = () => {
    const w = spawnWorker(stack.env);
    workers.push(w);
    return w;
  };
  const jobCount = async () => (await queue.getJobCounts()).waiting ?? 0;

  beforeAll(async () => {
    stack = await startStack({
      PART_SIZE: String(5 * MiB),
      LOCK_DURATION_MS: "2000",
      STALLED_INTERVAL_MS: "500",
    });
    queue = queueFor(stack);
    data = peopleData({ rows: 60_000, invalidEvery: 50, pad: 120 });
    await stack.put(SOURCE, data.csv);
  });

  afterEach(async () => {
    for (const w of workers.splice(0)) await w.kill();
    await queue.drain(true);
  });

  afterAll(async () => {
    await queue?.close();
    await stack?.stop();
  });

  it("refuses a second job for a destination or reject report an active job writes", async () => {
    const holder = await enqueueTransform(job(SOURCE, "busy/out.csv", peopleSchema), { queue });
    const before = await jobCount();
    await expect(
      enqueueTransform(job(SOURCE, "busy/out.csv", peopleSchema), { queue }),
    ).rejects.toThrow(
      new DestinationBusyError({ bucket: BUCKET, key: "busy/out.csv" }, holder).message,
    );
    const sameReport = job(SOURCE, "elsewhere/out.csv", peopleSchema, {
      rejects: { bucket: BUCKET, key: "busy/out.rejects.csv" },
    });
    await expect(enqueueTransform(sameReport, { queue })).rejects.toThrow(
      `s3://${BUCKET}/busy/out.rejects.csv is being written by job ${holder}`,
    );
    expect(await jobCount(), "nothing was added").toBe(before);
    // The same job id again (an idempotent enqueue) is the holder itself.
    await enqueueTransform(job(SOURCE, "mine/out.csv", peopleSchema), { queue, jobId: "mine-1" });
    await enqueueTransform(job(SOURCE, "mine/out.csv", peopleSchema), { queue, jobId: "mine-1" });
  });

  it("refuses a bulk enqueue whole when one job's output is taken, or two jobs share one", async () => {
    const holder = await enqueueTransform(job(SOURCE, "bulk-busy/out.csv", peopleSchema), {
      queue,
    });
    const before = await jobCount();
    await expect(
      enqueueTransforms(
        [
          job(SOURCE, "bulk-free/out.csv", peopleSchema),
          job(SOURCE, "bulk-busy/out.csv", peopleSchema),
        ],
        { queue },
      ),
    ).rejects.toThrow(`is being written by job ${holder}`);
    await expect(
      enqueueTransforms(
        [job(SOURCE, "twice/out.csv", peopleSchema), job(SOURCE, "twice/out.csv", peopleSchema)],
        { queue },
      ),
    ).rejects.toThrow(
      new InvalidJobError(
        `jobs 1 and 2 both write s3://${BUCKET}/twice/out.csv: one active job per output object`,
      ).message,
    );
    expect(await jobCount(), "nothing was added").toBe(before);
  });

  it("a refused enqueue removes nothing, not even a job that already existed under one of its ids", async () => {
    // Another producer's waiting job, under an id this batch reuses (an idempotent re-send).
    const theirs = await enqueueTransform(job(SOURCE, "theirs/out.csv", peopleSchema), {
      queue,
      jobId: "theirs-1",
    });
    const holder = await enqueueTransform(job(SOURCE, "taken/out.csv", peopleSchema), { queue });
    await expect(
      enqueueTransforms(
        [job(SOURCE, "theirs/out.csv", peopleSchema), job(SOURCE, "taken/out.csv", peopleSchema)],
        { queue, jobIds: ["theirs-1", "mine-2"] },
      ),
    ).rejects.toThrow(`is being written by job ${holder}`);
    expect(await queue.getJobState(theirs)).toBe("waiting");
    expect(await queue.getJobState("mine-2")).toBe("unknown");
    // The single form too.
    await expect(
      enqueueTransform(job(SOURCE, "taken/out.csv", peopleSchema), { queue, jobId: "theirs-1" }),
    ).rejects.toThrow(`is being written by job ${holder}`);
    expect(await queue.getJobState(theirs)).toBe("waiting");
  });

  it("an enqueue whose add fails drops only its own pending claims: an existing job keeps its own", async () => {
    await enqueueTransform(job(SOURCE, "kept/out.csv", peopleSchema), { queue, jobId: "kept-1" });
    // The same work again under the same id, but the add fails (a priority BullMQ refuses).
    await expect(
      enqueueTransform(job(SOURCE, "kept/out.csv", peopleSchema), {
        queue,
        jobId: "kept-1",
        priority: 3_000_000,
      }),
    ).rejects.toThrow(/[Pp]riority/);
    await expect(
      enqueueTransform(job(SOURCE, "kept/out.csv", peopleSchema), { queue }),
    ).rejects.toThrow("is being written by job kept-1");
    // A new job whose add fails leaves no claim behind.
    await expect(
      enqueueTransform(job(SOURCE, "never/out.csv", peopleSchema), { queue, priority: 3_000_000 }),
    ).rejects.toThrow(/[Pp]riority/);
    const next = await enqueueTransform(job(SOURCE, "never/out.csv", peopleSchema), { queue });
    expect(await queue.getJobState(next)).toBe("waiting");
  });

  it("a worker refuses a raw BullMQ job for a key another job writes, leaving that job's upload alone", async () => {
    const key = "raw/out.csv";
    const holder = await enqueueTransform(job(SOURCE, key, peopleSchema), { queue });
    const first = startWorker();
    // Killed once a part of its upload is in its checkpoint.
    await eventually(async () => {
      const held = (await queue.getJob(holder))?.data as { checkpoint?: Checkpoint } | undefined;
      return held?.checkpoint?.output.parts.length ? true : undefined;
    });
    await first.kill("SIGKILL");
    // A client that skips the producer library: same destination, while the holder is active.
    const raw = await queue.add(JOB_NAME, job(SOURCE, key, peopleSchema), {
      attempts: 5,
      priority: 1,
    });
    startWorker();
    await expect(waitForResult(queue, raw.id as string, { timeoutMs: 30_000 })).rejects.toThrow(
      `s3://${BUCKET}/${key} is being written by job ${holder}`,
    );
    expect((await queue.getJob(raw.id as string))?.attemptsMade, "not retried").toBe(1);
    // The holder resumes into the upload it had (it may already have finished it by now): an
    // upload aborted under it would have made it start its output over.
    const result = await waitForResult(queue, holder, { timeoutMs: 60_000 });
    expect(result.resumes).toBe(1);
    expect(result.restarted, "holder's upload untouched").toEqual([]);
    expect((await stack.get(key)).equals(data.expectedOutput)).toBe(true);
    expect(rejectedRows(await stack.get("raw/out.rejects.csv"))).toEqual(data.rejected);
  });

  it("refuses, from the CLI (exit 2), a job or a retry whose output another active job writes", async () => {
    const key = "cli-busy/out.csv";
    // A job that fails for good (its source is missing), and so lets go of its output.
    const w = startWorker();
    const failed = await enqueueTransform(job("owner/missing.csv", key, peopleSchema), { queue });
    await expect(waitForResult(queue, failed, { timeoutMs: 30_000 })).rejects.toThrow(
      /does not exist/,
    );
    await w.kill("SIGTERM");
    const holder = await enqueueTransform(job(SOURCE, key, peopleSchema), { queue });
    const schema = await writeSchemaFile("owner-people", peopleSchema);
    const refused = await runCli(enqueueArgs(SOURCE, key, schema), stack.env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`is being written by job ${holder}`);
    const retried = await runCli(["retry", failed], stack.env);
    expect(retried.code).toBe(2);
    expect(retried.stderr).toContain(`is being written by job ${holder}`);
    expect(await queue.getJobState(failed)).toBe("failed");
  });

  it("lets exactly one of two producers racing for a destination add its job", async () => {
    const before = await jobCount();
    const racing = await Promise.allSettled(
      [1, 2].map(() => enqueueTransform(job(SOURCE, "race/out.csv", peopleSchema), { queue })),
    );
    const added = racing.filter((r) => r.status === "fulfilled");
    const refused = racing.filter((r) => r.status === "rejected");
    expect(added).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(DestinationBusyError);
    expect(await jobCount(), "the loser's job was removed again").toBe(before + 1);
  });

  it("frees a destination once its job completes", async () => {
    startWorker();
    const first = await enqueueTransform(job(SOURCE, "reuse/out.csv", peopleSchema), { queue });
    await waitForResult(queue, first, { timeoutMs: 60_000 });
    const second = await enqueueTransform(job(SOURCE, "reuse/out.csv", peopleSchema), { queue });
    const result = await waitForResult(queue, second, { timeoutMs: 60_000 });
    expect(result.rows.read).toBe(data.rows);
  });
});
