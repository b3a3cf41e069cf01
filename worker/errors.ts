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

/**
 * An output's multipart upload (or its carried text) is no longer there: aborted when the job
 * failed for good, by a lifecycle rule or by hand, or expired. The attempt starts that output
 * over from the beginning of the source; the other output keeps its own resume point.
 */
export class UploadGoneError extends Error {
  override name = "UploadGoneError";
  readonly location: { bucket: string; key: string };
  constructor(location: { bucket: string; key: string }, reason: string) {
    super(`s3://${location.bucket}/${location.key}: ${reason}`);
    this.location = { bucket: location.bucket, key: location.key };
  }
}
