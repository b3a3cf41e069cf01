import { CreateMultipartUploadCommand } from "@aws-sdk/client-s3";
import { type Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { enqueueTransform, queueSettings, transformQueue } from "../../producer/enqueue.ts";
import { loadConfig } from "../../shared/config.ts";
import type { JobResult } from "../../shared/job.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { sweep } from "../../worker/operations/registrySweeper.ts";
import { UploadRegistry } from "../../worker/operations/uploadRegistry.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { isPartUpload } from "../support/s3Server.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, queueFor, runCli } from "./helpers.ts";

// s3csv sweep touches only what a queue's own jobs made, as the queue's registry in Redis names
// it, and only once that job is gone or finished: another tool's upload in the same bucket, a
// key that merely looks like a shard object, another queue's live upload are never touched.
// Real workers leave the uploads (killed mid-job, their jobs then removed by hand).

const MiB = 1024 * 1024;
const LATER = () => new Date(Date.now() + 60 * 60_000);
const HOUR = 60 * 60_000;

describe("s3csv sweep", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let other: Queue<unknown, JobResult>;
  let redis: Redis;
  const workers: WorkerProcess[] = [];
  const held: Array<() => void> = [];
  let foreignUpload = "";

  beforeAll(async () => {
    stack = await startStack(
      { PART_SIZE: String(5 * MiB), LOCK_DURATION_MS: "1000", STALLED_INTERVAL_MS: "500" },
      { listMultipartUploads: true },
    );
    queue = queueFor(stack);
    other = transformQueue(queueSettings(loadConfig({ ...stack.env, QUEUE_NAME: "other" })));
    redis = new Redis(stack.redis.url);
    await stack.put("in/people.csv", peopleData({ rows: 60_000, invalidEvery: 500, pad: 120 }).csv);
    // Another tool's upload in the same bucket, and an object that only looks like s3csv's.
    const created = await stack.s3.send(
      new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "backup/db.tar" }),
    );
    foreignUpload = created.UploadId ?? "";
    await stack.put("other/x.csv.s3csv-shards/not-ours.csv", "x\n");
  }, 120_000);
  afterEach(async () => {
    stack.s3Server.beforeRequest = undefined;
    stack.s3Server.beforeResponse = undefined;
    for (const release of held.splice(0)) release();
    for (const w of workers.splice(0)) await w.kill();
  });
  afterAll(async () => {
    redis?.disconnect();
    await other?.close();
    await queue?.close();
    await stack?.stop();
  });

  const hold = () =>
    new Promise<void>((resolve) => {
      held.push(resolve);
    });

  /**
   * A job of `q` whose worker dies after its output's first part: its upload stays open and
   * registered. With `remove`, the job is then removed by hand, as an operator might.
   */
  async function leftBehind(q: Queue<unknown, JobResult>, dest: string, remove: boolean) {
    const w = spawnWorker({ ...stack.env, QUEUE_NAME: q.name });
    workers.push(w);
    stack.s3Server.beforeRequest = (r) => (isPartUpload(r, dest, 2) ? hold() : undefined);
    const id = await enqueueTransform(job("in/people.csv", dest, peopleSchema), { queue: q });
    await eventually(async () => {
      const uploads = await stack.openUploads();
      return uploads.some((u) => u.key === dest) ? true : undefined;
    });
    await w.kill("SIGKILL");
    stack.s3Server.beforeRequest = undefined;
    for (const release of held.splice(0)) release();
    if (remove) {
      // Once the dead worker's lock has expired, the job can be removed.
      await eventually(async () => {
        const removed = await q.remove(id).catch(() => 0);
        return removed === 1 ? true : undefined;
      });
    }
    return id;
  }

  const open = async () => (await stack.openUploads()).map((u) => u.key).sort();

  it("aborts only what a gone job of its own queue made; keeps live jobs', other queues' and other tools' uploads", async () => {
    await leftBehind(queue, "gone/out.csv", true);
    await leftBehind(queue, "live/out.csv", false);
    await leftBehind(other, "other-queue/out.csv", false);
    expect(await open()).toEqual([
      "backup/db.tar",
      "gone/out.csv",
      "live/out.csv",
      "other-queue/out.csv",
    ]);

    const dry = await sweep({
      s3: stack.s3,
      queue,
      bucket: BUCKET,
      olderThanMs: HOUR / 4,
      dryRun: true,
      now: LATER(),
    });
    expect(dry.map((s) => [s.key, s.action]).sort()).toEqual([
      ["gone/out.csv", "would-abort"],
      ["live/out.csv", "kept: owned by a live job"],
    ]);
    // Nothing changed in a dry run.
    expect(await open()).toHaveLength(4);

    const swept = await sweep({
      s3: stack.s3,
      queue,
      bucket: BUCKET,
      olderThanMs: HOUR / 4,
      dryRun: false,
      now: LATER(),
    });
    expect(swept.filter((s) => s.action === "aborted").map((s) => s.key)).toEqual(["gone/out.csv"]);
    expect(await open()).toEqual(["backup/db.tar", "live/out.csv", "other-queue/out.csv"]);
    // The other queue's sweep keeps its live job's upload too; nobody's sweep sees the tool's.
    const theirs = await sweep({
      s3: stack.s3,
      queue: other,
      bucket: BUCKET,
      olderThanMs: HOUR / 4,
      dryRun: false,
      now: LATER(),
    });
    expect(theirs.map((s) => [s.key, s.action])).toEqual([
      ["other-queue/out.csv", "kept: owned by a live job"],
    ]);
    expect(await open()).toContain("backup/db.tar");
    expect((await stack.openUploads()).find((u) => u.key === "backup/db.tar")?.uploadId).toBe(
      foreignUpload,
    );
  });

  it("refuses an --older-than under its minimum, naming it, and reports by item in a dry run", async () => {
    const short = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "2s"], stack.env);
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/--older-than 2s is less than the minimum, 15m/);
    const zero = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "0"], stack.env);
    expect(zero.code).toBe(2);
    const dry = await runCli(
      ["sweep", "--bucket", BUCKET, "--older-than", "15m", "--dry-run", "--json"],
      stack.env,
    );
    expect(dry.code, dry.stderr).toBe(0);
    const items = JSON.parse(dry.stdout) as Array<{ key: string; action: string; job: string }>;
    // The live job's upload from the first test; nothing of another tool or queue.
    expect(items.map((i) => [i.key, i.action])).toEqual([
      ["live/out.csv", "kept: owned by a live job"],
    ]);
    const text = await runCli(
      ["sweep", "--bucket", BUCKET, "--older-than", "15m", "--dry-run"],
      stack.env,
    );
    expect(text.stdout).toContain("1 upload of this queue's jobs; 0 would be aborted");
  });

  it("aborts the upload a gone job was creating when it died (between CreateMultipartUpload and its record)", async () => {
    const dest = "creating/out.csv";
    const w = spawnWorker(stack.env);
    workers.push(w);
    let killed = false;
    stack.s3Server.beforeResponse = async (r) => {
      // The upload exists on the server; its id never reaches the worker.
      if (
        !killed &&
        r.method === "POST" &&
        r.query.uploads !== undefined &&
        r.url.includes(`/${dest}?`)
      ) {
        killed = true;
        await w.kill("SIGKILL");
      }
    };
    const id = await enqueueTransform(job("in/people.csv", dest, peopleSchema), { queue });
    await eventually(() => (killed ? true : undefined));
    stack.s3Server.beforeResponse = undefined;
    await eventually(async () =>
      (await queue.remove(id).catch(() => 0)) === 1 ? true : undefined,
    );
    expect(await open()).toContain(dest);
    const swept = await sweep({
      s3: stack.s3,
      queue,
      bucket: BUCKET,
      olderThanMs: HOUR / 4,
      dryRun: false,
      now: LATER(),
    });
    expect(swept.filter((s) => s.key === dest).map((s) => s.action)).toEqual(["aborted"]);
    expect(await open()).not.toContain(dest);
  });

  it("judges every registered job at one instant while jobs move between states", async () => {
    // 300 waiting jobs, each with an upload in the registry (as workers register them), and
    // 20 entries of jobs that are gone; 30 jobs move to active while the sweep runs.
    const keys = queueKeys(stack.config.QUEUE_PREFIX, queue.name);
    const added = await queue.addBulk(
      Array.from({ length: 300 }, (_, i) => ({
        name: "transform",
        data: job("in/people.csv", `moving/${i}.csv`, peopleSchema),
      })),
    );
    const old = Date.now() - 2 * HOUR;
    const entry = (key: string, jobId: string) =>
      JSON.stringify({ bucket: BUCKET, key, job: jobId, at: old });
    for (const [i, j] of added.entries())
      await redis.hset(keys.registry, `u:live-${i}`, entry(`moving/${i}.csv`, j.id ?? ""));
    for (let i = 0; i < 20; i++)
      await redis.hset(keys.registry, `u:gone-${i}`, entry(`gone/${i}.csv`, `no-such-job-${i}`));
    const mover = new Worker(queue.name, null, {
      connection: new Redis(stack.redis.url, { maxRetriesPerRequest: null }),
      prefix: stack.config.QUEUE_PREFIX,
    });
    const moving = (async () => {
      for (let i = 0; i < 30; i++) await mover.getNextJob(`token-${i}`);
    })();
    const swept = await sweep({
      s3: stack.s3,
      queue,
      bucket: BUCKET,
      olderThanMs: HOUR / 4,
      dryRun: true,
    });
    await moving;
    await mover.close();
    const live = swept.filter((s) => s.key.startsWith("moving/"));
    expect(live).toHaveLength(300);
    expect(live.every((s) => s.action === "kept: owned by a live job")).toBe(true);
    const gone = swept.filter((s) => s.key.startsWith("gone/") && s.uploadId?.startsWith("gone-"));
    expect(gone.map((s) => s.action)).toEqual(Array(20).fill("would-abort"));
    await queue.obliterate({ force: true });
    for (let i = 0; i < 300; i++) await redis.hdel(keys.registry, `u:live-${i}`);
    for (let i = 0; i < 20; i++) await redis.hdel(keys.registry, `u:gone-${i}`);
  });

  it("keeps what a failed job made (its retry may need it), and judges a job again as its entry is forgotten", async () => {
    const keys = queueKeys(stack.config.QUEUE_PREFIX, queue.name);
    const old = Date.now() - 2 * HOUR;
    const failedJob = await queue.add(
      "transform",
      job("in/people.csv", "failed/out.csv", peopleSchema),
    );
    // Failed as BullMQ fails a job that stalled too often (its worker never saw it fail, so its
    // uploads are still open and registered): into the failed set.
    await redis.lrem(`${keys.base}:wait`, 0, failedJob.id ?? "");
    await redis.zadd(keys.failed, Date.now(), failedJob.id ?? "");
    await redis.hset(
      keys.registry,
      "u:failed-upload",
      JSON.stringify({ bucket: BUCKET, key: "failed/out.csv", job: failedJob.id, at: old }),
    );
    const swept = await sweep({
      s3: stack.s3,
      queue,
      bucket: BUCKET,
      olderThanMs: HOUR / 4,
      dryRun: true,
    });
    expect(swept.find((s) => s.uploadId === "failed-upload")?.action).toBe(
      "kept: its job failed and may be retried (remove the job to free it)",
    );
    // An entry whose job is gone is forgotten only if, in that instant, the job is still gone:
    // a job added again under that id since the page was read keeps it.
    const registry = await UploadRegistry.of(queue);
    const value = JSON.stringify({ bucket: BUCKET, key: "again/out.csv", job: "again-1", at: old });
    await redis.hset(keys.registry, "u:again-upload", value);
    const registered = { field: "u:again-upload", value, entry: JSON.parse(value) };
    await queue.add("transform", job("in/people.csv", "again/out.csv", peopleSchema), {
      jobId: "again-1",
    });
    expect(await registry.forgetIfGone(registered)).toBe(false);
    expect(await redis.hexists(keys.registry, "u:again-upload")).toBe(1);
    await queue.remove("again-1");
    expect(await registry.forgetIfGone(registered)).toBe(true);
    expect(await redis.hexists(keys.registry, "u:again-upload")).toBe(0);
    await queue.remove(failedJob.id ?? "");
    await redis.hdel(keys.registry, "u:failed-upload");
  });

  it("deletes a gone split job's shard objects as its registry entry names them, and no other object", async () => {
    const keys = queueKeys(stack.config.QUEUE_PREFIX, queue.name);
    const shardKeys = [
      "split/out.csv.s3csv-shards/9-shard-0-aaaa.csv",
      "split/out.csv.s3csv-shards/9-shard-0-aaaa.rejects.csv",
    ];
    for (const key of shardKeys) await stack.put(key, "x\n");
    await redis.hset(
      keys.registry,
      "s:9",
      JSON.stringify({
        bucket: BUCKET,
        key: "split/out.csv",
        job: "9",
        children: ["9-shard-0-aaaa"],
        at: Date.now() - 2 * HOUR,
      }),
    );
    const swept = await sweep({
      s3: stack.s3,
      queue,
      bucket: BUCKET,
      olderThanMs: HOUR / 4,
      dryRun: false,
    });
    expect(swept.filter((s) => s.kind === "shard-object").map((s) => [s.key, s.action])).toEqual(
      shardKeys.map((key) => [key, "deleted"]),
    );
    for (const key of shardKeys) await expect(stack.get(key)).rejects.toThrow();
    // Only what the registry names: a key that merely looks like a shard object stays.
    expect((await stack.get("other/x.csv.s3csv-shards/not-ours.csv")).toString()).toBe("x\n");
    expect(await redis.hexists(keys.registry, "s:9")).toBe(0);
  });

  it("refuses a bad duration with a clear message", async () => {
    const run = await runCli(["sweep", "--bucket", BUCKET, "--older-than", "soon"], stack.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("not a duration like 90s, 30m, 6h or 2d");
  });
});
