import { HeadObjectCommand } from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { JOB_NAME } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { isPartUpload } from "../support/s3Server.ts";
import { BUCKET, S3_BACKEND, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { enqueueArgs, eventually, job, queueFor, run, runCli, writeSchemaFile } from "./helpers.ts";

// What only a real S3 implementation shows (this file runs against Ceph RGW in CI, or an
// endpoint of your own, never the emulator, which has no ListParts): the ListParts cross-check
// of a resumed job, the object's real ETag where the server completes with an empty one, and
// whether the server checked the checksums it was sent.

const MiB = 1024 * 1024;
const SOURCE = "real/in.csv";

describe(`a real S3 implementation (${S3_BACKEND})`, () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  const data = peopleData({ rows: 80_000, invalidEvery: 50, pad: 120 });
  const workers: WorkerProcess[] = [];
  const held: Array<() => void> = [];

  const startWorker = () => {
    const w = spawnWorker(stack.env, { LOG_LEVEL: "info" });
    workers.push(w);
    return w;
  };

  beforeAll(async () => {
    stack = await startStack({
      PART_SIZE: String(5 * MiB),
      LOCK_DURATION_MS: "2000",
      STALLED_INTERVAL_MS: "500",
    });
    queue = queueFor(stack);
    await stack.put(SOURCE, data.csv);
  });
  afterEach(async () => {
    stack.s3Server.beforeRequest = undefined;
    for (const release of held.splice(0)) release();
    for (const w of workers.splice(0)) await w.kill();
  });
  afterAll(async () => {
    await queue?.close();
    await stack?.stop();
  });

  it("cross-checks a resumed job's parts with ListParts, and starts over an upload that differs", async () => {
    const key = "real/tampered.csv";
    const first = startWorker();
    stack.s3Server.beforeRequest = (r) =>
      isPartUpload(r, key, 2) ? new Promise<void>((resolve) => held.push(resolve)) : undefined;
    const added = await queue.add(JOB_NAME, job(SOURCE, key, peopleSchema));
    const jobId = added.id as string;
    const atKill = await eventually(async () => {
      const checkpoint = ((await queue.getJob(jobId))?.data as { checkpoint?: Checkpoint })
        ?.checkpoint;
      return checkpoint?.output.parts.length === 1 ? checkpoint : undefined;
    });
    await first.kill("SIGKILL");
    stack.s3Server.beforeRequest = undefined;
    for (const release of held.splice(0)) release();
    // The checkpoint now says part 1 has another ETag than the server stored.
    const tampered = {
      ...atKill,
      output: {
        ...atKill.output,
        parts: atKill.output.parts.map((p) => ({
          ...p,
          ETag: '"0123456789abcdef0123456789abcdef"',
        })),
      },
    };
    const stalled = await queue.getJob(jobId);
    await stalled?.updateData({ ...(stalled.data as object), checkpoint: tampered });
    const second = startWorker();
    const result = await waitForResult(queue, jobId, { timeoutMs: 90_000 });
    expect(result.restarted).toEqual([
      {
        output: "output",
        reason: expect.stringMatching(/not on the server as checkpointed \(ListParts\)/),
      },
    ]);
    expect((await stack.get(key)).equals(data.expectedOutput)).toBe(true);
    expect(rejectedRows(await stack.get("real/tampered.rejects.csv"))).toEqual(data.rejected);
    expect(await stack.openUploads()).toEqual([]);
    expect(second.output()).toMatch(/upload gone: output starts over/);
  });

  it("gives the object's own ETag, and says whether the server checked the checksums", async () => {
    const w = startWorker();
    const result = await run(queue, job(SOURCE, "real/etag.csv", peopleSchema));
    expect(result.parts).toBeGreaterThan(1);
    const head = await stack.s3.send(
      new HeadObjectCommand({ Bucket: BUCKET, Key: "real/etag.csv" }),
    );
    expect(result.output.etag).not.toBe("");
    expect(result.output.etag).toBe(head.ETag);
    // Ceph RGW 16 accepts CRC32 headers without checking them and returns none.
    if (S3_BACKEND === "rgw") {
      expect(result.checksums).toBe("not-verified");
      const schema = await writeSchemaFile("real-people", peopleSchema);
      const cli = await runCli(
        [...enqueueArgs(SOURCE, "real/etag-again.csv", schema), "--wait"],
        stack.env,
      );
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stdout).toContain("the S3 server returned no checksums");
      const said = w.output().match(/may not check them/g) ?? [];
      expect(said, "the worker says it once").toHaveLength(1);
    }
  });
});
