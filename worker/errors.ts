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
 * What an output's checkpoint names is lost: its multipart upload (aborted when the job failed
 * for good, by a lifecycle rule or by hand), its parts (not on the server as recorded), or its
 * carried text (expired). The attempt starts that output over from the beginning of the
 * source; the other output keeps its own resume point.
 */
export class OutputLostError extends Error {
  override name = "OutputLostError";
  readonly location: { bucket: string; key: string };
  constructor(location: { bucket: string; key: string }, reason: string) {
    super(`s3://${location.bucket}/${location.key}: ${reason}`);
    this.location = { bucket: location.bucket, key: location.key };
  }
}

/**
 * The job needs a newer job contract than this worker has: it goes back to the queue, unfailed
 * and without using an attempt, for a worker of a newer release to take (a rolling upgrade).
 */
export class NeedsNewerWorkerError extends Error {
  override name = "NeedsNewerWorkerError";
  readonly needed: number;
  constructor(needed: number, known: number) {
    super(
      `the job needs job contract ${needed} and this worker has contract ${known}: handed back for a newer worker (upgrade the workers of this queue)`,
    );
    this.needed = needed;
  }
}
