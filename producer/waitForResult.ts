import { setTimeout as sleep } from "node:timers/promises";
import { Job, Queue, QueueEvents } from "bullmq";
import { Cluster, Redis } from "ioredis";
import { JobProgress, type JobResult } from "../shared/job.ts";

export interface WaitOptions {
  onProgress?: (progress: JobProgress) => void;
  /** Gives up with WaitTimeoutError after this long; the job is left as it is. */
  timeoutMs?: number;
  /**
   * Gives up with RedisUnavailableError once Redis has not answered for this long (default
   * 30 000). The connection itself retries forever, so without this a wait would too.
   */
  redisTimeoutMs?: number;
}

/** The job failed for good; `failedReason` is the reason its last attempt gave. */
export class JobFailedError extends Error {
  override name = "JobFailedError";
  readonly jobId: string;
  readonly failedReason: string;

  constructor(jobId: string, failedReason: string) {
    super(`job ${jobId} failed: ${failedReason}`);
    this.jobId = jobId;
    this.failedReason = failedReason;
  }
}

/** The wait reached its timeout before the job finished; the job is left as it is. */
export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
  readonly jobId: string;

  constructor(jobId: string, timeoutMs: number) {
    super(`job ${jobId}: no result after ${timeoutMs} ms (the job keeps running)`);
    this.jobId = jobId;
  }
}

/** Redis did not answer for too long while waiting; the job is left as it is. */
export class RedisUnavailableError extends Error {
  override name = "RedisUnavailableError";
  readonly jobId: string;

  constructor(jobId: string, silentMs: number, lastError: Error | undefined) {
    super(
      `job ${jobId}: Redis has not answered for ${silentMs} ms` +
        `${lastError ? ` (${lastError.message})` : ""}; gave up waiting (the job is left as it is)`,
    );
    this.jobId = jobId;
  }
}

/**
 * The job is gone from the queue: removed (from Bull Board, by a retention rule, by hand), or
 * never added. Nothing more will come of it.
 */
export class JobRemovedError extends Error {
  override name = "JobRemovedError";
  readonly jobId: string;

  constructor(jobId: string, queueName: string, whileWaiting: boolean) {
    super(
      whileWaiting
        ? `job ${jobId} was removed from queue ${queueName} before it finished; enqueue it again to run it`
        : `job ${jobId} does not exist in queue ${queueName} (removed, or never added); check the id, or enqueue it again`,
    );
    this.jobId = jobId;
  }
}

/** How often the job's state is read, in case its finish event was missed, and Redis pinged. */
const POLL_MS = 1000;
export const DEFAULT_REDIS_TIMEOUT_MS = 30_000;

type Reader = Queue<unknown, JobResult>;

/**
 * The job's result if it completed, JobFailedError if it failed, "gone" when there is no such
 * job (any more), undefined until it finishes.
 */
async function finishedResult(
  reader: Reader,
  jobId: string,
): Promise<JobResult | "gone" | undefined> {
  // The state first: a job read before it finished would carry no result.
  const state = await reader.getJobState(jobId);
  if (state === "unknown") return "gone";
  if (state !== "completed" && state !== "failed") return undefined;
  const job = await Job.fromId<unknown, JobResult>(reader, jobId);
  if (!job) return "gone";
  if (state === "failed") throw new JobFailedError(jobId, job.failedReason);
  return job.returnvalue;
}

/**
 * The job's result from its finish event; JobFailedError from its failure event,
 * JobRemovedError from its removal.
 */
function notifiedResult(events: QueueEvents, jobId: string, queueName: string): Promise<JobResult> {
  return new Promise((resolve, reject) => {
    events.on("completed", ({ jobId: id, returnvalue }) => {
      if (id === jobId) resolve(returnvalue as unknown as JobResult);
    });
    events.on("failed", ({ jobId: id, failedReason }) => {
      if (id === jobId) reject(new JobFailedError(jobId, failedReason));
    });
    events.on("removed", ({ jobId: id }) => {
      if (id === jobId) reject(new JobRemovedError(jobId, queueName, true));
    });
  });
}

/**
 * The job's result, read from its state: at once, for a job that finished before the events
 * were heard, then every POLL_MS, for a finish event missed (QueueEvents reads from "$" once
 * its reader first blocks, so an event between that and the first read is lost).
 */
async function polledResult(
  reader: Reader,
  jobId: string,
  signal: AbortSignal,
): Promise<JobResult> {
  let goneBefore = false;
  for (;;) {
    const result = await finishedResult(reader, jobId);
    // Gone at two reads in a row: a job removed as it completed (removeOnComplete) has its
    // finish event heard in between, which then wins.
    if (result === "gone" && goneBefore) throw new JobRemovedError(jobId, reader.name, true);
    goneBefore = result === "gone";
    if (result && result !== "gone") return result;
    await sleep(POLL_MS, undefined, { signal });
  }
}

// Not BullMQ's job.waitUntilFinished: its state check runs in an async Promise executor, so a
// connection dropped under it (as release() does) is an unhandled rejection.
async function finished(
  reader: Reader,
  events: QueueEvents,
  jobId: string,
  options: WaitOptions,
  signal: AbortSignal,
): Promise<JobResult> {
  const notified = notifiedResult(events, jobId, reader.name);
  notified.catch(() => {});
  events.on("progress", ({ jobId: id, data }) => {
    if (id !== jobId || !options.onProgress) return;
    const progress = JobProgress.safeParse(data);
    if (progress.success) options.onProgress(progress.data);
  });
  await events.waitUntilReady();
  if ((await reader.getJobState(jobId)) === "unknown")
    throw new JobRemovedError(jobId, reader.name, false);
  return Promise.race([notified, polledResult(reader, jobId, signal)]);
}

