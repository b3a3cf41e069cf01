import type { Queue } from "bullmq";
import { JobInput, type JobResult, outputLocations } from "../shared/job.ts";
import { claimsFor } from "./enqueue.ts";

/** The job cannot be retried: it does not exist, or it has not failed for good. */
export class JobNotRetryableError extends Error {
  override name = "JobNotRetryableError";
  readonly jobId: string;
  /** The job's state; "unknown" when there is no such job. */
  readonly state: string;

  constructor(jobId: string, state: string, message: string) {
    super(message);
    this.jobId = jobId;
    this.state = state;
  }
}

/**
 * Retries a job that failed for good, with the full attempts it was enqueued with. The job keeps
 * its id and its data: the checkpoint in it is the worker's to trust or discard. Refused with
 * DestinationBusyError when another active job now writes one of its outputs.
 */
export async function retryJob(queue: Queue<unknown, JobResult>, jobId: string): Promise<void> {
  const job = await queue.getJob(jobId);
  if (!job)
    throw new JobNotRetryableError(
      jobId,
      "unknown",
      `job ${jobId} does not exist in queue ${queue.name}`,
    );
  const state = await job.getState();
  if (state !== "failed")
    throw new JobNotRetryableError(
      jobId,
      state,
      `job ${jobId} is ${state}, not failed: only a job that failed can be retried`,
    );
  // Its outputs may have been taken by another job since it failed: it claims them again
  // first, so that no job can take them between this check and a worker's.
  const { checkpoint: _checkpoint, ...payload } = (job.data ?? {}) as Record<string, unknown>;
  const data = JobInput.safeParse(payload);
  const claims = await claimsFor(queue);
  const locations = data.success ? outputLocations(data.data) : [];
  await claims.claim(locations.map((location) => ({ jobId, location })));
  try {
    await job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
  } catch (error) {
    await claims.release(jobId, locations);
    throw error;
  }
}
