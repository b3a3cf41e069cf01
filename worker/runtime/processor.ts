import type { S3Client } from "@aws-sdk/client-s3";
import {
  DelayedError,
  type Job,
  type Queue,
  UnrecoverableError,
  WaitingChildrenError,
  WaitingError,
} from "bullmq";
import type { Cluster, Redis } from "ioredis";
import type { Config } from "../../shared/config.ts";
import { DestinationBusyError, DestinationClaims } from "../../shared/destinationClaims.ts";
import {
  type Checkpoint,
  CONTRACT_VERSION,
  contractNeeded,
  describeZodError,
  JobData,
  type JobProgress,
  type JobResult,
  OUTPUT_SIDES,
  outputLocations,
} from "../../shared/job.ts";
import type { Logger } from "../../shared/logger.ts";
import { type QueueKeys, queueKeys } from "../../shared/queueKeys.ts";
import { ioredisScripts, type ScriptClient } from "../../shared/redisScripts.ts";
import { workerCensus } from "../../shared/workerCensus.ts";
import {
  CheckpointStore,
  defineStoreScripts,
  LockLostError,
} from "../checkpoint/checkpointStore.ts";
import { checkpointProblem } from "../checkpoint/checkpointTrust.ts";
import { checkpointOwnership, restartedOutput } from "../checkpoint/outputRestart.ts";
import { HandBackError, NeedsNewerWorkerError, PermanentJobError } from "../errors.ts";
import { judgeFactoryFor } from "../judge/judgeFactory.ts";
import type { JudgeFactory } from "../judge/rowJudge.ts";
import type { TransformRegistry } from "../judge/transforms/registry.ts";
import { runRestartingLostOutputs } from "../pipeline/restartingAttempt.ts";
import { firstCheckpoint } from "../source/firstAttempt.ts";
import type { OpenedBody } from "../source/sourceReader.ts";
import { deleteShardObjects } from "../split/shardObjects.ts";
import { defineShardProgressScript, reportShardProgress } from "../split/shardProgress.ts";
import { type ShardData, shardCheckpoint } from "../split/shardStart.ts";
import { SplitParent } from "../split/splitParent.ts";
import { decideSplit, readHead, shardSizeFor } from "../split/splitPlan.ts";
import { abortUpload, abortUploadsStartedNear } from "../upload/multipartUploads.ts";
import type { PartPool } from "../upload/partPool.ts";
import type { PartUploaded } from "../upload/resumableUpload.ts";
import { checkAccess } from "./accessPolicy.ts";
import type { WorkerMetrics } from "./workerMetrics.ts";

export interface ProcessorDeps {
  s3: S3Client;
  /** A connection of the worker's own for fenced checkpoint writes. */
  redis: Redis | Cluster;
  config: Config;
  log: Logger;
  /** Aborted when the worker shuts down. */
  shutdown: AbortSignal;
  /** The transforms jobs may name: built in, and loaded from the worker's modules. */
  transforms: TransformRegistry;
  metrics?: WorkerMetrics;
  /** The worker's queue, for a split job's parent to add its shards to. */
  queue: Queue;
  /** The worker's idle part buffers, which its jobs take from and give back to. */
  partPool?: PartPool;
}

export type TransformJob = Job<unknown, JobResult>;
type Outcome = Parameters<WorkerMetrics["jobEnded"]>[0];
/** One attempt at a job, as the processor runs it. */
interface Attempt {
  job: TransformJob;
  data: JobData;
  store: CheckpointStore;
  judges: JudgeFactory;
  /** The first attempt's source read, already open. */
  firstRead: OpenedBody | undefined;
  signal: AbortSignal | undefined;
  jobLog: Logger;
  /** The job's lock, which this attempt holds while it runs. */
  lock: { key: string; token: string };
  /** Outputs started over before the attempt began. */
  restarted: JobResult["restarted"];
}

/** How long a job too new for this worker waits before another worker may take it. */
const HAND_BACK_DELAY_MS = 5000;

