// BullMQ's Redis key names for one queue, in one place: the job hash, its lock and the sets of
// finished jobs, as BullMQ writes them (`${prefix}:${queue}:…`), and s3csv's own keys beside
// them. On a Redis Cluster the prefix carries a hash tag, so every one of them shares a slot.

export interface QueueKeys {
  /** `bull:csv-transform`: what every key of the queue starts with. */
  base: string;
  job(jobId: string): string;
  lock(jobId: string): string;
}

export function queueKeys(prefix: string, queueName: string): QueueKeys {
  const base = `${prefix}:${queueName}`;
  return {
    base,
    job: (jobId) => `${base}:${jobId}`,
    lock: (jobId) => `${base}:${jobId}:lock`,
  };
}
