import { setTimeout as sleep } from "node:timers/promises";
import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { enqueueTransform } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { isPartUpload, type SeenRequest } from "../support/s3Server.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, jobRecordsLeft, queueFor, run } from "./helpers.ts";

// A job killed more than once: each attempt resumes from what the previous one checkpointed,
// which may itself be a resumed attempt's first checkpoint. The reject report's text that rides
// in a checkpoint (its carry) must survive every one of them.

const MiB = 1024 * 1024;
const SOURCE = "twice/in.csv";

describe("repeated crashes (SIGKILL, twice in a row)", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let clean: { output: Buffer; rejects: Buffer; result: JobResult };
  const workers: WorkerProcess[] = [];
  const held = new Map<number, () => void>();

  const startWorker = (env: Record<string, string> = {}) => {
    const w = spawnWorker({ ...stack.env, ...env });
    workers.push(w);
    return w;
  };
  /** Holds every part upload of `key` numbered `from` or later, until released. */
  const holdParts = (key: string, from: number) => {
    stack.s3Server.beforeRequest = (r: SeenRequest) =>
      isPartUpload(r, key, from)
        ? new Promise<void>((resolve) => held.set(Number(r.query.partNumber), resolve))
        : undefined;
  };
  const releaseAll = () => {
    stack.s3Server.beforeRequest = undefined;
    for (const release of held.values()) release();
    held.clear();
  };
  const checkpointOf = async (jobId: string) =>
    ((await queue.getJob(jobId))?.data as { checkpoint?: Checkpoint } | undefined)?.checkpoint;
  const outputParts = (jobId: string, parts: number) =>
    eventually(async () => {
      const checkpoint = await checkpointOf(jobId);
      return checkpoint?.output.parts.length === parts ? checkpoint : undefined;
    });

  beforeAll(async () => {
    stack = await startStack({
      PART_SIZE: String(5 * MiB),
      // Three parts in flight let reading run well ahead of the output's durable parts.
      PARTS_IN_FLIGHT: "3",
      LOCK_DURATION_MS: "2000",
      STALLED_INTERVAL_MS: "500",
    });
    queue = queueFor(stack);
    // Few invalid rows: the whole reject report rides in the checkpoint as carried text.
    await stack.put(SOURCE, peopleData({ rows: 200_000, invalidEvery: 997, pad: 120 }).csv);
    const w = startWorker();
    const result = await run(queue, job(SOURCE, "twice-clean/out.csv", peopleSchema));
    await w.kill("SIGTERM");
    clean = {
      output: await stack.get("twice-clean/out.csv"),
      rejects: await stack.get("twice-clean/out.rejects.csv"),
      result,
    };
    expect(result.parts).toBeGreaterThanOrEqual(6);
    expect(result.rows.rejected).toBeGreaterThan(100);
  });

  afterEach(async () => {
    releaseAll();
    for (const w of workers.splice(0)) await w.kill();
  });

  afterAll(async () => {
    await queue?.close();
    await stack?.stop();
  });

  it("keeps the carried reject report when a resumed attempt dies after its first checkpoint", async () => {
    const key = "twice/out.csv";
    // Attempt 1: three output parts held in flight, so reading runs a few parts ahead; then
    // part 1 completes, and the checkpoint carries the report up to where reading is.
    const first = startWorker();
    holdParts(key, 1);
    const jobId = await enqueueTransform(job(SOURCE, key, peopleSchema), { queue });
    await eventually(() => (held.size >= 3 ? true : undefined));
    // Let reading reach the fourth part, which waits for a free upload slot (the scenario is
    // checked below, so too short a wait fails the test rather than passing it).
    await sleep(1000);
    held.get(1)?.();
    held.delete(1);
    const atFirstKill = await outputParts(jobId, 1);
    await first.kill("SIGKILL");
    releaseAll();
    expect(atFirstKill.rejects.carry?.bytes).toBeGreaterThan(0);
    expect(atFirstKill.rejects.mark.offset).toBeGreaterThan(atFirstKill.output.mark.offset);

    // Attempt 2 resumes from part 1's mark, behind the report's; it dies right after its first
    // checkpoint (part 2), written before reading is back where the report's carry ends. With
    // one part in flight it reads at most two parts past part 1 before that checkpoint, where
    // attempt 1 had read four (however fast rows are read).
    const second = startWorker({ PARTS_IN_FLIGHT: "1" });
    holdParts(key, 3);
    const atSecondKill = await outputParts(jobId, 2);
    await second.kill("SIGKILL");
    releaseAll();
    expect(atSecondKill.resumes).toBe(1);
    expect(
      atSecondKill.rejects.mark.offset,
      "scenario: attempt 2 checkpointed before reading passed the report's mark",
    ).toBe(atFirstKill.rejects.mark.offset);

    // Attempt 3 finishes the job: both outputs exactly as a run that never crashed.
    startWorker();
    const result = await waitForResult(queue, jobId, { timeoutMs: 110_000 });
    expect(result.resumes).toBe(2);
    expect(result.rows).toEqual(clean.result.rows);
    expect((await stack.get(key)).equals(clean.output), "output is byte-identical").toBe(true);
    expect(
      (await stack.get("twice/out.rejects.csv")).equals(clean.rejects),
      "reject report is byte-identical",
    ).toBe(true);
    expect(await stack.openUploads(), "no multipart upload is left open").toEqual([]);
    expect(await jobRecordsLeft(stack, jobId), "no carried text or record is left").toEqual([]);
  });
});
