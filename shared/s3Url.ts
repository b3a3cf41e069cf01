import { z } from "zod";

// Bucket names per S3's rules: 3-63 chars of lowercase letters, digits, dots and hyphens.
export const BucketName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
    "must be an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
  );
export const ObjectKey = z.string().min(1, "must not be empty").max(1024);

export const S3Location = z.strictObject({ bucket: BucketName, key: ObjectKey });
export type S3Location = z.infer<typeof S3Location>;

export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) throw new Error(`"${url}" is not an S3 URL of the form s3://BUCKET/KEY`);
  return S3Location.parse({ bucket: match[1], key: match[2] });
}

export function formatS3Url(location: S3Location): string {
  return `s3://${location.bucket}/${location.key}`;
}
