import { UnrecoverableError } from "bullmq";

/**
 * A failure that no retry can fix (bad schema, missing or changed source, invalid rows under
 * the `fail` policy): the job fails at once and its uploads are aborted.
 */
export class PermanentJobError extends UnrecoverableError {}
