import type { S3Client } from "@aws-sdk/client-s3";
import { type Job, UnrecoverableError, WaitingError } from "bullmq";
import type { Cluster, Redis } from "ioredis";
import type { Config } from "../shared/config.ts";
import {
  type Checkpoint,
  describeZodError,
  JobData,
  type JobProgress,
  type JobResult,
} from "../shared/job.ts";
import type { Logger } from "../shared/logger.ts";
import { checkAccess } from "./accessPolicy.ts";
import { firstCheckpoint } from "./checkpoint.ts";
import { CheckpointStore, LockLostError } from "./checkpointStore.ts";
import { HandBackError, PermanentJobError } from "./errors.ts";
import { judgesFor } from "./judges.ts";
import { abortUpload, type PartUploaded } from "./resumableUpload.ts";
import type { OpenedBody } from "./sourceReader.ts";
import { runPipeline } from "./transformPipeline.ts";
import type { WorkerMetrics } from "./workerMetrics.ts";

export interface ProcessorDeps {
  s3: S3Client;
  /** A connection of the worker's own for fenced checkpoint writes. */
  redis: Redis | Cluster;
  config: Config;
  log: Logger;
  /** Aborted when the worker shuts down. */
  drain: AbortSignal;
  metrics?: WorkerMetrics;
}

export type TransformJob = Job<unknown, JobResult>;

export function createProcessor(deps: ProcessorDeps) {
  const { s3, redis, config, log, drain, metrics } = deps;
  const prefix = `${config.QUEUE_PREFIX}:${config.QUEUE_NAME}`;

  return async function process(
    job: TransformJob,
    token?: string,
    signal?: AbortSignal,
  ): Promise<JobResult> {
    const jobId = job.id ?? "";
    const jobLog = log.child({ jobId, attempt: job.attemptsStarted });
    const size = Buffer.byteLength(JSON.stringify(job.data ?? null));
    if (size > config.MAX_JOB_BYTES && !(job.data as { checkpoint?: unknown } | null)?.checkpoint) {
      throw new PermanentJobError(
        `the job's data is ${size} bytes, more than MAX_JOB_BYTES (${config.MAX_JOB_BYTES})`,
      );
    }
    const parsed = JobData.safeParse(job.data);
    if (!parsed.success) {
      throw new PermanentJobError(`invalid job data: ${describeZodError(parsed.error)}`);
    }
    const { checkpoint, ...rest } = parsed.data;
    let store: CheckpointStore | undefined;
    // The first attempt's source read, opened while pinning the source.
    let firstRead: OpenedBody | undefined;
    let outcome: Parameters<WorkerMetrics["jobEnded"]>[0] = "failed";
    metrics?.jobStarted();
    try {
      checkAccess(parsed.data, config);
      const judges = judgesFor(parsed.data);
      let start: Checkpoint;
      if (checkpoint) start = { ...checkpoint, resumes: checkpoint.resumes + 1 };
      else
        ({ checkpoint: start, body: firstRead } = await firstCheckpoint(
          s3,
          parsed.data,
          config,
          signal,
        ));
      const jobKey = `${prefix}:${jobId}`;
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
      const result = await runPipeline({
        data: parsed.data,
        s3,
        store,
        judges,
        partsInFlight: config.PARTS_IN_FLIGHT,
        reportProgress: (progress: JobProgress) => job.updateProgress(progress),
        signal,
        drain,
        firstRead,
        createdAt: new Date(job.timestamp),
        // A first attempt's checkpoint waits for its first upload, so a retry may have none.
        retried: Boolean(checkpoint) || job.attemptsStarted > 1,
        onPartUploaded: (part: PartUploaded) => {
          metrics?.partUploaded(part.seconds, part.bytes);
          jobLog.info(
            { part: part.partNumber, key: part.key, bytes: part.bytes, seconds: part.seconds },
            "part uploaded",
          );
        },
      });
      jobLog.info(
        { rows: result.rows, parts: result.parts, resumes: result.resumes },
        "job completed",
      );
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
      if (final && store) {
        const cp = store.current;
        const aborted = await Promise.allSettled([
          abortUpload(s3, cp.output),
          abortUpload(s3, cp.rejects),
        ]);
        for (const a of aborted) {
          if (a.status === "rejected") jobLog.warn({ err: a.reason }, "could not abort an upload");
        }
      }
      jobLog.warn({ err: error, final }, "job attempt failed");
      throw error;
    } finally {
      // A read the attempt did not finish (it failed first) must not hold its connection.
      firstRead?.destroy();
      metrics?.jobEnded(outcome);
    }
  };
}