/** Rejects with WaitTimeoutError after `timeoutMs`, unless the job finished by then. */
async function deadline(
  reader: Reader,
  jobId: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<JobResult> {
  await sleep(timeoutMs, undefined, { signal });
  // One last look (if Redis answers at once), so that a job that finished while the result
  // was not yet seen (a bulk wait's later jobs) is reported as finished.
  const result = await Promise.race([
    finishedResult(reader, jobId),
    sleep(POLL_MS, undefined, { signal }),
  ]);
  if (result === "gone") throw new JobRemovedError(jobId, reader.name, true);
  if (result) return result;
  throw new WaitTimeoutError(jobId, timeoutMs);
}

/** A cheap round trip to the node that holds the queue (the client interface has no PING). */
async function ping(reader: Reader): Promise<void> {
  const client = await reader.getBackend().client;
  await client.hexists(reader.toKey("meta"), "version");
}

/** Rejects with RedisUnavailableError once Redis has not answered a ping for `limitMs`. */
async function redisSilence(
  reader: Reader,
  jobId: string,
  limitMs: number,
  lastError: () => Error | undefined,
  signal: AbortSignal,
): Promise<never> {
  let answeredAt = Date.now();
  for (;;) {
    // Pings wait in the client's offline queue while it reconnects: one at a time.
    const answered = await Promise.race([
      ping(reader).then(
        () => true,
        () => false,
      ),
      sleep(Math.max(0, answeredAt + limitMs - Date.now()), false, { signal }),
    ]);
    if (answered) answeredAt = Date.now();
    else if (Date.now() >= answeredAt + limitMs)
      throw new RedisUnavailableError(jobId, limitMs, lastError());
    await sleep(POLL_MS, undefined, { signal });
  }
}

/**
 * Drops the wait's own connections. Forcibly: a graceful close waits for Redis to answer,
 * forever if it is gone; a disconnect ends the reconnecting, and nothing waits for longer.
 */
async function release(reader: Reader, events: QueueEvents): Promise<void> {
  const closed = Promise.all([events.close(), reader.disconnect().then(() => reader.close())]);
  closed.catch(() => {});
  await Promise.race([closed, sleep(POLL_MS, undefined, { ref: false })]);
}

/**
 * Connections the wait may drop: options make BullMQ open ones of its own, and a client the
 * caller shares (a Redis Cluster's) is duplicated rather than disconnected under the caller;
 * BullMQ leaves a client it was given open, so `dispose` closes the duplicates.
 */
function ownConnections(queue: Queue<unknown, JobResult>) {
  const connection = queue.opts.connection;
  if (!(connection instanceof Cluster) && !(connection instanceof Redis)) {
    return { reader: connection, events: connection, dispose: () => {} };
  }
  const duplicate = (): Redis | Cluster =>
    connection instanceof Cluster ? connection.duplicate() : connection.duplicate();
  const reader = duplicate();
  const events = duplicate();
  return {
    reader,
    events,
    dispose: () => {
      reader.disconnect();
      events.disconnect();
    },
  };
}

/**
 * Resolves with the job's result when it completes. Rejects with JobFailedError if it fails,
 * JobRemovedError if it is removed (or does not exist), WaitTimeoutError after `timeoutMs`,
 * RedisUnavailableError once Redis has not answered for `redisTimeoutMs`. The job itself is
 * never changed.
 */
export async function waitForResult(
  queue: Queue<unknown, JobResult>,
  jobId: string,
  options: WaitOptions = {},
): Promise<JobResult> {
  // Connections of the wait's own, which it can drop if Redis goes away: the caller's queue is
  // left with none of its commands waiting to be sent, so closing it does not wait for Redis.
  const prefix = queue.opts.prefix;
  const own = ownConnections(queue);
  const reader: Reader = new Queue(queue.name, {
    connection: own.reader,
    prefix,
    skipMetasUpdate: true,
  });
  const events = new QueueEvents(queue.name, { connection: own.events, prefix });
  let lastError: Error | undefined;
  // The watchdog below judges the connection; unheard, BullMQ prints every reconnect error.
  const remember = (error: Error) => {
    lastError = error;
  };
  reader.on("error", remember);
  events.on("error", remember);
  const stop = new AbortController();
  const redisTimeoutMs = options.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
  const outcomes: Promise<JobResult>[] = [
    finished(reader, events, jobId, options, stop.signal),
    redisSilence(reader, jobId, redisTimeoutMs, () => lastError, stop.signal),
  ];
  if (options.timeoutMs !== undefined)
    outcomes.push(deadline(reader, jobId, options.timeoutMs, stop.signal));
  // Settled by another outcome, or by stopping: none is an unhandled rejection.
  for (const outcome of outcomes) outcome.catch(() => {});
  try {
    return await Promise.race(outcomes);
  } finally {
    stop.abort();
    await release(reader, events);
    own.dispose();
  }
}
