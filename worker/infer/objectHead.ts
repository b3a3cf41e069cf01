import { pipeline, Readable } from "node:stream";
import { constants, createGunzip } from "node:zlib";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { JobOptions } from "../../shared/job.ts";
import { httpStatus, isS3Error } from "../../shared/s3Errors.ts";
import { formatS3Url, type S3Location } from "../../shared/s3Url.ts";
import { UsageError } from "../../shared/usageError.ts";
import { NotCsvError } from "./headSample.ts";

// The head of an object, read with one ranged GET of at most HEAD_BYTES: never the whole
// object, whatever its size. A gzip object's head is decompressed as far as it goes (a cut
// gzip stream is read up to the cut, not refused), and its text is capped at HEAD_BYTES too.

/** The most bytes one inference reads of an object (and, for gzip, decompresses). */
export const HEAD_BYTES = 8 * 1024 * 1024;

export interface HeadRead {
  /** The object's size in bytes (compressed, for gzip). */
  size: number;
  gzip: boolean;
  /** The text handed over is the object's whole text: its last row counts unterminated. */
  complete: boolean;
}

/**
 * Reads the head of an object and hands its text to `take` chunk by chunk until `take` says it
 * has enough (true) or the head ends. A missing bucket or object is a UsageError.
 */
export async function readHead(
  s3: S3Client,
  location: S3Location,
  compression: JobOptions["compression"],
  take: (chunk: Uint8Array) => boolean,
): Promise<HeadRead> {
  let response: Awaited<ReturnType<typeof get>>;
  try {
    response = await get(s3, location);
  } catch (error) {
    // S3 answers a range over an empty object with 416: there is no head to read.
    if (isS3Error(error, "InvalidRange") || httpStatus(error) === 416) {
      return { size: 0, gzip: false, complete: true };
    }
    throw missing(location, error) ?? error;
  }
  const size = objectSize(response.ContentRange, response.ContentLength);
  const gzip =
    compression === "gzip" ||
    (compression === "auto" &&
      (location.key.endsWith(".gz") || /gzip/i.test(response.ContentEncoding ?? "")));
  const body = response.Body as unknown as AsyncIterable<Uint8Array> & { destroy(): void };
  try {
    const text = gzip ? gunzipHead(body) : body;
    let bytes = 0;
    for await (const chunk of text) {
      const kept = chunk.subarray(0, HEAD_BYTES - bytes);
      bytes += kept.length;
      if (take(kept)) return { size, gzip, complete: false };
      if (bytes >= HEAD_BYTES) return { size, gzip, complete: false };
    }
    return { size, gzip, complete: size <= HEAD_BYTES };
  } finally {
    body.destroy();
  }
}

function get(s3: S3Client, location: S3Location) {
  return s3.send(
    new GetObjectCommand({
      Bucket: location.bucket,
      Key: location.key,
      Range: `bytes=0-${HEAD_BYTES - 1}`,
    }),
  );
}

/** The whole object's size: the total of a Content-Range, else the length of a whole answer. */
function objectSize(contentRange: string | undefined, contentLength: number | undefined): number {
  const total = /\/(\d+)$/.exec(contentRange ?? "")?.[1];
  return total === undefined ? (contentLength ?? 0) : Number(total);
}

/** Decompresses as much of a possibly cut gzip stream as there is. */
async function* gunzipHead(compressed: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  // A sync flush at the end: a stream the range cut yields what it holds instead of failing.
  const gunzip = createGunzip({ finishFlush: constants.Z_SYNC_FLUSH });
  pipeline(Readable.from(compressed), gunzip, () => {});
  try {
    yield* gunzip as AsyncIterable<Buffer>;
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith("Z_")) {
      throw new NotCsvError(`is not valid gzip: ${(error as Error).message}`);
    }
    throw error;
  } finally {
    gunzip.destroy();
  }
}

function missing(location: S3Location, error: unknown): UsageError | undefined {
  if (isS3Error(error, "NoSuchBucket")) {
    return new UsageError(`bucket "${location.bucket}" does not exist`);
  }
  if (isS3Error(error, "NoSuchKey") || isS3Error(error, "NotFound")) {
    return new UsageError(`${formatS3Url(location)} does not exist`);
  }
  if (isS3Error(error, "AccessDenied") || isS3Error(error, "Forbidden")) {
    return new UsageError(
      `access to ${formatS3Url(location)} is denied: s3csv infer needs s3:GetObject on it`,
    );
  }
  return undefined;
}
