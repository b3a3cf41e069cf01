import { type ChildProcess, spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import type { Queue } from "bullmq";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../dev/redisServer.ts";
import { enqueueTransform } from "../../producer/enqueue.ts";
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

  it("requires basic auth, keeps job data read-only, serves health, readiness and metrics", async () => {
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
    expect(edit.status).toBe(403);
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
