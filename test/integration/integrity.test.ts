import { setTimeout as sleep } from "node:timers/promises";
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand } from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { JOB_NAME, queueSettings, transformQueue } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { recordKeys } from "../../worker/checkpoint/checkpointStore.ts";
import { type PeopleData, peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { isPartUpload } from "../support/s3Server.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, queueFor } from "./helpers.ts";

// What a job's outputs must survive besides a crash: uploads that vanish (aborted when the job
// failed for good, or by hand), carried text that expired, and job data that lies.

const MiB = 1024 * 1024;
const SOURCE = "integrity/in.csv";

describe("integrity: retries, vanished uploads, untrusted job data", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let data: PeopleData;
  let redis: Redis;
  const workers: WorkerProcess[] = [];
  const held: Array<() => void> = [];

  const startWorker = () => {
    const w = spawnWorker(stack.env);
    workers.push(w);
    return w;
  };
  const checkpointOf = async (jobId: string) =>
    ((await queue.getJob(jobId))?.data as { checkpoint?: Checkpoint } | undefined)?.checkpoint;
  const jobKeyOf = (jobId: string) =>
    queueKeys(stack.config.QUEUE_PREFIX, stack.config.QUEUE_NAME).job(jobId);
  const openUploads = async (key: string) =>
    (await stack.openUploads()).filter((u) => u.key === key);

  async function expectExact(name: string, result: JobResult): Promise<void> {
    expect((await stack.get(`${name}/out.csv`)).equals(data.expectedOutput), "output").toBe(true);
    expect(rejectedRows(await stack.get(`${name}/out.rejects.csv`))).toEqual(data.rejected);
    expect(result.rows.read).toBe(data.rows);
    expect(result.rows.rejected).toBe(data.rejected.length);
    expect(await openUploads(`${name}/out.csv`)).toEqual([]);
    expect(await openUploads(`${name}/out.rejects.csv`)).toEqual([]);
  }

  /** Runs the job until `parts` output parts are checkpointed, then SIGKILLs its worker. */
  async function killAfterParts(
    name: string,
    parts: number,
    source = SOURCE,
    schema: unknown = peopleSchema,
  ) {
    const key = `${name}/out.csv`;
    const first = startWorker();
    stack.s3Server.beforeRequest = (r) =>
      isPartUpload(r, key, parts + 1)
        ? new Promise<void>((resolve) => held.push(resolve))
        : undefined;
    const added = await queue.add(JOB_NAME, job(source, key, schema));
    const jobId = added.id as string;
    const atKill = await eventually(async () => {
      const checkpoint = await checkpointOf(jobId);
      return checkpoint?.output.parts.length === parts ? checkpoint : undefined;
    });
    await first.kill("SIGKILL");
    stack.s3Server.beforeRequest = undefined;
    for (const release of held.splice(0)) release();
    return { jobId, atKill };
  }

  beforeAll(async () => {
    stack = await startStack({
      PART_SIZE: String(5 * MiB),
      LOCK_DURATION_MS: "2000",
      STALLED_INTERVAL_MS: "500",
      S3_MAX_ATTEMPTS: "1",
    });
    queue = queueFor(stack);
    redis = new Redis(stack.redis.port, "127.0.0.1");
    // Five output parts: with part 2 held, reading stops well before the end of the source.
    data = peopleData({ rows: 150_000, invalidEvery: 50, pad: 120 });
    await stack.put(SOURCE, data.csv);
  });

  afterEach(async () => {
    stack.s3Server.beforeRequest = undefined;
    for (const release of held.splice(0)) release();
    for (const w of workers.splice(0)) await w.kill();
  });

  afterAll(async () => {
    redis?.disconnect();
    await queue?.close();
    await stack?.stop();
  });

  it("a job that failed for good aborts its uploads, and a retry of it completes exactly", async () => {
    const key = "failed-for-good/out.csv";
    startWorker();
    // Part 2 of the output always fails, so the job's only attempt fails for good.
    stack.s3Server.beforeRequest = (r) =>
      isPartUpload(r, key, 2) ? { status: 500, code: "InternalError" } : undefined;
    const once = transformQueue({ ...queueSettings(stack.config), attempts: 1 });
    const added = await once.add(JOB_NAME, job(SOURCE, key, peopleSchema));
    await once.close();
    const jobId = added.id as string;
    // The 500 is sent before the part's body is read: the client sees it, or, when it is still
    // writing the body, a broken pipe (EPIPE, ECONNRESET) for the same refused part.
    await expect(waitForResult(queue, jobId, { timeoutMs: 60_000 })).rejects.toThrow(
      /InternalError|injected|EPIPE|ECONNRESET/,
    );
    expect(await openUploads(key), "the final failure aborted the upload").toEqual([]);
    const failed = await checkpointOf(jobId);
    expect(failed?.output.uploadId, "the checkpoint names no aborted upload").toBeUndefined();

    // What Bull Board's Retry button does.
    stack.s3Server.beforeRequest = undefined;
    await (await queue.getJob(jobId))?.retry("failed");
    const result = await waitForResult(queue, jobId, { timeoutMs: 60_000 });
    await expectExact("failed-for-good", result);
  });

  it("starts an output over when its upload was aborted while no worker ran the job", async () => {
    const { jobId, atKill } = await killAfterParts("aborted", 1);
    await stack.s3.send(
      new AbortMultipartUploadCommand({
        Bucket: BUCKET,
        Key: "aborted/out.csv",
        UploadId: atKill.output.uploadId,
      }),
    );
    startWorker();
    const result = await waitForResult(queue, jobId, { timeoutMs: 60_000 });
    await expectExact("aborted", result);
    expect(result.restarted).toEqual([
      { output: "output", reason: expect.stringMatching(/aborted/) },
    ]);
  });

  it("starts the output over while a multipart report keeps its point, unique ids replayed", async () => {
    // Half the rows invalid (the report has parts of its own), and ids that must be unique:
    // the duplicates at the end repeat ids from before the restart.
    const base = peopleData({ rows: 120_000, invalidEvery: 2, pad: 120 });
    const firstRows = base.csv.toString("utf8").split("\n").slice(1, 101).join("\n");
    await stack.put("restart-big/in.csv", Buffer.concat([base.csv, Buffer.from(`${firstRows}\n`)]));
    const uniqueSchema = {
      ...peopleSchema,
      fields: peopleSchema.fields.map((f) =>
        f.name === "id" ? { ...f, constraints: { ...f.constraints, unique: true } } : f,
      ),
    };
    // The same job, uninterrupted, is the reference.
    startWorker();
    const clean = await waitForResult(
      queue,
      (await queue.add(JOB_NAME, job("restart-big/in.csv", "restart-clean/out.csv", uniqueSchema)))
        .id as string,
      { timeoutMs: 90_000 },
    );
    for (const w of workers.splice(0)) await w.kill("SIGTERM");
    const { jobId, atKill } = await killAfterParts(
      "restart-big",
      1,
      "restart-big/in.csv",
      uniqueSchema,
    );
    expect(atKill.rejects.parts.length, "the report has parts of its own").toBeGreaterThan(0);
    await stack.s3.send(
      new AbortMultipartUploadCommand({
        Bucket: BUCKET,
        Key: "restart-big/out.csv",
        UploadId: atKill.output.uploadId,
      }),
    );
    startWorker();
    const result = await waitForResult(queue, jobId, { timeoutMs: 90_000 });
    expect(result.restarted.map((r) => r.output)).toEqual(["output"]);
    expect(result.rows).toEqual(clean.rows);
    expect(result.rows.errors["unique-error"]).toBeGreaterThan(0);
    for (const name of ["out.csv", "out.rejects.csv"]) {
      const [got, want] = await Promise.all([
        stack.get(`restart-big/${name}`),
        stack.get(`restart-clean/${name}`),
      ]);
      expect(got.equals(want), name).toBe(true);
    }
    expect(await stack.openUploads()).toEqual([]);
  });

  it("starts the reject report over when its carried text expired", async () => {
    const { jobId, atKill } = await killAfterParts("expired", 1);
    expect(atKill.rejects.carry).toBeDefined();
    await redis.del(atKill.rejects.carry?.key as string);
    startWorker();
    const result = await waitForResult(queue, jobId, { timeoutMs: 60_000 });
    await expectExact("expired", result);
    expect(result.restarted).toEqual([
      { output: "rejects", reason: expect.stringMatching(/expired or was removed/) },
    ]);
  });

  it("loses nothing when a part fails while a report part completes after it", async () => {
    // Half the rows are invalid: the report is multipart too, and its first part is held.
    const big = peopleData({ rows: 200_000, invalidEvery: 2, pad: 150 });
    await stack.put("failed-part/in.csv", big.csv);
    const key = "failed-part/out.csv";
    const reportParts: Array<() => void> = [];
    let failPart2: (() => void) | undefined;
    stack.s3Server.beforeRequest = (r) => {
      // The report's first part only: the job's two slots (PARTS_IN_FLIGHT, shared by its
      // outputs) hold it and the output's second part.
      if (isPartUpload(r, "failed-part/out.rejects.csv") && reportParts.length === 0)
        return new Promise<void>((resolve) => reportParts.push(resolve));
      if (isPartUpload(r, key, 2) && r.query.partNumber === "2" && !failPart2)
        return new Promise((resolve) => {
          failPart2 = () => resolve({ status: 500, code: "InternalError" });
        });
      return undefined;
    };
    startWorker();
    const added = await queue.add(JOB_NAME, job("failed-part/in.csv", key, peopleSchema));
    const jobId = added.id as string;
    await eventually(() => (failPart2 && reportParts.length >= 1 ? true : undefined));
    failPart2?.();
    // The attempt now fails; the report's parts complete while it settles, and checkpoint.
    await sleep(500);
    stack.s3Server.beforeRequest = undefined;
    for (const release of reportParts.splice(0)) release();
    const afterFailure = await eventually(async () => {
      const checkpoint = await checkpointOf(jobId);
      return checkpoint && checkpoint.rejects.parts.length > 0 ? checkpoint : undefined;
    });
    expect(afterFailure.output.parts.map((p) => p.PartNumber)).toEqual([1]);
    expect(afterFailure.output.carry, "no text carried past the failed part").toBeUndefined();
    const result = await waitForResult(queue, jobId, { timeoutMs: 90_000 });
    expect(result.resumes).toBeGreaterThanOrEqual(1);
    expect((await stack.get(key)).equals(big.expectedOutput), "output").toBe(true);
    expect(rejectedRows(await stack.get("failed-part/out.rejects.csv"))).toEqual(big.rejected);
  });

  it("starts an output over when the job keeps no record of its upload (older s3csv, expired)", async () => {
    const { jobId, atKill } = await killAfterParts("unrecorded", 1);
    await redis.del(recordKeys(jobKeyOf(jobId)).uploads);
    startWorker();
    const result = await waitForResult(queue, jobId, { timeoutMs: 60_000 });
    expect(result.restarted).toEqual([
      { output: "output", reason: expect.stringMatching(/keeps no record of upload/) },
    ]);
    expect((await stack.get("unrecorded/out.csv")).equals(data.expectedOutput)).toBe(true);
    expect(rejectedRows(await stack.get("unrecorded/out.rejects.csv"))).toEqual(data.rejected);
    // Nothing says the upload is this job's: it is left alone (to the lifecycle rule).
    const left = await openUploads("unrecorded/out.csv");
    expect(left.map((u) => u.uploadId)).toEqual([atKill.output.uploadId]);
    await stack.s3.send(
      new AbortMultipartUploadCommand({
        Bucket: BUCKET,
        Key: "unrecorded/out.csv",
        UploadId: atKill.output.uploadId,
      }),
    );
  });

  it("refuses a checkpoint naming an upload the job's record does not hold, leaving it open", async () => {
    const { jobId } = await killAfterParts("foreign", 1);
    const other = await stack.s3.send(
      new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "foreign/out.csv" }),
    );
    const stored = await queue.getJob(jobId);
    const data = stored?.data as { checkpoint: Checkpoint };
    const output = { ...data.checkpoint.output, uploadId: other.UploadId };
    await stored?.updateData({ ...data, checkpoint: { ...data.checkpoint, output } });
    startWorker();
    await expect(waitForResult(queue, jobId, { timeoutMs: 30_000 })).rejects.toThrow(
      /checkpoint is not this job's own \(its output names upload .*, which this job did not create for it\)/,
    );
    expect((await queue.getJob(jobId))?.attemptsMade, "not retried").toBe(1);
    const open = (await openUploads("foreign/out.csv")).map((u) => u.uploadId);
    expect(open, "the other upload is not this job's to abort").toContain(other.UploadId);
    for (const uploadId of open) {
      await stack.s3.send(
        new AbortMultipartUploadCommand({
          Bucket: BUCKET,
          Key: "foreign/out.csv",
          UploadId: uploadId,
        }),
      );
    }
  });

  describe("refuses a checkpoint that is not the job's own, at once", () => {
    const key = "forged/out.csv";
    let real: Checkpoint;

    beforeAll(async () => {
      const w = startWorker();
      const added = await queue.add(JOB_NAME, job(SOURCE, key, peopleSchema));
      await waitForResult(queue, added.id as string, { timeoutMs: 60_000 });
      real = (await checkpointOf(added.id as string)) as Checkpoint;
      expect(real.output.parts.length).toBeGreaterThan(1);
      await w.kill("SIGTERM");
    });

    async function failureOf(payload: Record<string, unknown>): Promise<string> {
      startWorker();
      const forged = await queue.add(JOB_NAME, payload, { attempts: 5 });
      const message = await waitForResult(queue, forged.id as string, { timeoutMs: 30_000 }).then(
        () => "completed",
        (error: Error) => error.message,
      );
      expect((await queue.getJob(forged.id as string))?.attemptsMade, "not retried").toBe(1);
      return message;
    }

    it("a carry key outside the job's keys", async () => {
      const checkpoint = {
        ...real,
        rejects: {
          ...real.rejects,
          carry: { key: "bull:csv-transform:other-job:carry:x", bytes: 10 },
        },
      };
      expect(await failureOf({ ...job(SOURCE, key, peopleSchema), checkpoint })).toMatch(
        /checkpoint is not this job's own \(its rejects carry key .* is not one of this job's keys/,
      );
    });

    it("parts of an upload on another key", async () => {
      const checkpoint = { ...real, output: { ...real.output, key: "someone-else/out.csv" } };
      expect(await failureOf({ ...job(SOURCE, key, peopleSchema), checkpoint })).toMatch(
        /checkpoint is not this job's own \(its output is s3:\/\/s3csv-test\/someone-else\/out.csv/,
      );
    });

    it("a resume point past the source's end", async () => {
      const offset = real.source.size + 1000;
      const mark = { ...real.output.mark, offset };
      const checkpoint = { ...real, output: { ...real.output, mark } };
      expect(await failureOf({ ...job(SOURCE, key, peopleSchema), checkpoint })).toMatch(
        new RegExp(`its output resumes at byte ${offset} of a ${real.source.size}-byte source`),
      );
    });

    it("a checkpoint for another version of the source", async () => {
      const checkpoint = { ...real, source: { ...real.source, versionId: "v1" } };
      const payload = {
        ...job(SOURCE, key, peopleSchema),
        source: { bucket: BUCKET, key: SOURCE, versionId: "v2" },
        checkpoint,
      };
      expect(await failureOf(payload)).toMatch(/it is for version v1 of the source, not v2/);
    });

    it("a payload over MAX_JOB_BYTES, checkpoint or not", async () => {
      const huge = { ...peopleSchema, description: "x".repeat(stack.config.MAX_JOB_BYTES) };
      expect(await failureOf({ ...job(SOURCE, key, huge), checkpoint: real })).toMatch(
        /more than MAX_JOB_BYTES/,
      );
    });
  });
});
