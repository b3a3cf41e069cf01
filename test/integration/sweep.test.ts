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
    const checkpoint = checkpointFixture(
      { bucket: BUCKET, key: "live/out.csv" },
      uploads["live/out.csv"],
    );
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

  it("refuses a bad duration with a clear message", async () => {
    const run = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "soon"], stack.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("not a duration like 90s, 30m, 6h or 2d");
  });
});
