import { randomUUID } from "node:crypto";
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { JobData, SplitState } from "../../shared/job.ts";
import { isS3Error } from "../../shared/s3Errors.ts";

// The temporary objects of a split job's shards: where they are, reading them back, and
// deleting them once the job's outputs are composed (or it failed for good). They sit under
// `<destination key>.s3csv-shards/`, which `s3csv sweep` also looks at.

export const SHARD_DIR = ".s3csv-shards/";

/** Where a child writes its temporary output and report: beside the destination. */
export function shardObjects(data: Pick<JobData, "destination">, childId: string) {
  const { bucket, key } = data.destination;
  return {
    output: { bucket, key: `${key}${SHARD_DIR}${childId}.csv` },
    rejects: { bucket, key: `${key}${SHARD_DIR}${childId}.rejects.csv` },
  };
}

/** A new child's job id: the parent's, the shard's index, and a part no earlier child had. */
export function childJobId(parentId: string, index: number): string {
  return `${parentId}-shard-${index}-${randomUUID().slice(0, 8)}`;
}

/** Bytes [start, end) of an object as its shard completed it (If-Match its ETag). */
export async function* readObject(
  s3: S3Client,
  object: { bucket: string; key: string; etag: string },
  start?: number,
  end?: number,
): AsyncGenerator<Uint8Array> {
  if (start !== undefined && end !== undefined && start >= end) return;
  const response = await s3.send(
    new GetObjectCommand({
      Bucket: object.bucket,
      Key: object.key,
      IfMatch: object.etag,
      ...(start !== undefined && end !== undefined ? { Range: `bytes=${start}-${end - 1}` } : {}),
    }),
  );
  yield* response.Body as AsyncIterable<Uint8Array>;
}

/** Deletes every shard's temporary objects, those of redone shards too (gone ones are fine). */
export async function deleteShardObjects(
  s3: S3Client,
  data: Pick<JobData, "destination">,
  split: SplitState,
): Promise<void> {
  const ids = [...split.shards.map((s) => s.jobId), ...split.retired];
  const objects = ids.flatMap((id) => Object.values(shardObjects(data, id)));
  for (let i = 0; i < objects.length; i += 16) {
    await Promise.all(
      objects.slice(i, i + 16).map((o) =>
        s3.send(new DeleteObjectCommand({ Bucket: o.bucket, Key: o.key })).catch((error) => {
          if (!isS3Error(error, "NoSuchKey")) throw error;
        }),
      ),
    );
  }
}
