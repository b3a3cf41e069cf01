import type { S3Client } from "@aws-sdk/client-s3";
import { type Job, UnrecoverableError, WaitingError } from "bullmq";
import type { Cluster, Redis } from "ioredis";
import type { Config } from "../shared/config.ts";
import {
  DestinationBusyError,
  DestinationClaims,
  ioredisScripts,
} from "../shared/destinationClaims.ts";
import {
  type Checkpoint,
  describeZodError,
  JobData,
  type JobProgress,
  type JobResult,
  type OutputCheckpoint,
  type OutputSide,
  rejectsLocation,
} from "../shared/job.ts";
import type { Logger } from "../shared/logger.ts";
import { checkAccess } from "./accessPolicy.ts";
import { firstCheckpoint, START } from "./checkpoint.ts";
import { CheckpointStore, LockLostError } from "./checkpointStore.ts";
import { checkpointProblem } from "./checkpointTrust.ts";
import { HandBackError, PermanentJobError, UploadGoneError } from "./errors.ts";
import { judgesFor } from "./judges.ts";
import { abortUpload, type PartUploaded } from "./resumableUpload.ts";
import type { JudgeFactory } from "./rowJudge.ts";
import type { OpenedBody } from "./sourceReader.ts";
import { runPipeline } from "./transformPipeline.ts";
import type { TransformRegistry } from "./transforms/registry.ts";
import type { WorkerMetrics } from "./workerMetrics.ts";

export interface ProcessorDeps {
  s3: S3Client;
  /** A connection of the worker's own for fenced checkpoint writes. */
  redis: Redis | Cluster;
  config: Config;
  log: Logger;
  /** Aborted when the worker shuts down. */
  drain: AbortSignal;
  /** The transforms jobs may name: built in, and loaded from the worker's modules. */
  transforms: TransformRegistry;
  metrics?: WorkerMetrics;
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
  /** Since when the job has held its outputs' keys: uploads on them since are its own. */
  claimedAt: Date;
  signal: AbortSignal | undefined;
  jobLog: Logger;
}
const SIDES: readonly OutputSide[] = ["output", "rejects"];

/** The job's data, checked: the contract, its size, and a checkpoint that is its own. */
function parseJobData(job: TransformJob, jobKey: string, config: Config): JobData {
  const { checkpoint: _checkpoint, ...payload } = (job.data ?? {}) as Record<string, unknown>;
  // What a producer sends is held to the limit whatever checkpoint rides along with it.
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
  if (problem) {
    throw new PermanentJobError(
      `the job's checkpoint is not this job's own (${problem}); workers write checkpoints, a producer never sets one`,
    );
  }
  return parsed.data;
}

function outputsOf(data: JobData) {
  return [data.destination, rejectsLocation(data)];
}

/** An output started over: no upload, no parts, nothing carried, from the source's start. */
function restartedOutput(state: OutputCheckpoint): OutputCheckpoint {
  return { bucket: state.bucket, key: state.key, parts: [], bytes: 0, mark: START };
}

function sideOf(checkpoint: Checkpoint, location: { bucket: string; key: string }): OutputSide {
  const { bucket, key } = checkpoint.output;
  return location.bucket === bucket && location.key === key ? "output" : "rejects";
}

