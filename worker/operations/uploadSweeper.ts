import { AbortMultipartUploadCommand, type S3Client } from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { Checkpoint } from "../../shared/job.ts";
import { openUploads } from "../upload/multipartUploads.ts";

// The sweeper: aborts multipart uploads in a bucket that no live job owns, so that a job lost
// in a way its worker could not clean up (a failed Redis, a job removed by hand) leaves nothing
// to bill. An upload is owned when a job that can still run has it in its checkpoint.

const LIVE_STATES = ["active", "waiting", "delayed", "prioritized", "waiting-children"] as const;
const PAGE = 500;

export interface SweptUpload {
  key: string;
  uploadId: string;
  initiated: Date | undefined;
  action: "aborted" | "would-abort" | "kept: owned by a live job" | "kept: too recent";
}

/** The checkpoints of every job that may still run (what owns uploads and shard objects). */
export async function* liveCheckpoints(queue: Queue): AsyncGenerator<Checkpoint> {
  for (let start = 0; ; start += PAGE) {
    const jobs = await queue.getJobs([...LIVE_STATES], start, start + PAGE - 1, true);
    for (const job of jobs) {
      const parsed = Checkpoint.safeParse(
        (job?.data as { checkpoint?: unknown } | undefined)?.checkpoint,
      );
      if (parsed.success) yield parsed.data;
    }
    if (jobs.length < PAGE) return;
  }
}

/** Upload ids in the checkpoints of every job that may still run. */
export async function liveUploadIds(queue: Queue): Promise<Set<string>> {
  const owned = new Set<string>();
  for await (const checkpoint of liveCheckpoints(queue)) {
    for (const output of [checkpoint.output, checkpoint.rejects]) {
      if (output.uploadId) owned.add(output.uploadId);
    }
  }
  return owned;
}

export interface SweepOptions {
  s3: S3Client;
  queue: Queue;
  bucket: string;
  olderThanMs: number;
  dryRun: boolean;
  now?: Date;
}

/** What is older than `olderThanMs` before now (or `now`) may be swept. */
export function sweepCutoff(options: SweepOptions): number {
  return (options.now ?? new Date()).getTime() - options.olderThanMs;
}

export async function sweepUploads(options: SweepOptions): Promise<SweptUpload[]> {
  const { s3, bucket, dryRun } = options;
  const cutoff = sweepCutoff(options);
  // Read the owners first: an upload created after this by a live job is too recent to sweep.
  const owned = await liveUploadIds(options.queue);
  const swept: SweptUpload[] = [];
  for await (const upload of openUploads(s3, bucket)) {
    const key = upload.Key ?? "";
    const uploadId = upload.UploadId ?? "";
    const initiated = upload.Initiated;
    let action: SweptUpload["action"];
    if (owned.has(uploadId)) action = "kept: owned by a live job";
    else if (initiated && initiated.getTime() > cutoff) action = "kept: too recent";
    else if (dryRun) action = "would-abort";
    else {
      await s3.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
      );
      action = "aborted";
    }
    swept.push({ key, uploadId, initiated, action });
  }
  return swept;
}

/** "90s", "30m", "6h", "2d" (or plain milliseconds) to milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not a duration like 90s, 30m, 6h or 2d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    match[2] ?? "ms"
  ] as number;
  return Number(match[1]) * unit;
}
