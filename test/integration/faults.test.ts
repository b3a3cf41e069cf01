import { setTimeout as sleep } from "node:timers/promises";
import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRedisServer } from "../../dev/redisServer.ts";
import { enqueueTransform, enqueueTransforms } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { type PeopleData, peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { isPartUpload } from "../support/s3Server.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, queueFor, rejectsKeyOf, run } from "./helpers.ts";

// Faults on the way to S3 and Redis (injected by the test's S3 server, and by stopping the
// test's redis-server), and a bounded chaos soak. Each job must complete with exact output,
// no multipart upload may stay open, and no worker may die of an unhandled rejection.

const MiB = 1024 * 1024;

describe("faults and chaos", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let data: PeopleData;
  const workers: WorkerProcess[] = [];
  const held: Array<() => void> = [];
  const start = (extra: NodeJS.ProcessEnv = {}) => {
    const w = spawnWorker(stack.env, { LOG_LEVEL: "info", ...extra });
    workers.push(w);
    return w;
  };
  const alive = (w: WorkerProcess) => w.child.exitCode === null && w.child.signalCode === null;

  beforeAll(async () => {
    stack = await startStack(
      {
        PART_SIZE: String(5 * MiB),
        LOCK_DURATION_MS: "2000",
        STALLED_INTERVAL_MS: "500",
        JOB_BACKOFF_MS: "200",
        S3_IDLE_TIMEOUT_MS: "1500",
      },
      // With ListMultipartUploads, a resumed job aborts the upload a killed attempt created and
      // died before checkpointing (the emulator is extended with that route for this file).
      { listMultipartUploads: true },
    );
    queue = queueFor(stack);
    data = peopleData({ rows: 70_000, invalidEvery: 50, pad: 60 });
    await stack.put("faults/in.csv", data.csv);
  });
  afterEach(async () => {
    stack.s3Server.beforeRequest = undefined;
    stack.s3Server.beforeResponse = undefined;
    for (const release of held.splice(0)) release();
    for (const w of workers.splice(0)) await w.kill();
  });
  afterAll(async () => {
    await queue?.close();
    await stack?.stop();
  });

  async function expectExact(key: string, result: JobResult): Promise<void> {
    expect((await stack.get(key)).equals(data.expectedOutput)).toBe(true);
    expect(rejectedRows(await stack.get(rejectsKeyOf(key)))).toEqual(data.rejected);
    expect(result.rows.read).toBe(70_000);
    expect(await stack.openUploads()).toEqual([]);
  }

  it("survives bursts of S3 500 InternalError and 503 SlowDown (SDK retries, then a job retry that resumes)", async () => {
    const w = start();
    let injected = 0;
    stack.s3Server.beforeRequest = (r) => {
      if (!isPartUpload(r, "faults/slowdown.csv") || r.query.partNumber !== "2" || injected++ >= 6)
        return undefined;
      return injected % 2
        ? { status: 500, code: "InternalError" }
        : { status: 503, code: "SlowDown" };
    };
    const id = await enqueueTransform(job("faults/in.csv", "faults/slowdown.csv", peopleSchema), {
      queue,
    });
    const result = await waitForResult(queue, id, { timeoutMs: 60_000 });
    expect(injected).toBe(7);
    expect(result.resumes).toBeGreaterThanOrEqual(1);
    await expectExact("faults/slowdown.csv", result);
    expect(alive(w)).toBe(true);
  });

  it("survives connections reset in the middle of a part", async () => {
    const w = start();
    let resets = 0;
    stack.s3Server.beforeRequest = (r) =>
      isPartUpload(r, "faults/reset.csv") && resets++ < 2 ? "reset" : undefined;
    await expectExact(
      "faults/reset.csv",
      await run(queue, job("faults/in.csv", "faults/reset.csv", peopleSchema)),
    );
    expect(resets).toBeGreaterThanOrEqual(2);
    expect(alive(w)).toBe(true);
  });

  it("survives a stalled S3 response past the idle timeout", async () => {
    const w = start();
    let stalls = 0;
    stack.s3Server.beforeRequest = (r) =>
      r.method === "GET" && r.url.includes("/faults/in.csv") && stalls++ === 0
        ? new Promise<void>((resolve) => held.push(resolve))
        : undefined;
    await expectExact(
      "faults/stall.csv",
      await run(queue, job("faults/in.csv", "faults/stall.csv", peopleSchema)),
    );
    expect(stalls).toBeGreaterThanOrEqual(2);
    expect(alive(w)).toBe(true);
  });

  it("survives Redis restarting mid-job (AOF on)", async () => {
    const w = start();
    const id = await enqueueTransform(job("faults/in.csv", "faults/redis.csv", peopleSchema), {
      queue,
    });
    await eventually(async () => {
      const cp = ((await queue.getJob(id))?.data as { checkpoint?: Checkpoint } | undefined)
        ?.checkpoint;
      return cp?.output.uploadId ? true : undefined;
    });
    const { port, dir } = stack.redis;
    await stack.redis.stop();
    await new Promise((r) => setTimeout(r, 1000));
    stack.redis = await startRedisServer({ dir, port });
    await expectExact("faults/redis.csv", await waitForResult(queue, id, { timeoutMs: 90_000 }));
    expect(alive(w)).toBe(true);
  });

  it("starts while Redis is down and works once it is up", async () => {
    const { port, dir } = stack.redis;
    await stack.redis.stop();
    const w = start();
    await new Promise((r) => setTimeout(r, 2000));
    expect(alive(w)).toBe(true);
    stack.redis = await startRedisServer({ dir, port });
    const id = await enqueueTransform(job("faults/in.csv", "faults/late-redis.csv", peopleSchema), {
      queue,
    });
    await expectExact(
      "faults/late-redis.csv",
      await waitForResult(queue, id, { timeoutMs: 60_000 }),
    );
    expect(alive(w)).toBe(true);
  });

  it("a worker told to stop while Redis is down exits once its grace has passed", async () => {
    const w = spawnWorker(stack.env, { SHUTDOWN_GRACE_MS: "1000", LOG_LEVEL: "info" });
    workers.push(w);
    await eventually(() => (w.output().includes("worker started") ? true : undefined));
    const { port, dir } = stack.redis;
    await stack.redis.stop();
    try {
      w.child.kill("SIGTERM");
      const code = await Promise.race([
        new Promise<number | null>((resolve) => w.child.once("exit", resolve)),
        sleep(30_000).then(() => "still running"),
      ]);
      expect(code, w.output()).not.toBe("still running");
    } finally {
      stack.redis = await startRedisServer({ dir, port });
    }
  });

  it("aborts, on resume, the upload an attempt created and died before checkpointing", async () => {
    const first = start();
    let stray = "";
    stack.s3Server.beforeResponse = async (r) => {
      if (
        r.method === "POST" &&
        r.url.startsWith("/s3csv-test/faults/stray.csv?uploads") &&
        !stray
      ) {
        stray = "killed";
        await first.kill("SIGKILL");
      }
    };
    const id = await enqueueTransform(job("faults/in.csv", "faults/stray.csv", peopleSchema), {
      queue,
    });
    await eventually(() => (stray ? true : undefined));
    stack.s3Server.beforeResponse = undefined;
    const orphan = (await stack.openUploads()).find((u) => u.key === "faults/stray.csv");
    expect(orphan).toBeDefined();
    start();
    const result = await waitForResult(queue, id, { timeoutMs: 60_000 });
    // The attempt died before its first checkpoint: the retry starts over, and sweeps its stray.
    expect(result.resumes).toBe(0);
    await expectExact("faults/stray.csv", result);
    expect((await stack.openUploads()).some((u) => u.uploadId === orphan?.uploadId)).toBe(false);
  });

  it("chaos soak: 3 workers, 50 jobs, random SIGKILLs and restarts; every job once, exact", async () => {
    const sets = [
      peopleData({ rows: 200, invalidEvery: 9 }),
      peopleData({ rows: 20_000, invalidEvery: 3, pad: 30 }),
      data,
    ];
    await stack.put("chaos/in-0.csv", (sets[0] as PeopleData).csv);
    await stack.put("chaos/in-1.csv", (sets[1] as PeopleData).csv);
    // A SIGKILL stalls each job its worker had: a long job can be stalled by several, and at
    // s3csv's default limit (MAX_STALLED_COUNT, 5) it would fail for the soak's kill rate, not
    // for anything s3csv does. The limit is set above the most SIGKILLs the soak can make (one
    // per 1.5 s for 40 s); a lock renewal a frozen worker misses is a stall too, which the
    // stalls logged below would show.
    const KILL_WINDOW_MS = 40_000;
    const soakWorker = () =>
      start({ MAX_STALLED_COUNT: String(Math.ceil(KILL_WINDOW_MS / 1500) + 1) });
    for (let i = 0; i < 3; i++) soakWorker();
    const plan = Array.from({ length: 50 }, (_, i) => ({
      set: i % 7 === 0 ? 2 : i % 2,
      dest: `chaos/out-${i}.csv`,
    }));
    const source = (set: number) => (set === 2 ? "faults/in.csv" : `chaos/in-${set}.csv`);
    const ids = await enqueueTransforms(
      plan.map((p) => job(source(p.set), p.dest, peopleSchema)),
      { queue },
    );
    // Earlier tests in this file used the same queue: count only this test's jobs.
    const finished = async () => {
      const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
      return states.filter((state) => state === "completed" || state === "failed").length;
    };
    let kills = 0;
    const deadline = Date.now() + KILL_WINDOW_MS;
    const seed = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9];
    for (let round = 0; Date.now() < deadline; round++) {
      if ((await finished()) >= 50) break;
      await new Promise((r) => setTimeout(r, 1500 + (seed[round % seed.length] as number) * 150));
      const running = workers.filter(alive);
      const target = running[(seed[round % seed.length] as number) % running.length];
      if (target) {
        await target.kill("SIGKILL");
        kills++;
        soakWorker();
      }
    }
    await eventually(async () => ((await finished()) >= 50 ? true : undefined), 110_000);
    const failed = (await queue.getFailed()).filter((j) => ids.includes(j.id ?? ""));
    expect(failed.map((j) => `${j.id}: ${j.failedReason}`)).toEqual([]);
    let resumes = 0;
    let stalls = 0;
    for (const [i, id] of ids.entries()) {
      const p = plan[i] as (typeof plan)[number];
      const finishedJob = await queue.getJob(id);
      const result = finishedJob?.returnvalue;
      resumes += result?.resumes ?? 0;
      stalls += finishedJob?.stalledCounter ?? 0;
      const expected = sets[p.set] as PeopleData;
      expect((await stack.get(p.dest)).equals(expected.expectedOutput), p.dest).toBe(true);
      expect(rejectedRows(await stack.get(rejectsKeyOf(p.dest))), p.dest).toEqual(
        expected.rejected,
      );
    }
    expect(await stack.openUploads()).toEqual([]);
    console.log(
      `chaos soak: 50 jobs, ${kills} SIGKILLs, ${stalls} stalls, ${resumes} resumes, 0 failed, all outputs exact`,
    );
    expect(kills).toBeGreaterThanOrEqual(1);
  });
});
