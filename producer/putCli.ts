import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { parseCommandLine } from "../shared/commandLine.ts";
import { loadConfig } from "../shared/config.ts";
import { createS3Client } from "../shared/s3Client.ts";
import { isS3Error } from "../shared/s3Errors.ts";
import { parseS3Url } from "../shared/s3Url.ts";
import { UsageError } from "../shared/usageError.ts";

export const usage = `s3csv put FILE s3://BUCKET/KEY

Uploads a local file to S3 (S3_ENDPOINT and the AWS variables, as for every command), so that a
job can read it: with s3csv dev running, put your own CSV in its bucket, then infer and enqueue
as the README's first job does. One PutObject: files up to 5 GiB.`;

const MAX_PUT_BYTES = 5 * 1024 ** 3;

export async function putCommand(argv: string[]): Promise<void> {
  const { positionals } = parseCommandLine({ args: argv, allowPositionals: true, options: {} });
  const [file, url, ...extra] = positionals;
  if (!file || !url || extra.length > 0)
    throw new UsageError("give a file and where it goes: s3csv put FILE s3://BUCKET/KEY");
  let location: { bucket: string; key: string };
  try {
    location = parseS3Url(url);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const size = await stat(file).then(
    (s) => (s.isFile() ? s.size : undefined),
    () => undefined,
  );
  if (size === undefined) throw new UsageError(`${file} is not a file here`);
  if (size > MAX_PUT_BYTES)
    throw new UsageError(`${file} is over 5 GiB: upload it with your S3 tools`);
  const s3 = createS3Client(loadConfig());
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: location.bucket,
        Key: location.key,
        Body: createReadStream(file),
        ContentLength: size,
      }),
    );
  } catch (error) {
    if (isS3Error(error, "NoSuchBucket")) {
      throw new UsageError(
        `bucket "${location.bucket}" does not exist (s3csv dev's bucket is s3csv-dev)`,
      );
    }
    throw error;
  } finally {
    s3.destroy();
  }
  process.stdout.write(`s3://${location.bucket}/${location.key} (${size} bytes)\n`);
}