/** The job's data, checked: the contract, its size, and a checkpoint that is its own. */
function parseJobData(job: TransformJob, jobKey: string, config: Config): JobData {
  // Before anything else: a newer contract may have keys (or meanings) this worker lacks.
  const contract = (job.data as { contract?: unknown } | undefined)?.contract;
  if (typeof contract === "number" && contract > CONTRACT_VERSION) {
    throw new NeedsNewerWorkerError(contract, CONTRACT_VERSION);
  }
  const {
    checkpoint: _checkpoint,
    shard: _shard,
    ...payload
  } = (job.data ?? {}) as Record<string, unknown>;
  // What a producer sends is held to the limit whatever a worker adds (a checkpoint, a
  // shard's range and header).
  const size = Buffer.byteLength(JSON.stringify(payload));
  if (size > config.MAX_JOB_BYTES) {
    throw new PermanentJobError(
      `the job's data is ${size} bytes, more than MAX_JOB_BYTES (${config.MAX_JOB_BYTES})`,
    );
  }
  const parsed = JobData.safeParse(job.data);
  if (!parsed.success) {
    throw new PermanentJobError(`invalid job data: ${describeZodError(parsed.error)}`);
  }
  const { checkpoint } = parsed.data;
  const problem = checkpoint && checkpointProblem(parsed.data, checkpoint, jobKey);
  if (problem) throw notOwnCheckpoint(problem);
  return parsed.data;
}

/**
 * The error as BullMQ keeps it with the job (Bull Board shows it): its name and message, not the
 * worker's stack with its file paths (the worker's log has that).
 */
function withoutStack(error: unknown): unknown {
  if (error instanceof Error) error.stack = `${error.name}: ${error.message}`;
  return error;
}

/** The result, saying which version of the source the job read (a shard's: its parent's). */
function withSource(result: JobResult, checkpoint: Checkpoint): JobResult {
  const { etag, versionId, size } = checkpoint.source;
  return { ...result, source: { etag, ...(versionId ? { versionId } : {}), size } };
}

function notOwnCheckpoint(problem: string): PermanentJobError {
  return new PermanentJobError(
    `the job's checkpoint is not this job's own (${problem}); workers write checkpoints, a producer never sets one`,
  );
}

/** A job attempt's processor, for BullMQ: one per worker, its state only the worker's own. */
export function createProcessor(deps: ProcessorDeps) {
  const processor = new JobProcessor(deps);
  return (job: TransformJob, token?: string, signal?: AbortSignal) =>
    processor.process(job, token, signal);
}

class JobProcessor {
  readonly #deps: ProcessorDeps;
  readonly #keys: QueueKeys;
  readonly #scripts: ScriptClient;
  readonly #claims: DestinationClaims;
  // Said once per worker: every job on that server would say it again.
  #toldUnverifiedChecksums = false;

