import { setTimeout as sleep } from "node:timers/promises";
import { Job, type Queue, QueueEvents } from "bullmq";
import { JobProgress, type JobResult } from "../shared/job.ts";

export interface WaitOptions {
  onProgress?: (progress: JobProgress) => void;
  /** Gives up after this long (the job keeps running). */
  timeoutMs?: number;
}

export class JobFailedError extends Error {
  override name = "JobFailedError";
}

/** How often the job's state is read, in case its finish event was missed. */
const POLL_MS = 1000;

/**
 * The job's result, read from its state. QueueEvents reads events from "$" once its reader
 * first blocks, so a job that finishes between that and waitUntilFinished's own state check (a
 * small job can) is missed by both; this catches it a moment later.
 */
async function polledResult(
  queue: Queue<unknown, JobResult>,
  jobId: string,
  signal: AbortSignal,
): Promise<JobResult> {
  for (;;) {
    await sleep(POLL_MS, undefined, { signal });
    // The state first: a job read before it finished would carry no result.
    const state = await queue.getJobState(jobId);
    if (state !== "completed" && state !== "failed") continue;
    const job = await Job.fromId<unknown, JobResult>(queue, jobId);
    if (!job) continue;
    if (state === "completed") return job.returnvalue;
    throw new Error(job.failedReason);
  }
}

/** Resolves with the job's result when it completes; rejects with its failure reason. */
export async function waitForResult(
  queue: Queue<unknown, JobResult>,
  jobId: string,
  options: WaitOptions = {},
): Promise<JobResult> {
  const events = new QueueEvents(queue.name, {
    connection: queue.opts.connection,
    prefix: queue.opts.prefix,
  });
  try {
    await events.waitUntilReady();
    events.on("progress", ({ jobId: id, data }) => {
      if (id !== jobId || !options.onProgress) return;
      const progress = JobProgress.safeParse(data);
      if (progress.success) options.onProgress(progress.data);
    });
    const job = await Job.fromId<unknown, JobResult>(queue, jobId);
    if (!job) throw new Error(`job ${jobId} does not exist in queue ${queue.name}`);
    const stop = new AbortController();
    const polled = polledResult(queue, jobId, stop.signal);
    // Our own timer (not waitUntilFinished's), so that none outlives the wait.
    const timedOut =
      options.timeoutMs === undefined
        ? new Promise<never>(() => {})
        : sleep(options.timeoutMs, undefined, { signal: stop.signal }).then(() => {
            throw new Error(`no result after ${options.timeoutMs} ms (the job keeps running)`);
          });
    // Settled by another side, or by stopping: neither is an unhandled rejection.
    polled.catch(() => {});
    timedOut.catch(() => {});
    try {
      return await Promise.race([
        job.waitUntilFinished(events) as Promise<JobResult>,
        polled,
        timedOut,
      ]);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new JobFailedError(`job ${jobId} failed: ${reason}`);
    } finally {
      stop.abort();
    }
  } finally {
    await events.close();
  }
}
