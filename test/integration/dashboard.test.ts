import { type ChildProcess, spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import type { Queue } from "bullmq";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../dev/redisServer.ts";
import { enqueueTransform, JOB_NAME } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { CLI, eventually, job, queueFor, run, runCli } from "./helpers.ts";

const MiB = 1024 * 1024;
const USER = "operator";
const PASSWORD = "correct-horse-battery";
const CHROMIUM = "/usr/bin/chromium";

describe("s3csv dashboard", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let worker: WorkerProcess;
  let dashboard: ChildProcess;
  let base: string;
  const held: Array<() => void> = [];
  const auth = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}` };

  beforeAll(async () => {
    stack = await startStack({ PART_SIZE: String(5 * MiB) });
    queue = queueFor(stack);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    dashboard = spawn(process.execPath, [CLI, "dashboard"], {
      env: {
        ...stack.env,
        DASHBOARD_PORT: String(port),
        DASHBOARD_USER: USER,
        DASHBOARD_PASSWORD: PASSWORD,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    await eventually(async () => {
      try {
        return (await fetch(`${base}/healthz`)).ok ? true : undefined;
      } catch {
        return undefined;
      }
    }, 20_000);
    worker = spawnWorker(stack.env);
  });

  afterAll(async () => {
    for (const release of held.splice(0)) release();
    await worker?.kill();
    dashboard?.kill("SIGTERM");
    await queue?.close();
    await stack?.stop();
  });

  it("refuses to start without credentials unless told to run without auth on 127.0.0.1", async () => {
    const refused = await runCli(["dashboard"], { ...stack.env, DASHBOARD_PORT: "0" });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      "set DASHBOARD_USER and DASHBOARD_PASSWORD, or pass --no-auth",
    );
  });

  it("requires basic auth, checks an edit as a producer checks a job, serves health, readiness and metrics", async () => {
    expect((await fetch(`${base}/admin/queues`)).status).toBe(401);
    expect(
      (
        await fetch(`${base}/admin/queues`, {
          headers: { authorization: "Basic b3BlcmF0b3I6d3Jvbmc=" },
        })
      ).status,
    ).toBe(401);
    expect((await fetch(`${base}/admin/queues`, { headers: auth })).status).toBe(200);
    const queues = (await (
      await fetch(`${base}/admin/queues/api/queues`, { headers: auth })
    ).json()) as {
      queues: Array<{ name: string }>;
    };
    expect(queues.queues.map((q) => q.name)).toEqual(["csv-transform"]);
    const edit = await fetch(`${base}/admin/queues/api/queues/csv-transform/1/update-data`, {
      method: "PATCH",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ data: {} }),
    });
    expect(edit.status).toBe(400);
    expect(((await edit.json()) as { error: string }).error).toMatch(/^invalid job: /);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${base}/readyz`)).json()).toEqual({ status: "ready" });

    await stack.put("dash/small.csv", peopleData({ rows: 50 }).csv);
    await run(queue, job("dash/small.csv", "dash/small-out.csv", peopleSchema));
    const metrics = await eventually(async () => {
      const text = await (await fetch(`${base}/metrics`, { headers: auth })).text();
      return /s3csv_jobs_completed_total\{queue="csv-transform"\} [1-9]/.test(text)
        ? text
        : undefined;
    });
    expect(metrics).toMatch(/s3csv_queue_jobs\{queue="csv-transform",state="completed"\} [1-9]/);
    expect(metrics).toMatch(/s3csv_rows_read_total\{queue="csv-transform"\} 50/);
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
  });

  it("checks edits and added jobs however the URL is spelled, and still retries jobs", async () => {
    // A malformed payload fails at once, without retries: a failed job to edit and retry.
    const failed = await queue.add(JOB_NAME, { source: {}, destination: {} });
    const id = failed.id as string;
    const finishedOn = await eventually(async () => {
      const j = await queue.getJob(id);
      return j && (await j.getState()) === "failed" ? j.finishedOn : undefined;
    });
    const data = (await queue.getJob(id))?.data;
    const jobsInQueue = async () =>
      Object.values(await queue.getJobCounts()).reduce((sum, n) => sum + n, 0);
    const jobs = await jobsInQueue();
    const api = `${base}/admin/queues/api/queues/csv-transform`;
    const send = (method: string, path: string, body: unknown) =>
      fetch(`${api}${path}`, {
        method,
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const encodedId = `%${id.charCodeAt(0).toString(16)}${id.slice(1)}`;

    // Every spelling the router takes to the update-data route (PATCH) gets s3csv's checks: an
    // invalid job is refused, naming the field, and a checkpoint never comes from a browser.
    for (const path of [
      `/${id}/update-data`,
      `/${id}/update-data?x=1`,
      `/${id}/update%2Ddata`,
      `/${id}/%75pdate-data`,
      `/${encodedId}/update-data`,
    ]) {
      const response = await send("PATCH", path, { jobData: { edited: path } });
      expect(response.status, path).toBe(400);
    }
    const withCheckpoint = await send("PATCH", `/${id}/update-data`, {
      jobData: { ...job("dash/small.csv", "dash/x.csv", peopleSchema), checkpoint: {} },
    });
    expect(withCheckpoint.status).toBe(400);
    // Spellings that reach no route, and methods the route does not have, change nothing.
    for (const [method, path] of [
      ["PATCH", `/${id}/update-data/`],
      ["PATCH", `/${id}//update-data`],
      ["PATCH", `//${id}/update-data`],
      ["PUT", `/${id}/update-data`],
      ["POST", `/${id}/update-data`],
      ["PUT", `/${id}/update%2Ddata`],
    ] as const) {
      const response = await send(method, path, { jobData: { edited: path } });
      expect(response.status, `${method} ${path}`).toBe(404);
    }
    expect((await queue.getJob(id))?.data).toEqual(data);

    for (const path of ["/add", "/add?x=1", "/%61dd", "/ad%64"]) {
      const response = await send("POST", path, { name: "transform", data: {} });
      expect(response.status, path).toBe(400);
    }
    expect(await jobsInQueue()).toBe(jobs);

    const retried = await send("PUT", `/${id}/retry`, {});
    expect(retried.ok).toBe(true);
    // Retried, the malformed job runs and fails again.
    await eventually(async () => {
      const j = await queue.getJob(id);
      return j?.finishedOn && j.finishedOn > (finishedOn ?? 0) ? true : undefined;
    });
  });

  it("edits a job no worker has taken, refuses one that has started, and duplicates through the producer's checks", async () => {
    const api = `${base}/admin/queues/api/queues/csv-transform`;
    const send = (method: string, path: string, body: unknown) =>
      fetch(`${api}${path}`, {
        method,
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    await stack.put("dash/edit.csv", peopleData({ rows: 20 }).csv);
    // Delayed: it waits, no worker has taken it.
    const later = await enqueueTransform(job("dash/edit.csv", "dash/edit-a.csv", peopleSchema), {
      queue,
      delay: 600_000,
    });
    const edited = await send("PATCH", `/${later}/update-data`, {
      jobData: job("dash/edit.csv", "dash/edit-b.csv", peopleSchema, { newline: "\n" }),
    });
    expect(edited.status, await edited.clone().text()).toBe(200);
    expect((await queue.getJob(later))?.data).toMatchObject({
      destination: { key: "dash/edit-b.csv" },
      options: { newline: "\n" },
    });
    // Its claim followed it: the old destination is free, the new one is the job's.
    const freed = await enqueueTransform(job("dash/edit.csv", "dash/edit-a.csv", peopleSchema), {
      queue,
    });
    await expect(
      enqueueTransform(job("dash/edit.csv", "dash/edit-b.csv", peopleSchema), { queue }),
    ).rejects.toThrow(`being written by job ${later}`);
    await run(queue, job("dash/edit.csv", "dash/edit-c.csv", peopleSchema));
    const [completed] = await queue.getCompleted(0, 0);
    const late = await send("PATCH", `/${completed?.id}/update-data`, {
      jobData: job("dash/edit.csv", "dash/edit-d.csv", peopleSchema),
    });
    expect(late.status).toBe(403);
    expect(((await late.json()) as { error: string }).error).toMatch(
      /cannot be edited: it is not waiting/,
    );
    // Duplicate: a new job, enqueued as the producer would, which runs.
    const duplicate = await send("POST", "/add", {
      name: "transform",
      data: { ...job("dash/edit.csv", "dash/edit-e.csv", peopleSchema), checkpoint: { bogus: 1 } },
      options: {},
    });
    expect(duplicate.status, await duplicate.clone().text()).toBe(200);
    const { job: added } = (await duplicate.json()) as { job: { id: string } };
    const result = await waitForResult(queue, added.id, { timeoutMs: 60_000 });
    expect(result.rows.read).toBe(20);
    expect((await queue.getJob(added.id))?.opts.attempts).toBeGreaterThan(1);
    await queue.remove(later);
    await waitForResult(queue, freed, { timeoutMs: 60_000 });
  });

  it("titles a job by what it transforms, leads its result with a summary, and shows a failure without a stack", async () => {
    const board = `${base}/admin/queues/api/queues?activeQueue=csv-transform`;
    const listed = async (status: string) =>
      (
        (await (await fetch(`${board}&status=${status}&page=1`, { headers: auth })).json()) as {
          queues: Array<{
            jobs: Array<{
              name: string;
              returnValue: unknown;
              stacktrace: string[];
              failedReason: string;
            }>;
          }>;
        }
      ).queues[0]?.jobs ?? [];
    const done = (await listed("completed"))[0];
    expect(done?.name).toMatch(
      /^s3:\/\/s3csv-test\/dash\/\S+ → s3:\/\/s3csv-test\/dash\/\S+: \d+ valid rows?, \d+ rejected of \d+$/,
    );
    expect(Object.keys(done?.returnValue as object).slice(0, 2)).toEqual([
      "summary",
      "errors by field",
    ]);
    expect((done?.returnValue as { summary?: string } | undefined)?.summary).toMatch(
      /^\d+ valid rows?, \d+ rejected of \d+ → s3:\/\//,
    );
    const failed = (await listed("failed"))[0];
    expect(failed?.failedReason).toMatch(/invalid job data/);
    for (const line of failed?.stacktrace ?? []) expect(line).not.toMatch(/\n\s+at |\/worker\//);
  });

  it("shows a completed job and a running job's progress in a browser", async () => {
    // A job held mid-upload stays active, with progress, for the browser to see.
    await stack.put("dash/big.csv", peopleData({ rows: 250_000, pad: 60 }).csv);
    stack.s3Server.beforeRequest = (r) =>
      r.method === "PUT" && r.query.uploadId && r.url.includes("/dash/big-out.csv?")
        ? new Promise<void>((resolve) => held.push(resolve))
        : undefined;
    const runningId = await enqueueTransform(
      job("dash/big.csv", "dash/big-out.csv", peopleSchema),
      { queue },
    );
    await eventually(async () => {
      const j = await queue.getJob(runningId);
      return j && typeof j.progress === "object" && (await j.getState()) === "active"
        ? true
        : undefined;
    });

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const context = await browser.newContext({
        httpCredentials: { username: USER, password: PASSWORD },
        viewport: { width: 1280, height: 900 },
      });
      const page = await context.newPage();
      await page.goto(`${base}/admin/queues`);
      await page.getByText("csv-transform").first().click();
      const [completed] = await queue.getCompleted(0, 0);
      await page.goto(`${base}/admin/queues/queue/csv-transform?status=completed`);
      await page
        .getByText(`#${completed?.id}`, { exact: true })
        .first()
        .waitFor({ state: "visible", timeout: 15_000 });
      await page.goto(`${base}/admin/queues/queue/csv-transform?status=active`);
      await page
        .getByText(`#${runningId}`, { exact: true })
        .waitFor({ state: "visible", timeout: 15_000 });
      // Bull Board draws the job's progress ring from our progress object's `progress` percent.
      await page
        .getByText(/^\d+(\.\d+)?%$/)
        .first()
        .waitFor({ state: "visible", timeout: 15_000 });
      await mkdir(new URL("../../docs/", import.meta.url), { recursive: true });
      await page.screenshot({
        path: new URL("../../docs/dashboard.png", import.meta.url).pathname,
      });
    } finally {
      await browser.close();
      stack.s3Server.beforeRequest = undefined;
      for (const release of held.splice(0)) release();
    }
  });
});
