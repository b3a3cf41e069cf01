import { queueSettings, transformQueue } from "../../producer/enqueue.ts";
import { parseCommandLine } from "../../shared/commandLine.ts";
import { loadConfig } from "../../shared/config.ts";
import { plural } from "../../shared/plural.ts";
import { assertRedisReachable } from "../../shared/redisReachable.ts";
import { createS3Client } from "../../shared/s3Client.ts";
import { UsageError } from "../../shared/usageError.ts";
import { MIN_SWEEP_AGE_MS, parseDuration, type Swept, sweep } from "./registrySweeper.ts";

export const usage = `s3csv sweep --bucket BUCKET [--older-than DURATION] [--dry-run] [--json]

Aborts the multipart uploads and deletes the split jobs' temporary shard objects that this
queue's jobs made in BUCKET (the queue's registry in Redis names each, with its job) when that
job is gone or finished and the thing is older than DURATION (default 24h; at least 15m; 30m,
6h, 2d). Nothing the registry does not name is touched: another tool's uploads, another
queue's (run it once per QUEUE_NAME). --dry-run only reports, item by item. Needs
s3:AbortMultipartUpload, s3:ListBucketMultipartUploads and s3:DeleteObject.`;

export async function sweepCommand(argv: string[]): Promise<void> {
  const { values } = parseCommandLine(
    {
      args: argv,
      options: {
        bucket: { type: "string" },
        "older-than": { type: "string", default: "24h" },
        "dry-run": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
      },
    },
    { "older-than": `a duration of ${MIN_SWEEP_AGE_MS / 60_000}m or more, like 30m, 6h or 2d` },
  );
  if (!values.bucket) throw new UsageError("--bucket BUCKET is required");
  let olderThanMs: number;
  try {
    olderThanMs = parseDuration(values["older-than"]);
  } catch (error) {
    throw new UsageError(`--older-than: ${(error as Error).message}`);
  }
  if (olderThanMs < MIN_SWEEP_AGE_MS) {
    throw new UsageError(
      `--older-than ${values["older-than"]} is less than the minimum, ${MIN_SWEEP_AGE_MS / 60_000}m: a worker may still be creating an upload that young; pass --older-than ${MIN_SWEEP_AGE_MS / 60_000}m or more`,
    );
  }
  const config = loadConfig();
  await assertRedisReachable(config);
  const s3 = createS3Client(config);
  const queue = transformQueue(queueSettings(config));
  try {
    const swept = await sweep({
      s3,
      queue,
      bucket: values.bucket,
      olderThanMs,
      dryRun: values["dry-run"],
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(swept)}\n`);
      return;
    }
    for (const item of swept) {
      const url = `s3://${values.bucket}/${item.key}`;
      process.stdout.write(
        `${item.action.padEnd(26)} ${url} ${item.uploadId ?? ""} job ${item.job} ${item.since.toISOString()}\n`,
      );
    }
    process.stdout.write(summary(swept, values["dry-run"]));
  } finally {
    s3.destroy();
    await queue.close();
  }
}

function summary(swept: readonly Swept[], dryRun: boolean): string {
  const count = (kind: Swept["kind"], actions: Swept["action"][]) =>
    swept.filter((s) => s.kind === kind && actions.includes(s.action)).length;
  const uploads = swept.filter((s) => s.kind === "upload").length;
  const objects = swept.filter((s) => s.kind === "shard-object").length;
  const aborted = count("upload", ["aborted", "would-abort"]);
  const deleted = count("shard-object", ["deleted", "would-delete"]);
  return (
    `${plural(uploads, "upload")} of this queue's jobs; ${aborted} ${dryRun ? "would be aborted" : "aborted"}\n` +
    `${plural(objects, "shard object")} of this queue's jobs; ${deleted} ${dryRun ? "would be deleted" : "deleted"}\n`
  );
}
