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
    try {
      return (await job.waitUntilFinished(events, options.timeoutMs)) as JobResult;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new JobFailedError(`job ${jobId} failed: ${reason}`);
    }
  } finally {
    await events.close();
  }
}