export function createProcessor(deps: ProcessorDeps) {
  const { s3, redis, config, log, drain, transforms, metrics } = deps;
  const prefix = `${config.QUEUE_PREFIX}:${config.QUEUE_NAME}`;
  const claims = new DestinationClaims(ioredisScripts(redis), prefix);

  /**
   * Claims the job's output keys before anything is written: a job a raw BullMQ client added
   * for a key another active job writes fails here, naming that job.
   */
  async function claimOutputs(jobId: string, data: JobData): Promise<Date> {
    try {
      const since = await claims.claim(outputsOf(data).map((location) => ({ jobId, location })));
      return new Date(Math.min(...since));
    } catch (error) {
      if (error instanceof DestinationBusyError) throw new PermanentJobError(error.message);
      throw error;
    }
  }

  // Said once per worker: every job on that server would say it again.
  let toldUnverifiedChecksums = false;

  /**
   * Runs the pipeline until it completes. An output whose upload is gone starts over (once per
   * attempt): the checkpoint then names no upload for it, and reading restarts at the source's
   * beginning while the other output skips what it already holds.
   */
  async function runToCompletion(attempt: Attempt): Promise<JobResult> {
    const { job, data, store, signal, jobLog } = attempt;
    const restarted: JobResult["restarted"] = [];
    let { judges, firstRead: opened } = attempt;
    for (;;) {
      try {
        const result = await runPipeline({
          data,
          s3,
          store,
          judges,
          partsInFlight: config.PARTS_IN_FLIGHT,
          reportProgress: (progress: JobProgress) => job.updateProgress(progress),
          signal,
          drain,
          firstRead: opened,
          claimedAt: attempt.claimedAt,
          // A first attempt's checkpoint waits for its first upload, so a retry may have none.
          retried: store.current.resumes > 0 || job.attemptsStarted > 1,
          onPartUploaded: (part: PartUploaded) => {
            metrics?.partUploaded(part.seconds, part.bytes);
            jobLog.info(
              { part: part.partNumber, key: part.key, bytes: part.bytes, seconds: part.seconds },
              "part uploaded",
            );
          },
        });
        return { ...result, restarted };
      } catch (error) {
        if (!(error instanceof UploadGoneError)) throw error;
        const side = sideOf(store.current, error.location);
        if (restarted.some((r) => r.output === side)) throw error;
        opened?.destroy();
        opened = undefined;
        // Verdicts of unique and primary keys remember rows: a new run judges them afresh.
        judges = judgesFor(data, transforms);
        restarted.push({ output: side, reason: error.message });
        jobLog.warn({ output: side, reason: error.message }, "upload gone: output starts over");
        await store.save({ ...store.current, [side]: restartedOutput(store.current[side]) });
      }
    }
  }

  /**
   * A job that failed for good leaves nothing to bill: its uploads are aborted, and its
   * checkpoint starts those outputs over, so a retry (job.retry, Bull Board, s3csv retry) runs.
   */
  async function abandonUploads(store: CheckpointStore, jobLog: Logger): Promise<void> {
    const checkpoint = store.current;
    const open = SIDES.filter((side) => checkpoint[side].uploadId && !checkpoint[side].completed);
    if (open.length === 0) return;
    const aborted = await Promise.allSettled(open.map((side) => abortUpload(s3, checkpoint[side])));
    for (const a of aborted) {
      if (a.status === "rejected") jobLog.warn({ err: a.reason }, "could not abort an upload");
    }
    const reset = { ...checkpoint };
    for (const side of open) reset[side] = restartedOutput(checkpoint[side]);
    await store.save(reset).catch((err: unknown) => {
      jobLog.warn({ err }, "could not reset the checkpoint of the aborted uploads");
    });
    const carries = open.flatMap((side) => checkpoint[side].carry?.key ?? []);
    await Promise.all(carries.map((key) => store.deleteCarry(key))).catch(() => {});
  }

  return async function processTransformJob(
    job: TransformJob,
    token?: string,
    signal?: AbortSignal,
  ): Promise<JobResult> {
    const jobId = job.id ?? "";
    const jobKey = `${prefix}:${jobId}`;
    const jobLog = log.child({ jobId, attempt: job.attemptsStarted });
    let store: CheckpointStore | undefined;
    // The first attempt's source read, opened while pinning the source.
    let firstRead: OpenedBody | undefined;
    let outcome: Outcome = "failed";
    let parsedData: JobData | undefined;
    metrics?.jobStarted();
    try {
      const data = parseJobData(job, jobKey, config);
      parsedData = data;
      const { checkpoint, ...rest } = data;
      checkAccess(data, config);
      const judges = judgesFor(data, transforms);
      const claimedAt = await claimOutputs(jobId, data);
      let start: Checkpoint;
      if (checkpoint) start = { ...checkpoint, resumes: checkpoint.resumes + 1 };
      else
        ({ checkpoint: start, body: firstRead } = await firstCheckpoint(s3, data, config, signal));
      store = new CheckpointStore(
        redis,
        { jobId, jobKey, lockKey: `${jobKey}:lock`, token: token ?? job.token ?? "" },
        rest,
        start,
      );
      // A first attempt has nothing durable yet: the store holds its checkpoint (the pinned
      // source) for the first write that makes something durable (an UploadId, a part), so a
      // small job costs no checkpoint write. A crash before that write leaves nothing to resume.
      if (checkpoint) {
        await store.save(start);
        jobLog.info(
          {
            offset: Math.min(start.output.mark.offset, start.rejects.mark.offset),
            parts: start.output.parts.length,
          },
          "resuming from checkpoint",
        );
      }
      const result = await runToCompletion({
        job,
        data,
        store,
        judges,
        firstRead,
        claimedAt,
        signal,
        jobLog,
      });
      await claims.release(jobId, outputsOf(data)).catch(() => {});
      jobLog.info(
        { rows: result.rows, parts: result.parts, resumes: result.resumes },
        "job completed",
      );
      if (result.checksums === "not-verified" && !toldUnverifiedChecksums) {
        toldUnverifiedChecksums = true;
        log.warn(
          { endpoint: config.S3_ENDPOINT ?? "AWS" },
          "the S3 server returned no CRC32 for parts sent with one: it may not check them (S3_CHECKSUMS)",
        );
      }
      outcome = "completed";
      return result;
    } catch (error) {
      // A worker that lost the job must leave the uploads to the worker that owns it now.
      if (error instanceof LockLostError) {
        outcome = "lock-lost";
        jobLog.warn({ err: error.message }, "stopped: the job's lock was lost");
        throw error;
      }
      if (error instanceof HandBackError) {
        outcome = "handed-back";
        // Every part in flight has finished and been checkpointed; release the job unfailed.
        await job.moveToWait(token);
        jobLog.info("handed the job back for another worker to resume");
        throw new WaitingError();
      }
      const final =
        error instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (final && store) await abandonUploads(store, jobLog);
      if (final && parsedData) await claims.release(jobId, outputsOf(parsedData)).catch(() => {});
      jobLog.warn({ err: error, final }, "job attempt failed");
      throw error;
    } finally {
      // A read the attempt did not finish (it failed first) must not hold its connection.
      firstRead?.destroy();
      metrics?.jobEnded(outcome);
    }
  };
}
