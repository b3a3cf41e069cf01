import { CreateMultipartUploadCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOB_NAME } from "../../producer/enqueue.ts";
import type { JobResult } from "../../shared/job.ts";
import { checkpointFixture } from "../support/checkpointFixture.ts";
import { peopleSchema } from "../support/peopleData.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { job, queueFor, runCli } from "./helpers.ts";

// The sweeper needs ListMultipartUploads, which the npm emulator lacks: this file's emulator is
// extended with that one route over its own store (test/support/s3Server.ts).

describe("s3csv sweep", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  const uploads: Record<string, string> = {};

  beforeAll(async () => {
    stack = await startStack({}, { listMultipartUploads: true });
    queue = queueFor(stack);
    for (const key of ["orphan/a.csv", "orphan/b.csv", "live/out.csv"]) {
      const { UploadId } = await stack.s3.send(
        new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }),
      );
      await stack.s3.send(
        new UploadPartCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId,
          PartNumber: 1,
          Body: Buffer.from("x"),
        }),
      );
      uploads[key] = UploadId as string;
    }
    // A waiting job (no worker runs in this file) whose checkpoint owns live/out.csv's upload.
    const checkpoint = {
      ...checkpointFixture({ bucket: BUCKET, key: "live/out.csv" }, uploads["live/out.csv"]),
      // It is a split job's parent, whose shards' temporary objects are its own.
      split: {
        shards: [
          { jobId: "live-shard-0-aaaa", start: 0, end: 5, pinned: true },
          { jobId: "live-shard-1-bbbb", start: 5, end: 10, pinned: false },
        ],
        retired: ["live-shard-1-cccc"],
        redone: 1,
        header: null,
        columns: 1,
      },
    };
    await queue.add(JOB_NAME, { ...job("live/in.csv", "live/out.csv", peopleSchema), checkpoint });
  });
  afterAll(async () => {
    await queue?.close();
    await stack?.stop();
  });

  const open = async () => (await stack.openUploads()).map((u) => u.key).sort();

  it("reports, in a dry run, what it would abort and what a live job owns", async () => {
    const run = await runCli(
      ["sweep", "--bucket", BUCKET, "--older-than", "0s", "--dry-run", "--json"],
      stack.env,
    );
    expect(run.stderr).toBe("");
    const swept = JSON.parse(run.stdout) as Array<{ key: string; action: string }>;
    expect(swept.map((u) => [u.key, u.action])).toEqual([
      ["live/out.csv", "kept: owned by a live job"],
      ["orphan/a.csv", "would-abort"],
      ["orphan/b.csv", "would-abort"],
    ]);
    expect(await open()).toEqual(["live/out.csv", "orphan/a.csv", "orphan/b.csv"]);
  });

  it("keeps uploads younger than --older-than", async () => {
    const run = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "1h"], stack.env);
    expect(run.stdout).toContain("3 open uploads; 0 aborted");
    expect(await open()).toHaveLength(3);
  });

  it("aborts the uploads no live job owns", async () => {
    const run = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "0s"], stack.env);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("3 open uploads; 2 aborted");
    expect(await open()).toEqual(["live/out.csv"]);
  });

  it("deletes the shard objects of split jobs that are gone, keeping a live one's", async () => {
    const keys = [
      "live/out.csv.s3csv-shards/live-shard-0-aaaa.csv",
      "live/out.csv.s3csv-shards/live-shard-1-cccc.rejects.csv",
      "gone/out.csv.s3csv-shards/gone-shard-0-dddd.csv",
      "gone/out.csv.s3csv-shards/gone-shard-0-dddd.rejects.csv",
    ];
    for (const key of keys) await stack.put(key, "x\n");
    const dry = await runCli(
      ["sweep", "--bucket", BUCKET, "--older-than", "0s", "--dry-run", "--json"],
      stack.env,
    );
    const listed = JSON.parse(dry.stdout) as Array<{ key: string; action: string }>;
    expect(
      listed.filter((o) => o.key.includes(".s3csv-shards/")).map((o) => [o.key, o.action]),
    ).toEqual([
      [keys[2], "would-delete"],
      [keys[3], "would-delete"],
      [keys[0], "kept: owned by a live job"],
      [keys[1], "kept: owned by a live job"],
    ]);
    const run = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "0s"], stack.env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("4 shard objects; 2 deleted");
    await expect(stack.get(keys[2] as string)).rejects.toThrow();
    expect((await stack.get(keys[0] as string)).toString()).toBe("x\n");
  });

  it("refuses a bad duration with a clear message", async () => {
    const run = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "soon"], stack.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("not a duration like 90s, 30m, 6h or 2d");
  });
});
