import { type ChildProcess, spawn } from "node:child_process";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { type Queue, Worker } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../dev/redisServer.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { JobResult } from "../../shared/job.ts";
import { redisConnection } from "../../shared/redis.ts";
import { workerCensus } from "../../shared/workerCensus.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { BUCKET, S3_BACKEND, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { CLI, eventually, queueFor, runCli, writeSchemaFile } from "./helpers.ts";

// s3csv watch: every object version under a prefix becomes one job, exactly once: files there
// before the watcher starts, added while it runs and while it is killed; overwrites (queued
// behind the job still writing their destination); two watchers at once; S3 events on SQS
// delivered twice, and malformed messages. The queue is then read back: one job per version,
// and every output exact.

const data = (rows: number, seed = 1) => peopleData({ rows, invalidEvery: 10 + seed, pad: 20 });

describe("s3csv watch", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let worker: WorkerProcess;
  let schemaFile: string;
  const watchers: ChildProcess[] = [];

  beforeAll(async () => {
    stack = await startStack({ LOG_LEVEL: "info" });
    queue = queueFor(stack);
    worker = spawnWorker(stack.env);
    schemaFile = await writeSchemaFile("watch-people", peopleSchema);
  });
  afterEach(async () => {
    stack.s3Server.beforeRequest = undefined;
    for (const w of watchers.splice(0)) await stop(w, "SIGTERM");
  });
  afterAll(async () => {
    await worker?.kill("SIGTERM");
    await queue?.close();
    await stack?.stop();
  });

  /** A watcher process on `prefix`, writing its outputs under out/<prefix>. */
  function watch(
    prefix: string,
    extra: string[] = [],
    env: NodeJS.ProcessEnv = {},
    destTemplate = `s3://${BUCKET}/out/${prefix}{path}`,
  ) {
    const child = spawn(
      process.execPath,
      [
        CLI,
        "watch",
        "--source-prefix",
        `s3://${BUCKET}/${prefix}`,
        "--dest-template",
        destTemplate,
        "--schema",
        schemaFile,
        "--interval",
        "0.5",
        ...extra,
      ],
      { env: { ...stack.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    child.stdout?.on("data", (d: Buffer) => {
      log += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      log += d.toString();
    });
    Object.assign(child, { log: () => log });
    watchers.push(child);
    return child as ChildProcess & { log(): string };
  }

  async function stop(child: ChildProcess, signal: NodeJS.Signals) {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    await exited;
  }

  /** A client of the SQS queues the emulator serves. */
  function emulatorSqs() {
    return new SQSClient({
      region: "us-east-1",
      endpoint: stack.s3Server.endpoint,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    });
  }

  /** True once the queue holds no message, visible or in flight (undefined until then). */
  async function drained(sqs: SQSClient, queueUrl: string) {
    const attributes = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
      }),
    );
    const left =
      Number(attributes.Attributes?.ApproximateNumberOfMessages ?? 1) +
      Number(attributes.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 1);
    return left === 0 ? true : undefined;
  }

  /** Waits until the clock is in a second after the one it was in. */
  async function nextSecond() {
    const now = Date.now();
    await new Promise((r) => setTimeout(r, 1000 - (now % 1000) + 50));
  }

  /** The jobs the queue holds for a prefix: source key and version of each. */
  async function jobsFor(prefix: string) {
    const all = await queue.getJobs([
      "waiting",
      "active",
      "delayed",
      "completed",
      "failed",
      "prioritized",
    ]);
    return all
      .map((j) => ({
        id: j.id ?? "",
        source: (j.data as { source: { key: string; etag?: string } }).source,
      }))
      .filter((j) => j.source.key.startsWith(prefix));
  }

  /** Exactly one job per version, all completed, each output exactly its input's. */
  async function expectOnce(prefix: string, files: Map<string, ReturnType<typeof data>>) {
    const jobs = await jobsFor(prefix);
    const versions = jobs.map((j) => `${j.source.key} ${j.source.etag}`);
    expect(new Set(versions).size, versions.join("\n")).toBe(versions.length);
    expect(jobs.map((j) => j.source.key).sort()).toEqual([...files.keys()].sort());
    for (const job of jobs) {
      const result = await waitForResult(queue, job.id, { timeoutMs: 60_000 });
      expect(result.source?.etag).toBe(job.source.etag);
      const expected = files.get(job.source.key);
      const out = await stack.get(`out/${job.source.key}`);
      expect(out.equals(expected?.expectedOutput as Buffer), job.source.key).toBe(true);
    }
  }

  it("makes one job of each file there before it starts, added while it runs, and added while it was killed", async () => {
    const prefix = "intake/a/";
    const files = new Map<string, ReturnType<typeof data>>();
    const put = async (name: string, seed: number) => {
      const file = data(200, seed);
      files.set(`${prefix}${name}`, file);
      await stack.put(`${prefix}${name}`, file.csv);
    };
    await put("before-1.csv", 1);
    await put("sub/before-2.csv", 2);
    let w = watch(prefix);
    await eventually(async () => ((await jobsFor(prefix)).length === 2 ? true : undefined));
    await put("while-running.csv", 3);
    await eventually(async () => ((await jobsFor(prefix)).length === 3 ? true : undefined));
    await stop(w, "SIGKILL");
    await put("while-killed.csv", 4);
    w = watch(prefix);
    await eventually(async () => ((await jobsFor(prefix)).length === 4 ? true : undefined));
    // A few more rounds of listing: nothing is added again.
    await new Promise((r) => setTimeout(r, 2000));
    await expectOnce(prefix, files);
    expect(w.log()).toMatch(/"msg":"job added"/);
  });

  it("queues an overwrite behind the job that still writes its destination; each reads its own version", async () => {
    const prefix = "intake/b/";
    const key = `${prefix}orders.csv`;
    const first = data(100, 5);
    await stack.put(key, first.csv);
    // The first version's output is held: its job stays active.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let writing = false;
    stack.s3Server.beforeRequest = (r) => {
      if (r.method !== "PUT" || !r.url.includes(`/out/${key}`)) return undefined;
      writing = true;
      return held;
    };
    const w = watch(prefix);
    await eventually(async () => ((await jobsFor(prefix)).length === 1 ? true : undefined));
    // The overwrite comes once the first job has read its version and is writing its output
    // (where S3 keeps no versions, a job whose source was overwritten before it read it fails,
    // saying so: that is not this test's case).
    await eventually(async () => (writing ? true : undefined));
    const [v1] = await jobsFor(prefix);
    expect(await queue.getJobState(v1?.id ?? "")).toBe("active");
    const second = data(120, 6);
    await stack.put(key, second.csv);
    // Listed several times while the first job runs: the new version waits, never dropped.
    await new Promise((r) => setTimeout(r, 2500));
    expect(await jobsFor(prefix)).toHaveLength(1);
    release();
    await eventually(async () => ((await jobsFor(prefix)).length === 2 ? true : undefined));
    const jobs = await jobsFor(prefix);
    const results = await Promise.all(
      jobs.map((j) => waitForResult(queue, j.id, { timeoutMs: 60_000 })),
    );
    expect(results.map((r) => r.rows.read).sort()).toEqual([100, 120]);
    expect(new Set(results.map((r) => r.source?.etag)).size).toBe(2);
    expect((await stack.get(`out/${key}`)).equals(second.expectedOutput)).toBe(true);
    expect(w.log()).not.toMatch(/"level":50/);
  });

  it("makes one job per version with two watchers at once", async () => {
    const prefix = "intake/c/";
    const files = new Map<string, ReturnType<typeof data>>();
    watch(prefix);
    watch(prefix);
    for (let i = 0; i < 6; i++) {
      const file = data(50, i);
      files.set(`${prefix}f${i}.csv`, file);
      await stack.put(`${prefix}f${i}.csv`, file.csv);
    }
    await eventually(async () => ((await jobsFor(prefix)).length === 6 ? true : undefined));
    await new Promise((r) => setTimeout(r, 1500));
    await expectOnce(prefix, files);
  });

  it("makes a new job when content comes back (A, then B, then A again) and when a deleted object is made again", async () => {
    const prefix = "intake/g/";
    const key = `${prefix}orders.csv`;
    const a = data(60, 11);
    const b = data(70, 12);
    const port = await freePort();
    const w = watch(prefix, ["--metrics-port", String(port)]);
    const results: JobResult[] = [];
    const done = new Set<string>();
    for (const [n, file] of [a, b, a].entries()) {
      // A version is its ETag and its LastModified, to the second: each put in a second of its own.
      await nextSecond();
      await stack.put(key, file.csv);
      const fresh = await eventually(async () => {
        const found = (await jobsFor(prefix)).filter((j) => !done.has(j.id));
        return found.length === 1 ? found[0] : undefined;
      });
      done.add(fresh.id);
      results.push(await waitForResult(queue, fresh.id, { timeoutMs: 60_000 }));
      expect((await stack.get(`out/${key}`)).equals(file.expectedOutput), `version ${n}`).toBe(
        true,
      );
    }
    expect(results.map((r) => r.rows.read)).toEqual([60, 70, 60]);
    // Deleted, then made again with the same content once the watch has seen it gone.
    await stack.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    await eventually(async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /s3csv_watch_objects_forgotten_total 1\b/.test(metrics) ? true : undefined;
    });
    await nextSecond();
    await stack.put(key, a.csv);
    await eventually(async () => ((await jobsFor(prefix)).length === 4 ? true : undefined));
    await new Promise((r) => setTimeout(r, 1500));
    const jobs = await jobsFor(prefix);
    expect(jobs).toHaveLength(4);
    expect(new Set(jobs.map((j) => j.id)).size).toBe(4);
    for (const job of jobs) await waitForResult(queue, job.id, { timeoutMs: 60_000 });
    expect((await stack.get(`out/${key}`)).equals(a.expectedOutput)).toBe(true);
    expect(w.log()).not.toMatch(/"level":50/);
  });

  it("leaves alone, saying so, an object whose output another object's jobs write", async () => {
    const prefix = "intake/h/";
    const files = new Map([
      [`${prefix}a/x.csv`, data(30, 13)],
      [`${prefix}b/x.csv`, data(40, 14)],
    ]);
    for (const [key, file] of files) await stack.put(key, file.csv);
    const w = watch(prefix, [], {}, `s3://${BUCKET}/out/${prefix}{name}`);
    await eventually(async () => ((await jobsFor(prefix)).length === 1 ? true : undefined));
    await eventually(async () => (/is already the output of/.test(w.log()) ? true : undefined));
    await new Promise((r) => setTimeout(r, 1500));
    // Keys are offered several at a time: whichever claims the output first has it, the other
    // is refused, named as the owner in the warning.
    const jobs = await jobsFor(prefix);
    expect(jobs).toHaveLength(1);
    const owner = jobs[0]?.source.key ?? "";
    expect([...files.keys()]).toContain(owner);
    expect(w.log()).toContain(`is already the output of ${owner}:`);
    await waitForResult(queue, jobs[0]?.id ?? "", { timeoutMs: 60_000 });
    const expected = files.get(owner)?.expectedOutput ?? Buffer.alloc(0);
    expect((await stack.get(`out/${prefix}x.csv`)).equals(expected)).toBe(true);
    // Said once, not every round.
    expect(w.log().match(/is already the output of/g)).toHaveLength(1);
  });

  it("gives the output to the key a file moved to, once the key it left is gone", async () => {
    const prefix = "intake/n/";
    const first = data(30, 20);
    const moved = data(33, 21);
    await stack.put(`${prefix}a/x.csv`, first.csv);
    const w = watch(prefix, [], {}, `s3://${BUCKET}/out/${prefix}{name}`);
    const [job] = await eventually(async () => {
      const jobs = await jobsFor(prefix);
      return jobs.length === 1 ? jobs : undefined;
    });
    await waitForResult(queue, job?.id ?? "", { timeoutMs: 60_000 });
    // Moved (S3 has no move: a copy under the new key, then a delete of the old one), the
    // watch seeing the new key while the old one is still there: refused, for now.
    await stack.put(`${prefix}b/x.csv`, moved.csv);
    await eventually(async () => (/is already the output of/.test(w.log()) ? true : undefined));
    await stack.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${prefix}a/x.csv` }));
    const jobs = await eventually(async () => {
      const found = await jobsFor(prefix);
      return found.length === 2 ? found : undefined;
    });
    for (const j of jobs) await waitForResult(queue, j.id, { timeoutMs: 60_000 });
    expect(jobs.map((j) => j.source.key).sort()).toEqual([`${prefix}a/x.csv`, `${prefix}b/x.csv`]);
    expect((await stack.get(`out/${prefix}x.csv`)).equals(moved.expectedOutput)).toBe(true);
  });

  it("adds no job while a worker of s3csv 0.2 serves the queue, and adds it once that worker is gone", async () => {
    const prefix = "intake/j/";
    // What the census sees of a 0.2 worker: a BullMQ worker that announces no job contract.
    const older = new Worker(
      stack.config.QUEUE_NAME,
      async () => {
        throw new Error("a 0.2 worker would fail a watch job");
      },
      { connection: redisConnection(stack.config), prefix: stack.config.QUEUE_PREFIX },
    );
    await eventually(async () =>
      (await workerCensus(queue))?.contracts.includes(1) ? true : undefined,
    );
    const file = data(25, 15);
    await stack.put(`${prefix}f.csv`, file.csv);
    try {
      const w = watch(prefix);
      await eventually(async () => (/are of s3csv 0\.2/.test(w.log()) ? true : undefined));
      await new Promise((r) => setTimeout(r, 2000));
      expect(await jobsFor(prefix)).toHaveLength(0);
    } finally {
      await older.close();
    }
    await eventually(async () => ((await jobsFor(prefix)).length === 1 ? true : undefined));
    await expectOnce(prefix, new Map([[`${prefix}f.csv`, file]]));
  });

  it("goes on past an object S3 will not describe, and makes its job once S3 does", async () => {
    const prefix = "intake/m/";
    const files = new Map([
      [`${prefix}a.csv`, data(20, 18)],
      [`${prefix}b.csv`, data(25, 19)],
    ]);
    for (const [key, file] of files) await stack.put(key, file.csv);
    stack.s3Server.beforeRequest = (r) =>
      r.method === "HEAD" && r.url.includes(`/${prefix}a.csv`)
        ? { status: 403, code: "AccessDenied" }
        : undefined;
    const w = watch(prefix);
    await eventually(async () => ((await jobsFor(prefix)).length === 1 ? true : undefined));
    await eventually(async () => (/HeadObject failed/.test(w.log()) ? true : undefined));
    expect((await jobsFor(prefix)).map((j) => j.source.key)).toEqual([`${prefix}b.csv`]);
    stack.s3Server.beforeRequest = undefined;
    await eventually(async () => ((await jobsFor(prefix)).length === 2 ? true : undefined));
    await expectOnce(prefix, files);
  });

  it("leaves what is there alone with --since now on its first start", async () => {
    const prefix = "intake/d/";
    await stack.put(`${prefix}old.csv`, data(10).csv);
    const w = watch(prefix, ["--since", "now"]);
    // What is there once it has started is what it leaves alone.
    await eventually(async () => (/"msg":"watching"/.test(w.log()) ? true : undefined));
    await new Promise((r) => setTimeout(r, 1500));
    expect(await jobsFor(prefix)).toHaveLength(0);
    const fresh = data(20, 7);
    await stack.put(`${prefix}new.csv`, fresh.csv);
    await eventually(async () => ((await jobsFor(prefix)).length === 1 ? true : undefined));
    await expectOnce(prefix, new Map([[`${prefix}new.csv`, fresh]]));
  });

  it("refuses to start, in one line: outputs inside the prefix, a bad schema, a bucket or queue it cannot reach", async () => {
    const base = ["watch", "--source-prefix", `s3://${BUCKET}/intake/e/`, "--schema", schemaFile];
    const inside = await runCli(
      [...base, "--dest-template", `s3://${BUCKET}/intake/e/out/{name}`],
      stack.env,
    );
    expect(inside.code).toBe(2);
    expect(inside.stderr).toMatch(
      /writes under the watched s3:\/\/s3csv-test\/intake\/e\/.*would take its own outputs/,
    );
    const keyed = await runCli([...base, "--dest-template", `s3://${BUCKET}/{key}`], stack.env);
    expect(keyed.code).toBe(2);
    const badSchema = await writeSchemaFile("watch-bad", {
      fields: [{ name: "a", type: "number", constraints: { minimum: "zero" } }],
    });
    const bad = await runCli(
      [
        "watch",
        "--source-prefix",
        `s3://${BUCKET}/intake/e/`,
        "--dest-template",
        `s3://${BUCKET}/out/{name}`,
        "--schema",
        badSchema,
      ],
      stack.env,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("is not a value of type number/default");
    const nobucket = await runCli(
      [
        "watch",
        "--source-prefix",
        "s3://no-such-bucket/x/",
        "--dest-template",
        `s3://${BUCKET}/out/{name}`,
        "--schema",
        schemaFile,
      ],
      stack.env,
    );
    expect(nobucket.code).toBe(2);
    expect(nobucket.stderr).toMatch(/^s3csv: cannot list s3:\/\/no-such-bucket\/x\//);
    if (S3_BACKEND === "emulator") {
      const noqueue = await runCli(
        [
          ...base,
          "--dest-template",
          `s3://${BUCKET}/out/{name}`,
          "--sqs",
          `${stack.s3Server.endpoint}/000000000000/no-such-queue`,
        ],
        stack.env,
      );
      expect(noqueue.code).toBe(2);
      expect(noqueue.stderr).toMatch(/^s3csv: cannot reach the SQS queue/);
    }
    for (const run of [inside, keyed, bad, nobucket])
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
  });

  it.skipIf(S3_BACKEND !== "emulator")(
    "takes S3 events from SQS: a duplicate makes no second job, a malformed message is counted and deleted",
    async () => {
      const prefix = "intake/f/";
      const sqs = emulatorSqs();
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: "intake-events" }));
      const port = await freePort();
      const w = watch(prefix, ["--sqs", QueueUrl as string, "--metrics-port", String(port)]);
      const file = data(80, 9);
      const key = `${prefix}event file.csv`;
      await stack.put(key, file.csv);
      const head = await stack.s3.send(
        new (await import("@aws-sdk/client-s3")).HeadObjectCommand({ Bucket: BUCKET, Key: key }),
      );
      const event = JSON.stringify({
        Records: [
          {
            eventName: "ObjectCreated:Put",
            s3: {
              bucket: { name: BUCKET },
              object: {
                key: encodeURIComponent(key).replaceAll("%20", "+").replaceAll("%2F", "/"),
                eTag: (head.ETag ?? "").replaceAll('"', ""),
                size: file.csv.length,
              },
            },
          },
        ],
      });
      for (const body of [
        event,
        event,
        "not json at all",
        JSON.stringify({ Event: "s3:TestEvent" }),
      ]) {
        await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: body }));
      }
      await eventually(async () => ((await jobsFor(prefix)).length === 1 ? true : undefined));
      await eventually(() => drained(sqs, QueueUrl as string));
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/s3csv_watch_malformed_messages_total 1\b/);
      expect(metrics).toMatch(/s3csv_watch_jobs_added_total 1\b/);
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1000));
      await expectOnce(prefix, new Map([[key, file]]));
      expect(w.log()).toContain("malformed message");
      sqs.destroy();
    },
  );

  it.skipIf(S3_BACKEND !== "emulator")(
    "makes no job of a late event for a version already overwritten, nor a second job for the version that overwrote it",
    async () => {
      const prefix = "intake/k/";
      const key = `${prefix}orders.csv`;
      const sqs = emulatorSqs();
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: "late-events" }));
      const { HeadObjectCommand } = await import("@aws-sdk/client-s3");
      // Written twice while no watcher ran; the events wait in the queue, the older first.
      const events: string[] = [];
      const second = data(45, 17);
      for (const file of [data(35, 16), second]) {
        await nextSecond();
        await stack.put(key, file.csv);
        const head = await stack.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
        events.push(
          JSON.stringify({
            Records: [
              {
                eventName: "ObjectCreated:Put",
                eventTime: new Date().toISOString(),
                s3: {
                  bucket: { name: BUCKET },
                  object: { key, eTag: (head.ETag ?? "").replaceAll('"', "") },
                },
              },
            ],
          }),
        );
      }
      for (const body of [...events, events[1] as string]) {
        await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: body }));
      }
      const w = watch(prefix, ["--sqs", QueueUrl as string]);
      await eventually(() => drained(sqs, QueueUrl as string));
      await eventually(async () => ((await jobsFor(prefix)).length > 0 ? true : undefined));
      await new Promise((r) => setTimeout(r, 1500));
      await expectOnce(prefix, new Map([[key, second]]));
      expect(w.log().match(/"msg":"job added"/g)).toHaveLength(1);
      sqs.destroy();
    },
  );
});
