import type { S3Location } from "./s3Url.ts";

// BullMQ's Redis key names for one queue, in one place: the job hash, its lock and the sets of
// finished jobs, as BullMQ writes them (`${prefix}:${queue}:…`), and s3csv's own keys beside
// them. On a Redis Cluster the prefix carries a hash tag, so every one of them shares a slot.

export interface QueueKeys {
  /** `bull:csv-transform`: what every key of the queue starts with. */
  base: string;
  job(jobId: string): string;
  lock(jobId: string): string;
  /** BullMQ's sorted sets of completed and failed job ids. */
  completed: string;
  failed: string;
  /** The hash that says which job holds an output object (see destinationClaims.ts). */
  owner(location: S3Location): string;
  /**
   * The hash that names what s3csv made in S3 for this queue's jobs (uploads, and uploads about
   * to be created, shard objects): all that s3csv sweep may touch. (Job ids have no ":".)
   */
  registry: string;
}

export function queueKeys(prefix: string, queueName: string): QueueKeys {
  const base = `${prefix}:${queueName}`;
  return {
    base,
    job: (jobId) => `${base}:${jobId}`,
    lock: (jobId) => `${base}:${jobId}:lock`,
    completed: `${base}:completed`,
    failed: `${base}:failed`,
    owner: (location) => `${base}:owner:${location.bucket}/${location.key}`,
    registry: `${base}:s3csv:registry`,
  };
}
