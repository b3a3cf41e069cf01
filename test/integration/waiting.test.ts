import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRedisServer } from "../../dev/redisServer.ts";
import {
  enqueueTransform,
  JobFailedError,
  JobNotRetryableError,
  JobRemovedError,
  queueSettings,
  RedisUnavailableError,
  retryJob,
  transformQueue,
  WaitTimeoutError,
  waitForResult,
} from "../../producer/index.ts";
import { loadConfig } from "../../shared/config.ts";
import type { JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import {
  enqueueArgs,
  eventually,
  job,
  runCli,
  useWorkerStack,
  writeSchemaFile,
} from "./helpers.ts";

// How a wait ends: a result, a failed job, a timeout or a Redis that went away, each with its
// own error class and exit code, and the job left as it is; and `s3csv retry` of a job that
// failed for good. Jobs that must stay unfinished go to a queue no worker serves.

const IDLE_QUEUE = "idle-transform";

describe("waiting for a job, and retrying one", () => {
  const t = useWorkerStack({ WORKER_CONCURRENCY: "4" });
  let idle: Queue<unknown, JobResult>;
  let idleEnv: NodeJS.ProcessEnv;
  let schemaFile: string;
  const held: Array<() => void> = [];

  beforeAll(async () => {
    idleEnv = { ...t.stack.env, QUEUE_NAME: IDLE_QUEUE };
    idle = transformQueue(queueSettings(loadConfig(idleEnv)));
    // The test's own queues reconnect while Redis is down; unheard, BullMQ prints each error.
    for (const queue of [idle, t.queue]) queue.on("error", () => {});
    schemaFile = await writeSchemaFile("waiting-people", peopleSchema);
    await t.stack.put("wait/small.csv", peopleData({ rows: 50 }).csv);
  });
  afterEach(() => {
    t.stack.s3Server.beforeRequest = undefined;
    for (const release of held.splice(0)) release();
  });
  afterAll(async () => {
    await idle?.close();
  });

  const enqueueIdle = (dest: string) =>
    enqueueTransform(job("wait/small.csv", dest, peopleSchema), { queue: idle });
  const jsonLines = (stdout: string) =>
    stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  it("a failed job: JobFailedError with the reason, enqueue --wait exits 1; retry refuses what it cannot retry, then completes it once its source exists", async () => {
    const id = await enqueueTransform(job("wait/late.csv", "wait/late-out.csv", peopleSchema), {
      queue: t.queue,
    });
    const failure = await waitForResult(t.queue, id, { timeoutMs: 30_000 }).catch((e) => e);
    expect(failure).toBeInstanceOf(JobFailedError);
    expect((failure as JobFailedError).failedReason).toMatch(/wait\/late.csv does not exist/);

    const cli = await runCli(
      [...enqueueArgs("wait/late.csv", "wait/late-cli.csv", schemaFile), "--wait", "--json"],
      t.stack.env,
    );
    expect(cli.code, cli.stderr).toBe(1);
    const [failed] = jsonLines(cli.stdout);
    expect(failed).toMatchObject({ failed: true, error: expect.stringMatching(/does not exist/) });
    expect(await t.queue.getJobState(failed?.jobId as string)).toBe("failed");

    const unknown = await runCli(["retry", "no-such-job"], t.stack.env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("job no-such-job does not exist in queue csv-transform");
    const waiting = await enqueueIdle("wait/idle-retry.csv");
    await expect(retryJob(idle, waiting)).rejects.toThrow(JobNotRetryableError);
    const notFailed = await runCli(["retry", waiting], idleEnv);
    expect(notFailed.code).toBe(2);
    expect(notFailed.stderr).toContain(`job ${waiting} is waiting, not failed`);
    await idle.remove(waiting);

    // Fix what made it fail; the retry gets the full attempts again and completes.
    await t.stack.put("wait/late.csv", peopleData({ rows: 40 }).csv);
    const retried = await runCli(["retry", id, "--wait", "--json"], t.stack.env);
    expect(retried.code, retried.stderr).toBe(0);
    const [done] = jsonLines(retried.stdout);
    expect(done).toMatchObject({ jobId: id, rows: { read: 40 } });
    const completed = await t.queue.getJob(id);
    expect(completed?.attemptsMade).toBe(1);
    expect((await t.stack.get("wait/late-out.csv")).length).toBeGreaterThan(0);

    const again = await runCli(["retry", id], t.stack.env);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`job ${id} is completed, not failed`);
  });

  it("a timeout: WaitTimeoutError, enqueue --wait --timeout exits 3, and the job is still waiting", async () => {
    const id = await enqueueIdle("wait/idle-1.csv");
    const started = performance.now();
    const timedOut = await waitForResult(idle, id, { timeoutMs: 1500 }).catch((e) => e);
    expect(timedOut).toBeInstanceOf(WaitTimeoutError);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1400);
    expect(await idle.getJobState(id)).toBe("waiting");

    const cli = await runCli(
      [
        ...enqueueArgs("wait/small.csv", "wait/idle-2.csv", schemaFile),
        "--wait",
        "--timeout",
        "1.5",
        "--json",
      ],
      idleEnv,
    );
    expect(cli.code, cli.stderr).toBe(3);
    const [line] = jsonLines(cli.stdout);
    expect(line).toMatchObject({ timedOut: true });
    expect(line?.error).toMatch(/no result within --timeout 1.5 s/);
    expect(await idle.getJobState(line?.jobId as string)).toBe("waiting");

    const bad = await runCli(
      [...enqueueArgs("wait/small.csv", "wait/idle-3.csv", schemaFile), "--timeout", "5"],
      idleEnv,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--timeout needs --wait");
  });

  it("a bulk wait has one deadline for all its jobs, and reports a job that finished meanwhile", async () => {
    // Two jobs are held on their source reads past the deadline; the third one completes.
    t.stack.s3Server.beforeRequest = (r) =>
      r.method === "GET" && r.url.includes("/wait/held.csv")
        ? new Promise<void>((resolve) => held.push(resolve))
        : undefined;
    await t.stack.put("wait/held.csv", peopleData({ rows: 30 }).csv);
    const manifest = join(tmpdir(), `waiting-manifest-${process.pid}.ndjson`);
    await writeFile(
      manifest,
      [
        job("wait/held.csv", "wait/held-out.csv", peopleSchema),
        job("wait/held.csv", "wait/held-out-2.csv", peopleSchema),
        job("wait/small.csv", "wait/bulk-out.csv", peopleSchema),
      ]
        .map((j) => JSON.stringify(j))
        .join("\n"),
    );
    const started = performance.now();
    const cli = await runCli(
      ["enqueue", "--manifest", manifest, "--wait", "--timeout", "5", "--json"],
      t.stack.env,
    );
    const elapsed = performance.now() - started;
    expect(cli.code, cli.stderr).toBe(3);
    const [first, second, third] = jsonLines(cli.stdout);
    expect(first).toMatchObject({ timedOut: true });
    expect(second).toMatchObject({ timedOut: true });
    expect(third).toMatchObject({ rows: { read: 50 } });
    // One deadline for all: the second held job was not given 5 s of its own (that would be
    // 10 s and more).
    expect(elapsed).toBeLessThan(9500);
    expect(await t.queue.getJobState(first?.jobId as string)).toBe("active");
  });

  it("a removed job: JobRemovedError, enqueue --wait exits 5 (with --timeout too), and a bulk wait reports every job", async () => {
    const id = await enqueueIdle("wait/removed-1.csv");
    const waited = waitForResult(idle, id, { timeoutMs: 60_000 }).catch((e) => e);
    await new Promise((r) => setTimeout(r, 500));
    await idle.remove(id);
    const removed = await waited;
    expect(removed).toBeInstanceOf(JobRemovedError);
    expect((removed as Error).message).toMatch(
      /was removed from queue idle-transform before it finished/,
    );
    await expect(waitForResult(idle, id)).rejects.toThrow(/does not exist in queue idle-transform/);

    /** The CLI's job, removed (as from Bull Board) once the CLI waits for it. */
    const removeWhenAdded = async (dest: string) => {
      const added = await eventually(async () => {
        const jobs = await idle.getJobs(["waiting"]);
        return jobs.find(
          (j) => (j.data as { destination: { key: string } }).destination.key === dest,
        );
      });
      await new Promise((r) => setTimeout(r, 1000));
      await added.remove();
    };
    for (const timeout of [[], ["--timeout", "60"]]) {
      const dest = `wait/removed-cli${timeout.length}.csv`;
      const cli = runCli(
        [...enqueueArgs("wait/small.csv", dest, schemaFile), "--wait", ...timeout, "--json"],
        idleEnv,
      );
      await removeWhenAdded(dest);
      const result = await cli;
      expect(result.code, result.stderr).toBe(5);
      const [line] = jsonLines(result.stdout);
      expect(line).toMatchObject({
        removed: true,
        error: expect.stringMatching(/was removed|does not exist/),
      });
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }

    // A bulk wait: the first job is removed, the second times out; both are reported.
    const manifest = join(tmpdir(), `waiting-removed-${process.pid}.ndjson`);
    await writeFile(
      manifest,
      [
        job("wait/small.csv", "wait/bulk-removed-1.csv", peopleSchema),
        job("wait/small.csv", "wait/bulk-removed-2.csv", peopleSchema),
      ]
        .map((j) => JSON.stringify(j))
        .join("\n"),
    );
    const bulk = runCli(
      ["enqueue", "--manifest", manifest, "--wait", "--timeout", "6", "--json"],
      idleEnv,
    );
    await removeWhenAdded("wait/bulk-removed-1.csv");
    const result = await bulk;
    expect(result.code, result.stderr).toBe(5);
    const lines = jsonLines(result.stdout);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ removed: true });
    expect(lines[1]).toMatchObject({ timedOut: true });
  });

  it("Redis gone while waiting: RedisUnavailableError, enqueue --wait exits 4, and the job is still there once Redis is back", async () => {
    const id = await enqueueIdle("wait/idle-redis-1.csv");
    const cli = runCli(
      [...enqueueArgs("wait/small.csv", "wait/idle-redis-2.csv", schemaFile), "--wait", "--json"],
      idleEnv,
    );
    const cliJobId = await eventually(async () => {
      const jobs = await idle.getJobs(["waiting"]);
      const added = jobs.find(
        (j) =>
          (j.data as { destination: { key: string } }).destination.key === "wait/idle-redis-2.csv",
      );
      return added?.id;
    });
    const waited = waitForResult(idle, id, { redisTimeoutMs: 2000 }).catch((e) => e);
    // Both waits are under way before Redis goes.
    await new Promise((r) => setTimeout(r, 1000));
    const { port, dir } = t.stack.redis;
    await t.stack.redis.stop();

    const started = performance.now();
    const lost = await waited;
    expect(lost).toBeInstanceOf(RedisUnavailableError);
    expect((lost as Error).message).toMatch(/Redis has not answered for 2000 ms/);
    expect(performance.now() - started).toBeLessThan(5000);

    // The CLI gives up after its default 30 s of silence.
    const result = await cli;
    expect(result.code, result.stderr).toBe(4);
    const [line] = jsonLines(result.stdout);
    expect(line).toMatchObject({ jobId: cliJobId, redisUnavailable: true });
    expect(result.stderr).toMatch(/Redis has not answered for 30000 ms/);
    expect(result.stderr).not.toMatch(/\n\s+at /);

    t.stack.redis = await startRedisServer({ dir, port });
    expect(await idle.getJobState(id)).toBe("waiting");
    expect(await idle.getJobState(cliJobId)).toBe("waiting");
  });
});
