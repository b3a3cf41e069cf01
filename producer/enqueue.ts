import { createHash } from "node:crypto";
import { HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { type ConnectionOptions, Queue, type QueueOptions } from "bullmq";
import { Cluster } from "ioredis";
import type { Config } from "../shared/config.ts";
import { DestinationClaims } from "../shared/destinationClaims.ts";
import {
  contractNeeded,
  describeZodError,
  JobInput,
  JobOptions,
  type JobResult,
  outputLocations,
  rejectsLocation,
} from "../shared/job.ts";
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
  return checkedJob(input, maxBytes).data;
}

/**
 * A job checked against the contract (`data`, with every default filled in, for the checks)
 * and what goes into Redis (`payload`): what the caller set and nothing more, so that a worker
 * of an earlier release, which refuses keys it does not know, runs a job that uses nothing
 * newer (workers apply the defaults), plus the contract version when the job needs a newer one.
 */
export function checkedJob(
  input: unknown,
  maxBytes = DEFAULT_MAX_JOB_BYTES,
): { data: JobInputData; payload: Record<string, unknown> } {
  const parsed = JobInput.safeParse(input);
  if (!parsed.success) throw new InvalidJobError(`invalid job: ${describeZodError(parsed.error)}`);
  // Plain JSON, as it will be stored: keys set to undefined are not sent.
  const payload = JSON.parse(JSON.stringify(input)) as Record<string, unknown>;
  // Contract 1 is said by saying nothing: a worker of 0.2 refuses the key itself.
  const contract = Math.max(contractNeeded(payload), parsed.data.contract ?? 1);
  if (contract > 1) payload.contract = contract;
  else delete payload.contract;
  const size = Buffer.byteLength(JSON.stringify(payload));
  if (size > maxBytes) {
    throw new InvalidJobError(
      `invalid job: it is ${size} bytes of JSON, more than MAX_JOB_BYTES (${maxBytes})`,
    );
  }
  return { data: parsed.data, payload };
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

/** A job ready to add: its checked data, its payload, its BullMQ options. */
interface Planned {
  data: JobInputData;
  payload: Record<string, unknown>;
  opts: { jobId?: string; priority?: number; delay?: number };
}

/**
 * Claims the planned jobs' outputs, all or none, then adds the jobs, so that a refused enqueue
 * adds nothing and removes nothing (a job id that exists already, another producer's job, is
 * never touched). The claims are then confirmed for the ids the jobs were added under.
 */
async function claimAndAdd(
  queue: Queue<unknown, JobResult>,
  planned: readonly Planned[],
): Promise<string[]> {
  const claims = await claimsFor(queue);
  const wanted = planned.flatMap((job) =>
    outputLocations(job.data).map((location) => ({ jobId: job.opts.jobId ?? "", location })),
  );
  const holder = await claims.claimPending(wanted);
  const idsOf = (ids: readonly string[]) =>
    planned.flatMap((job, i) => outputLocations(job.data).map(() => ids[i] ?? ""));
  let ids: string[];
  try {
    const added = await queue.addBulk(
      planned.map((job) => ({ name: JOB_NAME, data: job.payload, opts: job.opts })),
    );
    ids = added.map((job) => job.id ?? "");
  } catch (error) {
    // Jobs with ids of their own may have been added all the same (the answer was lost): those
    // that exist keep their claims; the rest of the pending claims go. Nothing else is touched.
    const exist = await Promise.all(
      planned.map(async (job) =>
        job.opts.jobId && (await queue.getJobState(job.opts.jobId)) !== "unknown"
          ? job.opts.jobId
          : "",
      ),
    ).catch(() => planned.map(() => ""));
    await claims.confirm(wanted, holder, idsOf(exist)).catch(() => {});
    throw error;
  }
  await claims.confirm(wanted, holder, idsOf(ids));
  return ids;
}

function jobOptions(options: Pick<EnqueueOptions, "priority" | "delay">, jobId?: string) {
  return {
    ...(jobId ? { jobId } : {}),
    ...(options.priority ? { priority: options.priority } : {}),
    ...(options.delay ? { delay: options.delay } : {}),
  };
}

/**
 * Validates the job (before Redis is touched) and adds it; resolves to the job id. A job whose
 * destination or reject report another active job writes is refused (DestinationBusyError,
 * naming that job), and nothing is added.
 */
export async function enqueueTransform(input: unknown, options: EnqueueOptions): Promise<string> {
  const { data, payload } = checkedJob(input, options.maxJobBytes);
  const [id] = await claimAndAdd(options.queue, [
    { data, payload, opts: jobOptions(options, options.jobId) },
  ]);
  if (!id) throw new Error("the queue returned no job id");
  return id;
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
  const planned = inputs.map((input, index): Planned => {
    let checked: ReturnType<typeof checkedJob>;
    try {
      checked = checkedJob(input, options.maxJobBytes);
    } catch (error) {
      throw new InvalidJobError(`job ${index + 1}: ${(error as Error).message}`);
    }
    return { ...checked, opts: jobOptions(options, options.jobIds?.[index]) };
  });
  const clash = sameOutputs(planned.map((job) => job.data));
  if (clash) throw new InvalidJobError(`${clash}: one active job per output object`);
  return claimAndAdd(options.queue, planned);
}

/**
 * A job id that names the work: the source's version and everything that changes what the job
 * writes (destination, reject report location, schema or transform, every option not at its
 * default but split). The same work gets the same id, so enqueueing it again adds nothing while the job
 * exists (BullMQ keeps one job per id); different work (a corrected schema, another option, a
 * new version of the source) gets another id. `sourceVersion` is the source's ETag (or version
 * id) when the job names no versionId: without either, only the location stands for the source.
 */
export function dedupeJobId(input: unknown, sourceVersion?: string): string {
  const { data } = checkedJob(input, Number.POSITIVE_INFINITY);
  const { source, contract: _contract, options, ...work } = data;
  // An option at its default is left out, so a release that adds options keeps the ids; and
  // how a job is split changes nothing it writes.
  const defaults = JobOptions.parse({}) as Record<string, unknown>;
  const set = Object.entries(options).filter(
    ([name, value]) => name !== "split" && canonicalJson(value) !== canonicalJson(defaults[name]),
  );
  const identity = canonicalJson({
    ...work,
    options: Object.fromEntries(set),
    source: {
      bucket: source.bucket,
      key: source.key,
      version: source.versionId ?? sourceVersion ?? "",
    },
    rejects: rejectsLocation(data),
  });
  return `s3csv-${createHash("sha256").update(identity).digest("hex").slice(0, 32)}`;
}

/** JSON with every object's keys in order: the same value always gives the same text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The source's current version as dedupeJobId takes it: its version id, else its ETag. */
export async function sourceVersion(
  s3: S3Client,
  source: { bucket: string; key: string; versionId?: string | undefined },
): Promise<string> {
  if (source.versionId) return source.versionId;
  const head = await s3.send(new HeadObjectCommand({ Bucket: source.bucket, Key: source.key }));
  return head.ETag ?? "";
}
