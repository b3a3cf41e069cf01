import {
  ListMultipartUploadsCommand,
  type MultipartUpload,
  type S3Client,
} from "@aws-sdk/client-s3";

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
