import { createHash } from "node:crypto";
import { type ConnectionOptions, Queue, type QueueOptions } from "bullmq";
import { Cluster } from "ioredis";
import type { Config } from "../shared/config.ts";
import { DestinationBusyError, DestinationClaims } from "../shared/destinationClaims.ts";
import { describeZodError, JobInput, type JobResult, outputLocations } from "../shared/job.ts";
import { queueKeys } from "../shared/queueKeys.ts";
import { closeRedisConnection, type RedisConnection, redisConnection } from "../shared/redis.ts";
import { bullmqScripts } from "../shared/redisScripts.ts";

type JobInputData = ReturnType<typeof JobInput.parse>;

export const JOB_NAME = "transform";
/** Workers refuse larger payloads by default (MAX_JOB_BYTES); producers check first. */
export const DEFAULT_MAX_JOB_BYTES = 1024 * 1024;

export class InvalidJobError extends Error {
  override name = "InvalidJobError";
}

export interface QueueSettings {
  connection: ConnectionOptions | RedisConnection;
  queueName: string;
  prefix: string;
  attempts: number;
  backoffMs: number;
}

export function queueSettings(config: Config): QueueSettings {
  return {
    connection: redisConnection(config),
    queueName: config.QUEUE_NAME,
    prefix: config.QUEUE_PREFIX,
    attempts: config.JOB_ATTEMPTS,
    backoffMs: config.JOB_BACKOFF_MS,
  };
}

/**
 * A queue that closes the Redis Cluster client its settings made: BullMQ leaves a client it was
 * given open, and nothing else holds this one.
 */
class SettingsQueue extends Queue<unknown, JobResult> {
  readonly #connection: QueueSettings["connection"];

  constructor(settings: QueueSettings, options: QueueOptions) {
    super(settings.queueName, options);
    this.#connection = settings.connection;
  }

