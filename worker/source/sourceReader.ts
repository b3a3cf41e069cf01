import { pipeline, Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { Checkpoint, JobData } from "../../shared/job.ts";
import { httpStatus, isS3Error } from "../../shared/s3Errors.ts";
import { formatS3Url } from "../../shared/s3Url.ts";
import { PermanentJobError } from "../errors.ts";
import { detectUtf16, type Utf16Order, utf16ToUtf8 } from "./utf16Source.ts";

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
      `source ${url}${source.versionId ? ` (version ${source.versionId})` : ""} does not exist; upload it, then retry the job, or enqueue a new job with the right key`,
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

/** A source whose first read is already open: the stream to read it from offset 0. */
export type OpenedBody = AsyncIterable<Uint8Array> & { destroy(): void };

/**
 * The first attempt's pin and read in one request: an unconditional GET pins the source from
 * its own response (ETag, size, version, encoding), and its body is the read from offset 0.
 * Every later read is conditional on that ETag. (A HeadObject first would cost a request of
 * the four a small job makes.)
 */
export async function openSource(
  s3: S3Client,
  source: Source,
  compression: "auto" | "gzip" | "none" = "auto",
  signal?: AbortSignal,
): Promise<{ pinned: PinnedSource; body: OpenedBody }> {
  try {
    const response = await s3.send(
      new GetObjectCommand({
        Bucket: source.bucket,
        Key: source.key,
        VersionId: source.versionId,
        // A job made for one version (s3csv watch) reads that one or none.
        ...(source.etag ? { IfMatch: source.etag } : {}),
      }),
      { abortSignal: signal },
    );
    const gzip =
      compression === "gzip" ||
      (compression === "auto" &&
        (source.key.endsWith(".gz") || /gzip/i.test(response.ContentEncoding ?? "")));
    return {
      pinned: {
        etag: response.ETag ?? "",
        size: response.ContentLength ?? 0,
        // A server that serves a version without naming it in the answer still served it.
        ...((response.VersionId ?? source.versionId)
          ? { versionId: response.VersionId ?? source.versionId }
          : {}),
        ...(gzip ? { gzip: true } : {}),
      },
      body: response.Body as unknown as OpenedBody,
    };
  } catch (error) {
    if (source.etag && (isS3Error(error, "PreconditionFailed") || httpStatus(error) === 412)) {
      throw new PermanentJobError(
        `source ${formatS3Url(source)} is no longer the version this job was made for (ETag ${source.etag}): it was overwritten, and the new version has a job of its own`,
      );
    }
    throw missing(source, error) ?? error;
  }
}

export interface ReadOptions {
  signal?: AbortSignal | undefined;
  /** Stop before this offset. */
  until?: number;
  /** The whole object, already requested (openSource): used instead of a new GET. */
  opened?: OpenedBody | undefined;
  /** From offset 0: recognize a UTF-16 byte order mark and transcode (told the byte order). */
  detectUtf16?: { required: boolean; found(order: Utf16Order): void };
}

/**
 * Streams the pinned source from `offset` to its end (or to just before `until`). A gzip or
 * UTF-16 source has no byte ranges in the text s3csv reads (decompressed, or transcoded to
 * UTF-8): it is read from the start and the bytes before `offset` are skipped (the cost of
 * resuming such a job).
 */
export async function* readSource(
  s3: S3Client,
  source: Source,
  pinned: PinnedSource,
  offset: number,
  options: ReadOptions = {},
): AsyncGenerator<Uint8Array> {
  const until = options.until ?? Number.POSITIVE_INFINITY;
  const fromStart = pinned.gzip === true || pinned.utf16 !== undefined;
  const [from, to] = fromStart ? [0, pinned.size] : [offset, Math.min(until, pinned.size)];
  let bytes: AsyncIterable<Uint8Array> =
    options.opened && from === 0 && to >= pinned.size
      ? options.opened
      : open(s3, source, pinned, from, to, options.signal);
  if (pinned.gzip) bytes = gunzipped(bytes, source);
  if (pinned.utf16) bytes = utf16ToUtf8(bytes, pinned.utf16);
  else if (options.detectUtf16 && (fromStart || offset === 0)) {
    const { required, found } = options.detectUtf16;
    bytes = detectUtf16(bytes, found, required, `source ${formatS3Url(source)}`);
  }
  yield* fromStart ? skipTo(bytes, offset, until) : bytes;
}

/** The part of a stream read from its start that lies in [offset, until). */
async function* skipTo(
  bytes: AsyncIterable<Uint8Array>,
  offset: number,
  until: number,
): AsyncGenerator<Uint8Array> {
  let at = 0;
  for await (const chunk of bytes) {
    const from = Math.max(0, offset - at);
    const to = Math.min(chunk.length, until - at);
    at += chunk.length;
    if (to > from) yield chunk.subarray(from, to);
    if (at >= until) return;
  }
}

async function* gunzipped(
  compressed: AsyncIterable<Uint8Array>,
  source: Source,
): AsyncGenerator<Uint8Array> {
  const gunzip = createGunzip();
  // pipeline(), not pipe(): a failing download must fail the decompressed stream too.
  pipeline(Readable.from(compressed), gunzip, () => {});
  try {
    yield* gunzip as AsyncIterable<Buffer>;
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
