// The producer library: what apps import to enqueue transforms and wait for their results.

export { loadConfig } from "../shared/config.ts";
export type { JobInput, JobProgress, JobResult } from "../shared/job.ts";
export {
  dedupeJobId,
  enqueueTransform,
  enqueueTransforms,
  InvalidJobError,
  queueSettings,
  transformQueue,
  validateJobInput,
} from "./enqueue.ts";
export { JobNotRetryableError, retryJob } from "./retryJob.ts";
export {
  JobFailedError,
  JobRemovedError,
  RedisUnavailableError,
  type WaitOptions,
  WaitTimeoutError,
  waitForResult,
} from "./waitForResult.ts";
