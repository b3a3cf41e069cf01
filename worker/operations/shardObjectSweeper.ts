import { DeleteObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { SHARD_DIR } from "../split/shardObjects.ts";
import { liveCheckpoints, type SweepOptions, sweepCutoff } from "./uploadSweeper.ts";

// The sweeper's second half: a split job's shards write temporary objects beside its
// destination, which the job deletes when it completes or fails for good. A job lost in a way
// its worker could not clean up (removed by hand, a lost Redis) leaves them: those that no
// live job's shards own and that are old enough are deleted here.

export interface SweptObject {
  key: string;
  lastModified: Date | undefined;
  action: "deleted" | "would-delete" | "kept: owned by a live job" | "kept: too recent";
}

/** The child job ids of every split job that may still run. */
async function liveShardIds(queue: Queue): Promise<Set<string>> {
  const owned = new Set<string>();
  for await (const { split } of liveCheckpoints(queue)) {
    for (const id of [...(split?.shards.map((s) => s.jobId) ?? []), ...(split?.retired ?? [])])
      owned.add(id);
  }
  return owned;
}

/** The child job id a temporary object's key names. */
function childOf(key: string): string {
  const name = key.slice(key.lastIndexOf(SHARD_DIR) + SHARD_DIR.length);
  return name.replace(/(\.rejects)?\.csv$/, "");
}

export async function sweepShardObjects(options: SweepOptions): Promise<SweptObject[]> {
  const { s3, bucket, dryRun } = options;
  const cutoff = sweepCutoff(options);
  // Owners first: an object a live job writes after this is too recent to sweep.
  const owned = await liveShardIds(options.queue);
  const swept: SweptObject[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      const key = object.Key ?? "";
      if (!key.includes(SHARD_DIR)) continue;
      const lastModified = object.LastModified;
      let action: SweptObject["action"];
      if (owned.has(childOf(key))) action = "kept: owned by a live job";
      else if (lastModified && lastModified.getTime() > cutoff) action = "kept: too recent";
      else if (dryRun) action = "would-delete";
      else {
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
        action = "deleted";
      }
      swept.push({ key, lastModified, action });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return swept;
}
