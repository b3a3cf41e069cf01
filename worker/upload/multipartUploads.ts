import {
  AbortMultipartUploadCommand,
  ListMultipartUploadsCommand,
  type MultipartUpload,
  type S3Client,
} from "@aws-sdk/client-s3";
import { isS3Error } from "../../shared/s3Errors.ts";

// An object's multipart uploads as the S3 server lists them, and aborting them.

const CLOCK_LEEWAY_MS = 60_000;
/** How long a CreateMultipartUpload may take, its SDK retries included. */
const CREATE_WINDOW_MS = 5 * 60_000;

export class NoUploadListingError extends Error {
  override name = "NoUploadListingError";
}

/**
 * Every open multipart upload in a bucket (under a key prefix), page after page. A server
 * without ListMultipartUploads may answer the request as something else (a listing of
 * objects): an answer that does not name the bucket is not taken for an empty list.
 */
export async function* openUploads(
  s3: S3Client,
  bucket: string,
  prefix?: string,
): AsyncGenerator<MultipartUpload> {
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  do {
    const page = await s3.send(
      new ListMultipartUploadsCommand({
        Bucket: bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        UploadIdMarker: uploadIdMarker,
      }),
    );
    if (page.Bucket !== bucket) {
      throw new NoUploadListingError(`the server did not list the uploads of bucket ${bucket}`);
    }
    yield* page.Uploads ?? [];
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
  } while (keyMarker);
}

/**
 * Aborts an upload (one already gone is fine: S3 says NoSuchUpload, Ceph RGW may say
 * NoSuchKey). A completed output's upload is done with and is left alone.
 */
export async function abortUpload(
  s3: S3Client,
  output: { bucket: string; key: string; uploadId?: string | undefined; completed?: unknown },
): Promise<void> {
  const { uploadId, bucket, key } = output;
  if (!uploadId || output.completed) return;
  try {
    await s3.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
    );
  } catch (error) {
    if (!isS3Error(error, "NoSuchUpload") && !isS3Error(error, "NoSuchKey")) throw error;
  }
}

/**
 * How long after a creating mark every upload it may stand for is listed: a minute of leeway
 * either side for the S3 server's clock against Redis's, and the create request's own time.
 */
export const CREATING_SETTLED_MS = 2 * CLOCK_LEEWAY_MS + CREATE_WINDOW_MS;

/**
 * The open uploads of an object that started around `creating` (an attempt was about to create
 * one and may have died before recording it): only uploads started then are that attempt's.
 * `kept` is left out. Throws where the server cannot list uploads.
 */
export async function uploadsStartedNear(
  s3: S3Client,
  object: { bucket: string; key: string },
  creating: Date,
  kept?: string | undefined,
): Promise<string[]> {
  const { bucket, key } = object;
  const from = creating.getTime() - CLOCK_LEEWAY_MS;
  const until = creating.getTime() + CLOCK_LEEWAY_MS + CREATE_WINDOW_MS;
  const strays: string[] = [];
  for await (const upload of openUploads(s3, bucket, key)) {
    if (upload.Key !== key || !upload.UploadId || upload.UploadId === kept) continue;
    const at = upload.Initiated?.getTime();
    if (at !== undefined && at >= from && at <= until) strays.push(upload.UploadId);
  }
  return strays;
}

/** Aborts the uploads uploadsStartedNear finds, where the server can list them. */
export async function abortUploadsStartedNear(
  s3: S3Client,
  object: { bucket: string; key: string },
  creating: Date,
  kept?: string | undefined,
): Promise<void> {
  let strays: string[];
  try {
    strays = await uploadsStartedNear(s3, object, creating, kept);
  } catch {
    return; // not supported here: `s3csv sweep` and a lifecycle rule are the backstop
  }
  for (const uploadId of strays) await abortUpload(s3, { ...object, uploadId });
}