  constructor(deps: ProcessorDeps) {
    this.#deps = deps;
    this.#keys = queueKeys(deps.config.QUEUE_PREFIX, deps.config.QUEUE_NAME);
    this.#scripts = ioredisScripts(deps.redis);
    defineStoreScripts(this.#scripts);
    defineShardProgressScript(this.#scripts);
    this.#claims = new DestinationClaims(this.#scripts, this.#keys);
  }

  async process(job: TransformJob, token?: string, signal?: AbortSignal): Promise<JobResult> {
    const { log, metrics } = this.#deps;
    const jobLog = log.child({ jobId: job.id, attempt: job.attemptsStarted });
    let attempt: Attempt | undefined;
    let outcome: Outcome = "failed";
    metrics?.jobStarted();
    try {
      attempt = await this.#begin(job, token, signal, jobLog);
      const result = withSource(await this.#run(attempt), attempt.store.current);
      await this.#completed(attempt, result);
      outcome = "completed";
      return result;
    } catch (error) {
      if (error instanceof WaitingChildrenError) {
        outcome = "handed-back";
        throw error;
      }
      outcome = await this.#failed(error, job, token, attempt, jobLog);
      if (outcome === "handed-back") throw new WaitingError();
      if (outcome === "needs-newer-worker") throw new DelayedError();
      throw withoutStack(error);
    } finally {
      // A read the attempt did not finish (it failed first) must not hold its connection.
      attempt?.firstRead?.destroy();
      metrics?.jobEnded(outcome);
    }
  }

  /**
   * Claims the job's output keys before anything is written: a job a raw BullMQ client added
   * for a key another active job writes fails here, naming that job.
   */
  async #claimOutputs(jobId: string, data: JobData): Promise<void> {
    const claims = outputLocations(data).map((location) => ({ jobId, location }));
    try {
      await this.#claims.claim(claims, this.#deps.shutdown);
    } catch (error) {
      if (error instanceof DestinationBusyError) throw new PermanentJobError(error.message);
      if (this.#deps.shutdown.aborted) throw new HandBackError();
      throw error;
    }
  }

  /** The checkpoint as this attempt may go on from it; outputs that must start over say so. */
  async #ownCheckpoint(checkpoint: Checkpoint, jobKey: string, jobLog: Logger) {
    const owned = await checkpointOwnership(this.#deps.redis, checkpoint, jobKey);
    if ("foreign" in owned) throw notOwnCheckpoint(owned.foreign);
    for (const { output, reason } of owned.restarted) {
      jobLog.warn({ output, reason }, "output starts over");
    }
    return owned;
  }

  /** Sets up an attempt: the job checked and claimed, its checkpoint stored or first written. */
  async #begin(
    job: TransformJob,
    token: string | undefined,
    signal: AbortSignal | undefined,
    jobLog: Logger,
  ): Promise<Attempt> {
    const { s3, redis, config, transforms } = this.#deps;
    const jobId = job.id ?? "";
    const jobKey = this.#keys.job(jobId);
    const data = parseJobData(job, jobKey, config);
    // Only a split job's parent adds a shard, as its child: any other job naming one is refused.
    if (data.shard && job.parentKey !== this.#keys.job(data.shard.parent)) {
      throw new PermanentJobError(
        `the job names a shard of job ${data.shard.parent} but is not that job's child; shards are added by their parent job only`,
      );
    }
    const saved = data.checkpoint;
    // Written back with each checkpoint as the producer sent it, not as parsed here: defaults
    // this release fills in would be keys a worker of the previous release refuses.
    const { checkpoint: _saved, ...sent } = (job.data ?? {}) as Record<string, unknown>;
    const { checkpoint, restarted } = saved
      ? await this.#ownCheckpoint(saved, jobKey, jobLog)
      : { checkpoint: undefined, restarted: [] };
    checkAccess(data, config);
    const judges = judgeFactoryFor(data, transforms);
    await this.#claimOutputs(jobId, data);
    let start: Checkpoint;
    let firstRead: OpenedBody | undefined;
    // A split job's parent runs again each time its shards are done, which is no resume; once
    // it has begun composing (an upload named), it runs again only after a crash.
    const composing = OUTPUT_SIDES.some((side) => checkpoint?.[side].uploadId);
    if (checkpoint?.split && !composing) start = checkpoint;
    else if (checkpoint) start = { ...checkpoint, resumes: checkpoint.resumes + 1 };
    else if (data.shard) start = await shardCheckpoint(s3, data as ShardData, config, signal);
    else ({ checkpoint: start, body: firstRead } = await firstCheckpoint(s3, data, config, signal));
    const lock = { key: this.#keys.lock(jobId), token: token ?? job.token ?? "" };
    const keys = {
      jobId,
      jobKey,
      lockKey: lock.key,
      token: lock.token,
      registry: this.#keys.registry,
    };
    const store = new CheckpointStore(this.#scripts, redis, keys, sent, start);
    // A first attempt has nothing durable yet: the store holds its checkpoint (the pinned
    // source) for the first write that makes something durable (an UploadId, a part), so a
    // small job costs no checkpoint write. A crash before that write leaves nothing to resume.
    if (checkpoint) {
      await store.save(start);
      const offset = Math.min(start.output.mark.offset, start.rejects.mark.offset);
      jobLog.info({ offset, parts: start.output.parts.length }, "resuming from checkpoint");
    }
    return { job, data, store, judges, firstRead, signal, jobLog, lock, restarted };
  }

  /** Runs the job whole, or as the parent of its shards. */
  async #run(attempt: Attempt): Promise<JobResult> {
    const { store, data, judges, job, jobLog } = attempt;
    // Decided on a job's first attempt only: a resumed job goes on as it started.
    if (!store.current.split && attempt.firstRead && !data.shard) {
      const source = {
        readFirstRow: () => this.#readFirstRow(attempt),
        workers: () => workerCensus(this.#deps.queue),
      };
      const decision = await decideSplit(data, store.current, judges, job.id ?? "", source);
      if ("split" in decision) {
        const { split } = decision;
        // A split parent's checkpoint has state a worker without split jobs cannot read.
        store.requireContract(contractNeeded({ shard: true }));
        // Saved before any shard is added: a parent that dies adds the same ones again.
        await store.save({ ...store.current, header: split.header, split });
        jobLog.info({ shards: split.shards.length }, "split into shards");
      } else if (this.#mayNoteUnsplit(attempt)) {
        // Kept beside the job: a resumed attempt's result says it too.
        await store.noteUnsplit(decision.unsplit);
      }
    }
    if (store.current.split) {
      const { s3, queue, redis } = this.#deps;
      const { lock } = attempt;
      const token = lock.token;
      const keys = this.#keys;
      const parent = new SplitParent({
        job,
        token,
        data,
        store,
        s3,
        queue,
        keys,
        log: jobLog,
        redis,
        scripts: this.#scripts,
      });
      return parent.run();
    }
    const result = await this.#runToCompletion(attempt);
    const unsplit = this.#mayNoteUnsplit(attempt) ? await store.unsplitReason() : undefined;
    return unsplit ? { ...result, unsplit } : result;
  }

  /** Only a job large enough to split has a note of why it ran whole: others skip the reads. */
  #mayNoteUnsplit({ data, store }: Attempt): boolean {
    return shardSizeFor(data.options.split, store.current.source.size) !== undefined;
  }

  /** The source's first row, from the first attempt's read (spent: a whole run reads again). */
  #readFirstRow(attempt: Attempt) {
    const body = attempt.firstRead as OpenedBody;
    attempt.firstRead = undefined;
    const delimiter = attempt.store.current.delimiter ?? ",";
    return readHead(body, attempt.data, delimiter).finally(() => body.destroy());
  }

  /** The job's progress; a shard's goes into its parent's too (the shards' sum). */
  async #reportProgress(attempt: Attempt, progress: JobProgress): Promise<void> {
    await attempt.job.updateProgress(progress);
    const { shard } = attempt.data;
    if (!shard) return;
    const { queue } = this.#deps;
    const start = attempt.store.current.shardStart ?? 0;
    const parentKey = this.#keys.job(shard.parent);
    // The parent's progress is for people watching: a shard does not fail for it.
    await reportShardProgress(this.#scripts, queue, parentKey, shard, start, progress).catch(
      (err: unknown) => attempt.jobLog.debug({ err }, "could not update the parent's progress"),
    );
  }

  /** Runs the attempt until it completes, starting over an output whose upload was lost. */
  #runToCompletion(attempt: Attempt): Promise<JobResult> {
    const { data, store, signal, jobLog, judges, firstRead, restarted } = attempt;
    const { s3, config, shutdown, metrics } = this.#deps;
    return runRestartingLostOutputs({
      data,
      s3,
      store,
      judges,
      firstRead,
      restarted,
      partsInFlight: config.PARTS_IN_FLIGHT,
      partPool: this.#deps.partPool,
      reportProgress: (progress: JobProgress) => this.#reportProgress(attempt, progress),
      signal,
      shutdown,
      onRestart: ({ output, reason }) =>
        jobLog.warn({ output, reason }, "upload gone: output starts over"),
      onPartUploaded: (part: PartUploaded) => {
        metrics?.partUploaded(part.seconds, part.bytes);
        const { partNumber, key, bytes, seconds } = part;
        jobLog.info({ part: partNumber, key, bytes, seconds }, "part uploaded");
      },
    });
  }

