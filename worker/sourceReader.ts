import { pipeline, Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { GetObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { Checkpoint, JobData } from "../shared/job.ts";
import { formatS3Url } from "../shared/s3Url.ts";
import { PermanentJobError } from "./errors.ts";
import { httpStatus, isS3Error } from "./s3Errors.ts";

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

export async function pinSource(
  s3: S3Client,
  source: Source,
  compression: "auto" | "gzip" | "none" = "auto",
): Promise<PinnedSource> {
  try {
    const head = await s3.send(
      new HeadObjectCommand({
        Bucket: source.bucket,
        Key: source.key,
        VersionId: source.versionId,
      }),
    );
    const gzip =
      compression === "gzip" ||
      (compression === "auto" &&
        (source.key.endsWith(".gz") || /gzip/i.test(head.ContentEncoding ?? "")));
    return {
      etag: head.ETag ?? "",
      size: head.ContentLength ?? 0,
      ...(head.VersionId ? { versionId: head.VersionId } : {}),
      ...(gzip ? { gzip: true } : {}),
    };
  } catch (error) {
    throw missing(source, error) ?? error;
  }
}

/**
 * Streams the pinned source from `offset` to its end (or to just before `until`). A gzip source
 * has no byte ranges in its decompressed text: it is read from the start and decompressed, and
 * the bytes before `offset` are skipped (the cost of resuming a gzip job).
 */
export async function* readSource(
  s3: S3Client,
  source: Source,
  pinned: PinnedSource,
  offset: number,
  signal?: AbortSignal,
  until = Number.POSITIVE_INFINITY,
): AsyncGenerator<Uint8Array> {
  if (pinned.gzip) {
    yield* gunzipped(open(s3, source, pinned, 0, pinned.size, signal), source, offset, until);
    return;
  }
  yield* open(s3, source, pinned, offset, Math.min(until, pinned.size), signal);
}

async function* gunzipped(
  compressed: AsyncIterable<Uint8Array>,
  source: Source,
  offset: number,
  until: number,
): AsyncGenerator<Uint8Array> {
  let at = 0;
  const gunzip = createGunzip();
  // pipeline(), not pipe(): a failing download must fail the decompressed stream too.
  pipeline(Readable.from(compressed), gunzip, () => {});
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      const from = Math.max(0, offset - at);
      const to = Math.min(chunk.length, until - at);
      at += chunk.length;
      if (to > from) yield chunk.subarray(from, to);
      if (at >= until) return;
    }
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith("Z_")) {
      throw new PermanentJobError(
        `source ${formatS3Url(source)} is not valid gzip: ${(error as Error).message}`,
      );
    }
    throw error;
  }
}

async function* open(
  s3: S3Client,
  source: Source,
  pinned: PinnedSource,
  offset: number,
  until: number,
  signal?: AbortSignal,
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
    if (isS3Error(error, "PreconditionFailed") || httpStatus(error) === 412) {
      throw new SourceChangedError(source, pinned);
    }
    throw missing(source, error) ?? error;
  }
  yield* body;
}