  override async close(): Promise<void> {
    await super.close();
    if (this.#connection instanceof Cluster) closeRedisConnection(this.#connection);
  }
}

/** The queue jobs go to, with the retry policy resume depends on as its default job options. */
export function transformQueue(settings: QueueSettings): Queue<unknown, JobResult> {
  return new SettingsQueue(settings, {
    connection: settings.connection,
    prefix: settings.prefix,
    defaultJobOptions: {
      attempts: settings.attempts,
      backoff: { type: "exponential", delay: settings.backoffMs },
      removeOnComplete: { count: 10_000 },
      removeOnFail: { count: 10_000 },
    },
  });
}

/** Checks a job payload against the contract; throws InvalidJobError naming each bad field. */
export function validateJobInput(
  input: unknown,
  maxBytes = DEFAULT_MAX_JOB_BYTES,
): ReturnType<typeof JobInput.parse> {
  const parsed = JobInput.safeParse(input);
  if (!parsed.success) throw new InvalidJobError(`invalid job: ${describeZodError(parsed.error)}`);
  const size = Buffer.byteLength(JSON.stringify(parsed.data));
  if (size > maxBytes) {
    throw new InvalidJobError(
      `invalid job: it is ${size} bytes of JSON, more than MAX_JOB_BYTES (${maxBytes})`,
    );
  }
  return parsed.data;
}

export interface EnqueueOptions {
  queue: Queue<unknown, JobResult>;
  /** A job id of your own makes enqueueing idempotent: the same id is never added twice. */
  jobId?: string;
  priority?: number;
  delay?: number;
  /** Largest payload to accept, in bytes of JSON (the workers' MAX_JOB_BYTES). */
  maxJobBytes?: number;
}

export async function claimsFor(queue: Queue<unknown, JobResult>): Promise<DestinationClaims> {
  const keys = queueKeys(queue.opts.prefix ?? "bull", queue.name);
  return new DestinationClaims(bullmqScripts(await queue.getBackend().client), keys);
}

/**
 * Claims the added jobs' outputs, all or none. When another active job holds one (a producer
 * raced this one between the check and the add), the added jobs are removed again; one that a
 * worker already took fails there, on the same claim.
 */
async function claimAdded(
  claims: DestinationClaims,
  added: ReadonlyArray<{ id: string; data: JobInputData; remove(): Promise<void> }>,
): Promise<void> {
  try {
    await claims.claim(
      added.flatMap((job) =>
        outputLocations(job.data).map((location) => ({ jobId: job.id, location })),
      ),
    );
  } catch (error) {
    if (error instanceof DestinationBusyError) {
      await Promise.allSettled(added.map((job) => job.remove()));
    }
    throw error;
  }
}

/**
 * Validates the job (before Redis is touched) and adds it; resolves to the job id. A job whose
 * destination or reject report another active job writes is refused (DestinationBusyError,
 * naming that job), and nothing is added.
 */
export async function enqueueTransform(input: unknown, options: EnqueueOptions): Promise<string> {
  const data = validateJobInput(input, options.maxJobBytes);
  const claims = await claimsFor(options.queue);
  const jobId = options.jobId ?? "";
  await claims.check(outputLocations(data).map((location) => ({ jobId, location })));
  const job = await options.queue.add(JOB_NAME, data, {
    ...(options.jobId ? { jobId: options.jobId } : {}),
    ...(options.priority ? { priority: options.priority } : {}),
    ...(options.delay ? { delay: options.delay } : {}),
  });
  if (!job.id) throw new Error("the queue returned no job id");
  await claimAdded(claims, [{ id: job.id, data, remove: () => job.remove() }]);
  return job.id;
}

/** Two jobs of one batch that would write the same object, as a message. */
function sameOutputs(jobs: readonly JobInputData[]): string | undefined {
  const writer = new Map<string, number>();
  for (const [index, data] of jobs.entries()) {
    for (const { bucket, key } of outputLocations(data)) {
      const name = `s3://${bucket}/${key}`;
      const other = writer.get(name);
      if (other !== undefined && other !== index) {
        return `jobs ${other + 1} and ${index + 1} both write ${name}`;
      }
      writer.set(name, index);
    }
  }
  return undefined;
}

/**
 * Validates every job first (none is added if one is invalid, and the error names its index),
 * then adds them all in one round trip (BullMQ addBulk); resolves to their ids in order.
 * `jobIds[i]`, when given, makes adding job i idempotent (see `dedupeJobId`).
 */
export async function enqueueTransforms(
  inputs: readonly unknown[],
  options: Pick<EnqueueOptions, "queue" | "maxJobBytes" | "priority" | "delay"> & {
    jobIds?: readonly string[];
  },
): Promise<string[]> {
  const jobs = inputs.map((input, index) => {
    let data: ReturnType<typeof validateJobInput>;
    try {
      data = validateJobInput(input, options.maxJobBytes);
    } catch (error) {
      throw new InvalidJobError(`job ${index + 1}: ${(error as Error).message}`);
    }
    const jobId = options.jobIds?.[index];
    return {
      name: JOB_NAME,
      data,
      opts: {
        ...(jobId ? { jobId } : {}),
        ...(options.priority ? { priority: options.priority } : {}),
        ...(options.delay ? { delay: options.delay } : {}),
      },
    };
  });
  const clash = sameOutputs(jobs.map((job) => job.data));
  if (clash) throw new InvalidJobError(`${clash}: one active job per output object`);
  const claims = await claimsFor(options.queue);
  await claims.check(
    jobs.flatMap((job) =>
      outputLocations(job.data).map((location) => ({ jobId: job.opts.jobId ?? "", location })),
    ),
  );
  const added = await options.queue.addBulk(jobs);
  await claimAdded(
    claims,
    added.map((job, i) => ({
      id: job.id ?? "",
      data: (jobs[i] as (typeof jobs)[number]).data,
      remove: () => job.remove(),
    })),
  );
  return added.map((job) => job.id ?? "");
}

/**
 * A job id that is the same for the same source version and destination, so enqueueing the
 * same work twice adds it once (BullMQ keeps one job per id while the job exists).
 */
export function dedupeJobId(input: unknown, sourceVersion?: string): string {
  const job = input as {
    source?: { bucket?: string; key?: string; versionId?: string };
    destination?: unknown;
  };
  const identity = JSON.stringify([
    job.source?.bucket,
    job.source?.key,
    job.source?.versionId ?? sourceVersion ?? "",
    job.destination,
  ]);
  return `s3csv-${createHash("sha256").update(identity).digest("hex").slice(0, 32)}`;
}
