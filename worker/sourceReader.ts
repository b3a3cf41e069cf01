import { GetObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { Checkpoint, JobData } from "../shared/job.ts";
import { formatS3Url } from "../shared/s3Url.ts";
import { PermanentJobError } from "./errors.ts";
import { isS3Error } from "./s3Errors.ts";

// The source reader: pins the source object on the first attempt (ETag, size, version) and
// streams it from any byte offset, always conditional on the pinned ETag, so that a resumed
// job never mixes two versions of a file.

export type PinnedSource = Checkpoint["source"];
type Source = JobData["source"];

function missing(source: Source, error: unknown): PermanentJobError | undefined {
  const url = formatS3Url(source);
  if (isS3Error(error, "NoSuchBucket")) {
    return new PermanentJobError(
      `source bucket "${source.bucket}" does not exist; fix the job's source or create the bucket`,
    );
  }
  if (isS3Error(error, "NoSuchKey") || isS3Error(error, "NotFound")) {
    return new PermanentJobError(
      `source ${url}${source.versionId ? ` (version ${source.versionId})` : ""} does not exist; upload it or fix the key, then enqueue the job again`,
    );
  }
  if (isS3Error(error, "AccessDenied") || isS3Error(error, "Forbidden")) {
    return new PermanentJobError(
      `access to source ${url} is denied; grant the worker's role s3:GetObject on it`,
    );
  }
  return undefined;
}

export class SourceChangedError extends PermanentJobError {
  constructor(source: Source, pinned: PinnedSource) {
    super(
      `source ${formatS3Url(source)} changed since the job started (it was ETag ${pinned.etag}, ${pinned.size} bytes); the partial output was discarded: enqueue a new job to process the new version`,
    );
  }
}

export async function pinSource(s3: S3Client, source: Source): Promise<PinnedSource> {
  try {
    const head = await s3.send(
      new HeadObjectCommand({
        Bucket: source.bucket,
        Key: source.key,
        VersionId: source.versionId,
      }),
    );
    return {
      etag: head.ETag ?? "",
      size: head.ContentLength ?? 0,
      ...(head.VersionId ? { versionId: head.VersionId } : {}),
    };
  } catch (error) {
    throw missing(source, error) ?? error;
  }
}

/** Streams the pinned source from `offset` to its end (or to just before `until`). */
export async function* readSource(
  s3: S3Client,
  source: Source,
  pinned: PinnedSource,
  offset: number,
  signal?: AbortSignal,
  until = pinned.size,
): AsyncGenerator<Uint8Array> {
  if (offset >= until) return;
  const whole = offset === 0 && until >= pinned.size;
  let body: AsyncIterable<Uint8Array>;
  try {
    const response = await s3.send(
      new GetObjectCommand({
        Bucket: source.bucket,
        Key: source.key,
        VersionId: pinned.versionId,
        IfMatch: pinned.etag,
        ...(whole ? {} : { Range: `bytes=${offset}-${until - 1}` }),
      }),
      { abortSignal: signal },
    );
    body = response.Body as AsyncIterable<Uint8Array>;
  } catch (error) {
    if (
      isS3Error(error, "PreconditionFailed") ||
      (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === 412
    ) {
      throw new SourceChangedError(source, pinned);
    }
    throw missing(source, error) ?? error;
  }
  yield* body;
}