  /**
   * A job that failed for good leaves nothing to bill: every upload its workers created is
   * aborted (recorded, or started around a creating mark), and its checkpoint starts every
   * output over (a completed one too: its report may be missing), so a retry (s3csv retry,
   * retryJob, Bull Board) runs it whole. Only while this worker still holds the job: one that
   * lost it must leave the new owner's uploads alone.
   */
  async #abandon(attempt: Attempt): Promise<void> {
    const { store, data, jobLog } = attempt;
    const checkpoint = store.current;
    // Its first read (the upload records) is fenced: a worker that lost the job stops there.
    const failures = await this.#abortUploads(store, checkpoint);
    for (const err of failures) jobLog.warn({ err }, "could not abort an upload");
    const output = restartedOutput(checkpoint.output, checkpoint);
    const rejects = restartedOutput(checkpoint.rejects, checkpoint);
    // A split job's shards' objects go, and so does its plan: a retry runs it whole.
    if (checkpoint.split) await deleteShardObjects(this.#deps.s3, data, checkpoint.split);
    const { split: _split, ...whole } = checkpoint;
    await store.save({ ...whole, output, rejects });
    // A record of an upload that could not be aborted stays, for the retry to abort it.
    if (failures.length === 0) await store.dropRecords();
    if (checkpoint.split)
      await store.noteUnsplit("it is a retry of a split job that failed for good");
    await this.#claims.release(attempt.job.id ?? "", outputLocations(data), attempt.lock);
  }

