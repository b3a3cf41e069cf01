import { parseArgs } from "node:util";
import { queueSettings, transformQueue } from "../../producer/enqueue.ts";
import { loadConfig } from "../../shared/config.ts";
import { createS3Client } from "../../shared/s3Client.ts";
import { UsageError } from "../../shared/usageError.ts";
import { sweepShardObjects } from "./shardObjectSweeper.ts";
import { parseDuration, sweepUploads } from "./uploadSweeper.ts";

export const usage = `s3csv sweep --bucket BUCKET [--older-than DURATION] [--dry-run] [--json]

Lists the bucket's open multipart uploads and aborts those that no live job (active, waiting,
delayed) has in its checkpoint and that are older than DURATION (default 24h; 90s, 30m, 6h, 2d).
Then deletes split jobs' temporary shard objects (keys with ".s3csv-shards/") that no live job
owns and that are older than DURATION. --dry-run only reports. Needs s3:ListBucketMultipartUploads,
s3:AbortMultipartUpload, s3:ListBucket and s3:DeleteObject.`;

export async function sweepCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      bucket: { type: "string" },
      "older-than": { type: "string", default: "24h" },
      "dry-run": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  if (!values.bucket) throw new UsageError("--bucket BUCKET is required");
  let olderThanMs: number;
  try {
    olderThanMs = parseDuration(values["older-than"]);
  } catch (error) {
    throw new UsageError(`--older-than: ${(error as Error).message}`);
  }
  const config = loadConfig();
  const s3 = createS3Client(config);
  const queue = transformQueue(queueSettings(config));
  try {
    const sweep = { s3, queue, bucket: values.bucket, olderThanMs, dryRun: values["dry-run"] };
    const swept = await sweepUploads(sweep);
    const objects = await sweepShardObjects(sweep);
    if (values.json) {
      process.stdout.write(`${JSON.stringify([...swept, ...objects])}\n`);
      return;
    }
    for (const u of swept) {
      process.stdout.write(
        `${u.action.padEnd(26)} s3://${values.bucket}/${u.key} ${u.uploadId} ${u.initiated?.toISOString() ?? ""}\n`,
      );
    }
    const aborted = swept.filter(
      (u) => u.action === "aborted" || u.action === "would-abort",
    ).length;
    process.stdout.write(
      `${swept.length} open uploads; ${aborted} ${values["dry-run"] ? "would be aborted" : "aborted"}\n`,
    );
    for (const o of objects) {
      process.stdout.write(
        `${o.action.padEnd(26)} s3://${values.bucket}/${o.key} ${o.lastModified?.toISOString() ?? ""}\n`,
      );
    }
    if (objects.length > 0) {
      const deleted = objects.filter((o) => o.action === "deleted" || o.action === "would-delete");
      process.stdout.write(
        `${objects.length} shard objects; ${deleted.length} ${values["dry-run"] ? "would be deleted" : "deleted"}\n`,
      );
    }
  } finally {
    s3.destroy();
    await queue.close();
  }
}
