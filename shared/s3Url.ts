import { z } from "zod";

// Bucket names per S3's rules: 3-63 chars of lowercase letters, digits, dots and hyphens.
export const BucketName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
    "must be an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
  );
/** S3's longest object key, in bytes of UTF-8. */
export const MAX_KEY_BYTES = 1024;

export const ObjectKey = z
  .string()
  .min(1, "must not be empty")
  .max(MAX_KEY_BYTES)
  .refine(
    (key) => Buffer.byteLength(key) <= MAX_KEY_BYTES,
    `must be at most ${MAX_KEY_BYTES} bytes of UTF-8 (S3's limit)`,
  );

export const S3Location = z.strictObject({ bucket: BucketName, key: ObjectKey });
export type S3Location = z.infer<typeof S3Location>;

/**
 * An output key names an object, never a folder: S3 would store a CSV under `out/`, and its
 * reject report under `out/.rejects.csv`, both invisible in most consoles' folder views. A
 * producer's check only (a worker still runs such a job an older producer enqueued).
 */
export const OUTPUT_KEY = /[^/]$/;
export const OUTPUT_KEY_MESSAGE =
  'ends in "/", which names a folder: give the object\'s own name, such as out/orders.csv';

/** Where a producer asks a job to write: a pattern in the published JSON Schema too. */
export const OutputLocation = z.strictObject({
  bucket: BucketName,
  key: ObjectKey.regex(OUTPUT_KEY, OUTPUT_KEY_MESSAGE),
});

/** An s3://BUCKET/KEY URL as a location; an Error of one line that says what is wrong. */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) throw new Error(`"${url}" is not an S3 URL of the form s3://BUCKET/KEY`);
  const parsed = S3Location.safeParse({ bucket: match[1], key: match[2] });
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) =>
    issue.path[0] === "bucket"
      ? `bucket "${match[1]}" ${issue.message}`
      : `its key ${issue.message}`,
  );
  throw new Error(`"${url}": ${problems.join("; ")}`);
}

export function formatS3Url(location: S3Location): string {
  return `s3://${location.bucket}/${location.key}`;
}
