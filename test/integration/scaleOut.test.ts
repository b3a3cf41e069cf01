import { type Queue, QueueEvents } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enqueueTransforms } from "../../producer/enqueue.ts";
import type { JobResult } from "../../shared/job.ts";
import { type PeopleData, peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, queueFor, rejectsKeyOf } from "./helpers.ts";

// Horizontal scaling: three worker processes share thirty jobs; one is SIGKILLed midway and
// its jobs resume on the others. Every job completes exactly once, with exact output.

const MiB = 1024 * 1024;

describe("scale-out: 3 workers, 30 jobs, one killed midway", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    // ListMultipartUploads (an emulator extension here) lets a resumed job abort the upload a
    // killed attempt created but had not checkpointed yet.
    stack = await startStack(
      { PART_SIZE: String(5 * MiB), LOCK_DURATION_MS: "2000", STALLED_INTERVAL_MS: "500" },
      { listMultipartUploads: true },
    );
    queue = queueFor(stack);
  });
  afterAll(async () => {
    for (const w of workers) await w.kill();
    await queue?.close();
    await stack?.stop();
  });

  it("completes every job exactly once with exact output", async () => {
    const datasets: PeopleData[] = [
      peopleData({ rows: 300, invalidEvery: 7 }),
      peopleData({ rows: 40_000, invalidEvery: 13, pad: 60 }),
      peopleData({ rows: 90_000, invalidEvery: 101, pad: 60 }),
    ];
    await Promise.all(datasets.map((d, i) => stack.put(`scale/in-${i}.csv`, d.csv)));
    const events = new QueueEvents(queue.name, {
      connection: queue.opts.connection,
      prefix: queue.opts.prefix,
    });
    await events.waitUntilReady();
    const completions: string[] = [];
    events.on("completed", ({ jobId }) => completions.push(jobId));

    for (let i = 0; i < 3; i++) workers.push(spawnWorker(stack.env));
    const plan = Array.from({ length: 30 }, (_, i) => ({
      data: i % 3,
      dest: `scale/out-${i}.csv`,
    }));
    const ids = await enqueueTransforms(
      plan.map((p) => job(`scale/in-${p.data}.csv`, p.dest, peopleSchema)),
      { queue },
    );
    await eventually(() => (completions.length >= 8 ? true : undefined), 90_000);
    await (workers[0] as WorkerProcess).kill("SIGKILL");
    await eventually(() => (completions.length >= 30 ? true : undefined), 110_000);
    await events.close();

    expect(new Set(completions).size).toBe(30);
    expect(completions).toHaveLength(30);
    expect(await queue.getJobCounts("completed", "failed", "active", "waiting")).toEqual({
      completed: 30,
      failed: 0,
      active: 0,
      waiting: 0,
    });
    // The killed worker's jobs were started again by the others: from their checkpoint, or from
    // the start when the kill came before their first upload (nothing durable yet).
    let takenOver = 0;
    for (const [i, id] of ids.entries()) {
      const p = plan[i] as (typeof plan)[number];
      const j = await queue.getJob(id);
      takenOver += (j?.attemptsStarted ?? 0) > 1 ? 1 : 0;
      const expected = datasets[p.data] as PeopleData;
      expect((await stack.get(p.dest)).equals(expected.expectedOutput), p.dest).toBe(true);
      expect(rejectedRows(await stack.get(rejectsKeyOf(p.dest))), p.dest).toEqual(
        expected.rejected,
      );
    }
    expect(takenOver, "jobs of the killed worker taken over by the others").toBeGreaterThanOrEqual(
      1,
    );
    expect(await stack.openUploads()).toEqual([]);
  });
});
