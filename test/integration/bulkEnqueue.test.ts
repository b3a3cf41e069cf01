import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { enqueueArgs, queueFor, runCli } from "./helpers.ts";

// Enqueueing at volume from the CLI: every object under a prefix, a manifest, deduplication,
// priorities and delays.

describe("s3csv enqueue in bulk", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let worker: WorkerProcess;
  const schemaFile = join(tmpdir(), `bulk-schema-${process.pid}.json`);
  const data = peopleData({ rows: 30, invalidEvery: 7 });

  beforeAll(async () => {
    stack = await startStack();
    queue = queueFor(stack);
    worker = spawnWorker(stack.env);
    await writeFile(schemaFile, JSON.stringify(peopleSchema));
    for (const key of ["bulk/in/a.csv", "bulk/in/sub/b.csv", "bulk/in/c.csv", "bulk/other.csv"]) {
      await stack.put(key, data.csv);
    }
  });
  afterAll(async () => {
    await worker?.kill("SIGTERM");
    await queue?.close();
    await stack?.stop();
  });

  const prefixArgs = [
    "enqueue",
    "--source-prefix",
    `s3://${BUCKET}/bulk/in/`,
    "--dest-template",
    `s3://${BUCKET}/bulk/out/{path}`,
    "--schema",
    schemaFile,
  ];

  it("enqueues every object under a prefix, with destinations from the template", async () => {
    const run = await runCli([...prefixArgs, "--wait", "--json"], stack.env);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const results = run.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as JobResult);
    expect(results.map((r) => r.output.key).sort()).toEqual([
      "bulk/out/a.csv",
      "bulk/out/c.csv",
      "bulk/out/sub/b.csv",
    ]);
    for (const key of ["bulk/out/a.csv", "bulk/out/c.csv", "bulk/out/sub/b.csv"]) {
      expect((await stack.get(key)).equals(data.expectedOutput)).toBe(true);
    }
  });

  it("never adds the same source version and destination twice", async () => {
    const before = await queue.getJobCountByTypes("completed", "waiting", "active", "delayed");
    const again = await runCli([...prefixArgs, "--json"], stack.env);
    expect(again.code).toBe(0);
    expect((JSON.parse(again.stdout) as { jobIds: string[] }).jobIds).toHaveLength(3);
    expect(await queue.getJobCountByTypes("completed", "waiting", "active", "delayed")).toBe(
      before,
    );
  });

  it("--dedupe names the work: the same work once, a corrected schema, another option or a new source version anew", async () => {
    const strict = {
      fields: peopleSchema.fields.map((f) =>
        f.name === "score" ? { ...f, constraints: { ...f.constraints, maximum: 50 } } : f,
      ),
    };
    const strictFile = join(tmpdir(), `bulk-strict-${process.pid}.json`);
    await writeFile(strictFile, JSON.stringify(strict));
    await stack.put("dedupe/in.csv", data.csv);
    const enqueue = async (schema: string, ...extra: string[]) => {
      const args = [...enqueueArgs("dedupe/in.csv", "dedupe/out.csv", schema), "--dedupe"];
      const run = await runCli([...args, ...extra, "--wait", "--json"], stack.env);
      expect(run.code, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as JobResult & { jobId: string };
    };
    const first = await enqueue(schemaFile);
    const same = await enqueue(schemaFile);
    expect(same.jobId).toBe(first.jobId);
    // The corrected schema rejects more: its own job, its own result.
    const corrected = await enqueue(strictFile);
    expect(corrected.jobId).not.toBe(first.jobId);
    expect(corrected.rows.rejected).toBeGreaterThan(first.rows.rejected);
    const option = await enqueue(
      schemaFile,
      "--on-invalid",
      "reject",
      "--options",
      '{"newline":"\\n"}',
    );
    expect(option.jobId).not.toBe(first.jobId);
    // Defaults written out are the same work.
    const explicit = await enqueue(schemaFile, "--on-invalid", "reject");
    expect(explicit.jobId).toBe(first.jobId);
    // The source overwritten: a new version, a new job.
    await stack.put("dedupe/in.csv", peopleData({ rows: 12 }).csv);
    const newer = await enqueue(schemaFile);
    expect(newer.jobId).not.toBe(first.jobId);
    expect(newer.rows.read).toBe(12);
  });

  it("enqueues a manifest, refusing it whole when a line is invalid", async () => {
    const manifest = join(tmpdir(), `manifest-${process.pid}.ndjson`);
    const line = (dest: string) =>
      JSON.stringify({
        source: { bucket: BUCKET, key: "bulk/other.csv" },
        destination: { bucket: BUCKET, key: dest },
        schema: peopleSchema,
      });
    await writeFile(manifest, `${line("bulk/m1.csv")}\n\n${line("bulk/m2.csv")}\n{"source":{}}\n`);
    const bad = await runCli(["enqueue", "--manifest", manifest], stack.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/job 3: invalid job: source.bucket/);
    await writeFile(manifest, `${line("bulk/m1.csv")}\n${line("bulk/m2.csv")}\n`);
    const good = await runCli(["enqueue", "--manifest", manifest, "--wait", "--json"], stack.env);
    expect(good.code).toBe(0);
    expect((await stack.get("bulk/m2.csv")).equals(data.expectedOutput)).toBe(true);
  });

  it("passes priority and delay through", async () => {
    const run = await runCli(
      [
        ...enqueueArgs("bulk/other.csv", "bulk/later.csv", schemaFile),
        "--delay",
        "600000",
        "--priority",
        "7",
      ],
      stack.env,
    );
    expect(run.code).toBe(0);
    const job = await queue.getJob(run.stdout.trim());
    expect(await job?.getState()).toBe("delayed");
    expect(job?.opts.priority).toBe(7);
    await job?.remove();
  });
});