  /** Aborts the job's open uploads; resolves to the errors of those that could not be. */
  async #abortUploads(store: CheckpointStore, checkpoint: Checkpoint): Promise<unknown[]> {
    const { s3 } = this.#deps;
    const done = OUTPUT_SIDES.filter((side) => checkpoint[side].completed);
    const finished = new Set(done.map((side) => checkpoint[side].uploadId));
    // Read only while this worker holds the job: a new owner's records are its own.
    const records = await store.uploadRecords();
    const recorded = [...records.uploads].filter(([id]) => !finished.has(id));
    const aborts = recorded.map(([uploadId, side]) =>
      abortUpload(s3, { ...checkpoint[side], completed: undefined, uploadId }),
    );
    for (const side of OUTPUT_SIDES) {
      const creating = records.creating[side];
      if (creating) aborts.push(abortUploadsStartedNear(s3, checkpoint[side], creating));
    }
    const settled = await Promise.allSettled(aborts);
    return settled.flatMap((a) => (a.status === "rejected" ? [a.reason] : []));
  }

  /** The result of a completed attempt: logged, its records dropped, its claims released. */
  async #completed(attempt: Attempt, result: JobResult): Promise<void> {
    const { job, data, jobLog } = attempt;
    const { config, log } = this.#deps;
    const { rows, parts, resumes } = result;
    jobLog.info({ rows, parts, resumes }, "job completed");
    // A split job's composed parts are the server's own copies: that says nothing of the server.
    if (
      result.checksums === "not-verified" &&
      result.shards === 1 &&
      !this.#toldUnverifiedChecksums
    ) {
      this.#toldUnverifiedChecksums = true;
      log.warn(
        { endpoint: config.S3_ENDPOINT ?? "AWS" },
        "the S3 server returned no CRC32 for parts sent with one: it may not check them (S3_CHECKSUMS)",
      );
    }
    const jobId = job.id ?? "";
    await attempt.store.dropRecords().catch(() => {});
    await this.#claims.release(jobId, outputLocations(data), attempt.lock).catch(() => {});
  }

  /** What a failed attempt leaves behind, by why it failed. */
  async #failed(
    error: unknown,
    job: TransformJob,
    token: string | undefined,
    attempt: Attempt | undefined,
    jobLog: Logger,
  ): Promise<Outcome> {
    // A worker that lost the job must leave the uploads to the worker that owns it now.
    if (error instanceof LockLostError) {
      jobLog.warn({ err: error.message }, "stopped: the job's lock was lost");
      return "lock-lost";
    }
    if (error instanceof NeedsNewerWorkerError) {
      await job.moveToDelayed(Date.now() + HAND_BACK_DELAY_MS, token);
      jobLog.warn({ needed: error.needed, known: CONTRACT_VERSION }, error.message);
      // Shown with the job in Bull Board, where an operator looks for why it waits.
      await job.log(error.message).catch(() => {});
      return "needs-newer-worker";
    }
    if (error instanceof HandBackError) {
      // Every part in flight has finished and been checkpointed; release the job unfailed.
      await job.moveToWait(token);
      jobLog.info("handed the job back for another worker to resume");
      return "handed-back";
    }
    const final =
      error instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    if (final && attempt) {
      await this.#abandon(attempt).catch((err: unknown) => {
        const why = err instanceof LockLostError ? "the job's lock was lost" : "cleanup failed";
        jobLog.warn({ err: (err as Error).message }, `left the uploads: ${why}`);
      });
    }
    // A permanent failure's message says it all; a stack is for the unexpected ones.
    const err = error instanceof PermanentJobError ? error.message : error;
    jobLog.warn({ err, final }, "job attempt failed");
    return "failed";
  }
}
