import { UnrecoverableError } from "bullmq";

/**
 * A failure that no retry can fix (bad schema, missing or changed source, invalid rows under
 * the `fail` policy): the job fails at once and its uploads are aborted.
 */
export class PermanentJobError extends UnrecoverableError {}

/** The worker is shutting down: the job goes back to the queue from its last checkpoint. */
export class HandBackError extends Error {
  override name = "HandBackError";
  constructor() {
    super("the worker is shutting down; the job resumes from its checkpoint on another worker");
  }
}
