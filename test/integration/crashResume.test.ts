import { gunzipSync, gzipSync } from "node:zlib";
import type { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { enqueueTransform } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint, JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { isPartUpload } from "../support/s3Server.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, jobRecordsLeft, queueFor, run } from "./helpers.ts";

// Crash and resume with real processes: a worker is SIGKILLed at a chosen instant (the S3 server
// holds or observes the request that marks it), another worker process finishes the job, and
// both outputs must be byte-identical to a run that never crashed.

const MiB = 1024 * 1024;
const SOURCE = "crash/in.csv";
const FEW_REJECTS = "crash/few-rejects.csv";
const DUPLICATES = "crash/duplicates.csv";
const GZIPPED = "crash/few-rejects.csv.gz";
const UTF16 = "crash/few-rejects.utf16.csv";
// Notes of random base64: output that gzip cannot shrink much, so it still spans several parts.
const NOISY = "crash/noisy.csv";

function noisyCsv(rows: number): Buffer {
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed;
  };
  const lines = ["id,email,score,active,joined,note"];
  for (let i = 1; i <= rows; i++) {
    const note = Buffer.alloc(120);
    for (let j = 0; j < note.length; j++) note[j] = random() >> 16;
    const score = i % 10 === 0 ? 500 : i % 100;
    lines.push(`${i},user${i}@example.com,${score},true,2024-01-01,${note.toString("base64")}`);
  }
  return Buffer.from(`${lines.join("\n")}\n`);
}
// `id` must be unique: the duplicates at the end of the file repeat ids from its start, before
// any resume point, so a resumed attempt must know every id seen before it.
const uniqueSchema = {
  ...peopleSchema,
  fields: peopleSchema.fields.map((f) =>
    f.name === "id" ? { ...f, constraints: { ...f.constraints, unique: true } } : f,
  ),
};

describe("crash and resume (SIGKILL of a worker process)", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  type Clean = { output: Buffer; rejects: Buffer; result: JobResult };
  let clean: Clean;
  let cleanFew: Clean | undefined;
  let cleanUtf16: Clean | undefined;
  let cleanGz: Clean | undefined;
  let cleanNoisy: Buffer | undefined;
  let cleanUnique: Clean | undefined;
  const workers: WorkerProcess[] = [];
  const held: Array<() => void> = [];

  const startWorker = () => {
    const w = spawnWorker(stack.env);
    workers.push(w);
    return w;
  };

  beforeAll(async () => {
    stack = await startStack({
      PART_SIZE: String(5 * MiB),
      PARTS_IN_FLIGHT: "2",
      LOCK_DURATION_MS: "2000",
      STALLED_INTERVAL_MS: "500",
    });
    queue = queueFor(stack);
    // Half the rows are invalid, so the output and the reject report both span several parts.
    const data = peopleData({ rows: 130_000, invalidEvery: 2, pad: 120 });
    await stack.put(SOURCE, data.csv);
    // A small reject report: it rides in the checkpoint (carry) instead of holding resume back.
    const fewRejects = peopleData({ rows: 130_000, invalidEvery: 997, pad: 120 }).csv;
    await stack.put(FEW_REJECTS, fewRejects);
    await stack.put(GZIPPED, gzipSync(fewRejects));
    await stack.put(
      UTF16,
      Buffer.concat([
        Buffer.from([0xff, 0xfe]),
        Buffer.from(fewRejects.toString("utf8"), "utf16le"),
      ]),
    );
    const w = startWorker();
    const result = await run(queue, job(SOURCE, "clean/out.csv", peopleSchema));
    const resultFew = await run(queue, job(FEW_REJECTS, "clean-few/out.csv", peopleSchema));
    const noisy = noisyCsv(140_000);
    await stack.put(NOISY, noisy);
    const resultNoisy = await run(queue, job(NOISY, "clean-noisy/out.csv", peopleSchema));
    const resultGz = await run(
      queue,
      job(NOISY, "clean-gz/out.csv", peopleSchema, { outputCompression: "gzip" }),
    );
    // Its own baseline: the UTF-8 file's invalid bytes are U+FFFD (valid) once in UTF-16.
    const resultUtf16 = await run(queue, job(UTF16, "clean-utf16/out.csv", peopleSchema));
    const few = peopleData({ rows: 130_000, invalidEvery: 997, pad: 120 });
    const firstRows = few.csv.toString("utf8").split("\n").slice(1, 201).join("\n");
    await stack.put(DUPLICATES, Buffer.concat([few.csv, Buffer.from(`${firstRows}\n`)]));
    const resultUnique = await run(queue, job(DUPLICATES, "clean-unique/out.csv", uniqueSchema));
    cleanUnique = {
      output: await stack.get("clean-unique/out.csv"),
      rejects: await stack.get("clean-unique/out.rejects.csv"),
      result: resultUnique,
    };
    expect(resultUnique.rows.errors["unique-error"]).toBeGreaterThan(100);
    await w.kill("SIGTERM");
    clean = {
      output: await stack.get("clean/out.csv"),
      rejects: await stack.get("clean/out.rejects.csv"),
      result,
    };
    cleanNoisy = await stack.get("clean-noisy/out.csv");
    expect(resultNoisy.rows).toEqual(resultGz.rows);
    cleanGz = {
      output: await stack.get("clean-gz/out.csv"),
      rejects: await stack.get("clean-gz/out.rejects.csv"),
      result: resultGz,
    };
    cleanUtf16 = {
      output: await stack.get("clean-utf16/out.csv"),
      rejects: await stack.get("clean-utf16/out.rejects.csv"),
      result: resultUtf16,
    };
    cleanFew = {
      output: await stack.get("clean-few/out.csv"),
      rejects: await stack.get("clean-few/out.rejects.csv"),
      result: resultFew,
    };
    expect(clean.output.equals(data.expectedOutput)).toBe(true);
    expect(clean.output.length).toBeGreaterThan(10 * MiB);
    expect(clean.rejects.length).toBeGreaterThan(10 * MiB);
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

  const hold = () =>
    new Promise<void>((resolve) => {
      held.push(resolve);
    });

  async function checkpointOf(jobId: string): Promise<Checkpoint | undefined> {
    const j = await queue.getJob(jobId);
    return (j?.data as { checkpoint?: Checkpoint } | undefined)?.checkpoint;
  }

  /** An arm for crashAndResume: parts after `done` are held; the worker dies once `done` are checkpointed. */
  const killAfterParts =
    (done: number) =>
    ({ jobId, kill, key }: { jobId: () => string; kill: () => Promise<void>; key: string }) => {
      stack.s3Server.beforeRequest = (r) => (isPartUpload(r, key, done + 1) ? hold() : undefined);
      void eventually(async () =>
        (await checkpointOf(jobId()))?.output.parts.length === done ? true : undefined,
      ).then(kill);
    };

  /** Runs the job on a worker that is killed by `arm`, then lets a second worker finish it. */
  async function crashAndResume(
    name: string,
    arm: (ctx: {
      jobId: () => string;
      kill: () => Promise<void>;
      key: string;
    }) => Promise<void> | void,
    source = SOURCE,
    baseline: () => Clean = () => clean,
    schema: unknown = peopleSchema,
    options: Record<string, unknown> = {},
  ) {
    const key = `${name}/out.csv`;
    const first = startWorker();
    let jobId = "";
    let killed = false;
    const kill = async () => {
      killed = true;
      await first.kill("SIGKILL");
    };
    const armed = arm({ jobId: () => jobId, kill, key });
    const requestsBefore = stack.s3Server.requests.length;
    jobId = await enqueueTransform(job(source, key, schema, options), { queue });
    await armed;
    await eventually(() => (killed ? true : undefined)).catch((error) => {
      throw new Error(`${error}; worker log:\n${first.output()}`);
    });
    const atKill = await checkpointOf(jobId);
    stack.s3Server.beforeRequest = undefined;
    stack.s3Server.beforeResponse = undefined;
    for (const release of held.splice(0)) release();
    startWorker();
    const result = await waitForResult(queue, jobId, { timeoutMs: 110_000 });
    const output = await stack.get(key);
    const rejects = await stack.get(`${name}/out.rejects.csv`);
    const expected = baseline();
    expect(output.equals(expected.output), "output is byte-identical to the clean run").toBe(true);
    expect(
      rejects.equals(expected.rejects),
      "reject report is byte-identical to the clean run",
    ).toBe(true);
    expect(result.rows).toEqual(expected.result.rows);
    expect(result.resumes).toBeGreaterThanOrEqual(1);
    expect(await stack.openUploads(), "no multipart upload is left open").toEqual([]);
    expect(await jobRecordsLeft(stack, jobId), "no carried text or record is left").toEqual([]);
    // Parts that were checkpointed when the worker died are never uploaded again.
    const requests = stack.s3Server.requests.slice(requestsBefore);
    for (const [which, target] of [
      ["output", key],
      ["rejects", `${name}/out.rejects.csv`],
    ] as const) {
      const done = atKill?.[which].parts ?? [];
      for (const part of done) {
        const uploads = requests.filter(
          (r) => isPartUpload(r, target) && Number(r.query.partNumber) === part.PartNumber,
        );
        expect(uploads.length, `${which} part ${part.PartNumber} uploaded once`).toBe(1);
      }
    }
    return { result, atKill, requests, jobId };
  }

  it("(a) right after a part's checkpoint", async () => {
    const { atKill } = await crashAndResume("crash-a", killAfterParts(1));
    expect(atKill?.output.parts.length).toBe(1);
    expect(atKill?.output.mark.offset).toBeGreaterThan(0);
  });

  it("(b) in the middle of a part: stored by S3, its response never seen", async () => {
    const { requests, atKill } = await crashAndResume("crash-b", ({ kill, key }) => {
      stack.s3Server.beforeResponse = async (r) => {
        if (isPartUpload(r, key, 2) && Number(r.query.partNumber) === 2) await kill();
      };
    });
    expect(atKill?.output.parts.map((p) => p.PartNumber)).toEqual([1]);
    // Part 2 was in flight: it is uploaded again, and nothing before it.
    const part2 = requests.filter(
      (r) => isPartUpload(r, "crash-b/out.csv") && r.query.partNumber === "2",
    );
    expect(part2.length).toBe(2);
  });

  it("(c) after CompleteMultipartUpload, before the job is marked done", async () => {
    const { atKill } = await crashAndResume("crash-c", ({ kill, key }) => {
      stack.s3Server.beforeResponse = async (r) => {
        if (r.completedParts && r.url.includes(`/${key}?`)) await kill();
      };
    });
    expect(atKill?.output.completed).toBeUndefined();
  });

  it("(d) right after CreateMultipartUpload", async () => {
    const { atKill } = await crashAndResume("crash-d", ({ jobId, kill, key }) => {
      stack.s3Server.beforeRequest = (r) => (isPartUpload(r, key) ? hold() : undefined);
      void eventually(async () =>
        (await checkpointOf(jobId()))?.output.uploadId ? true : undefined,
      ).then(kill);
    });
    expect(atKill?.output.uploadId).toBeDefined();
    expect(atKill?.output.parts).toEqual([]);
  });

  it("(e) a small reject report rides in the checkpoint, so resume re-reads only what followed it", async () => {
    const { atKill, requests, jobId } = await crashAndResume(
      "crash-e",
      killAfterParts(2),
      FEW_REJECTS,
      () => cleanFew as Clean,
    );
    expect(atKill?.rejects.parts).toEqual([]);
    expect(atKill?.rejects.carry?.bytes).toBeGreaterThan(0);
    // The carried text lives next to the job in Redis, and is gone once the job completes.
    const redis = new Redis(stack.redis.port, "127.0.0.1");
    expect(await redis.keys(`bull:csv-transform:${jobId}:carry:*`)).toEqual([]);
    redis.disconnect();
    // The report's own mark is where its carried text ends: at or past the output's last part.
    expect(atKill?.rejects.mark.offset).toBeGreaterThanOrEqual(
      atKill?.output.mark.offset ?? Number.NaN,
    );
    const resumedRead = requests.filter(
      (r) => r.method === "GET" && r.url.includes(FEW_REJECTS) && r.range,
    );
    expect(resumedRead).toHaveLength(1);
    expect(resumedRead[0]?.range).toMatch(new RegExp(`^bytes=${atKill?.output.mark.offset}-`));
  });

  it("(f) unique ids stay unique across a resume: the rows before it are replayed", async () => {
    const { atKill, result } = await crashAndResume(
      "crash-f",
      killAfterParts(1),
      DUPLICATES,
      () => cleanUnique as Clean,
      uniqueSchema,
    );
    expect(atKill?.output.mark.offset).toBeGreaterThan(0);
    expect(result.rows.errors["unique-error"]).toBe(
      cleanUnique?.result.rows.errors["unique-error"],
    );
  });

  it("(g) a gzip source resumes by decompressing from the start and skipping to the checkpoint", async () => {
    const { atKill, requests } = await crashAndResume(
      "crash-g",
      killAfterParts(2),
      GZIPPED,
      () => cleanFew as Clean,
    );
    expect(atKill?.source.gzip).toBe(true);
    expect(atKill?.output.mark.offset).toBeGreaterThan(0);
    // No ranged reads: offsets are in the decompressed text.
    expect(
      requests.filter((r) => r.method === "GET" && r.url.includes(GZIPPED) && r.range),
    ).toEqual([]);
  });

  it("(h) a UTF-16 source resumes by transcoding from the start, exact output", async () => {
    const { atKill, requests } = await crashAndResume(
      "crash-h",
      killAfterParts(2),
      UTF16,
      () => cleanUtf16 as Clean,
    );
    expect(atKill?.source.utf16).toBe("le");
    expect(atKill?.output.mark.offset).toBeGreaterThan(0);
    expect(requests.filter((r) => r.method === "GET" && r.url.includes(UTF16) && r.range)).toEqual(
      [],
    );
  });

  it("(i) gzip output: parts of whole gzip members, the same bytes after a resume", async () => {
    const { atKill } = await crashAndResume(
      "crash-i",
      killAfterParts(1),
      NOISY,
      () => cleanGz as Clean,
      peopleSchema,
      { outputCompression: "gzip" },
    );
    expect(atKill?.output.parts.length).toBe(1);
    const gz = cleanGz as Clean;
    expect(gunzipSync(gz.output).equals(cleanNoisy as Buffer)).toBe(true);
    expect(gz.output.length).toBeLessThan((cleanNoisy as Buffer).length);
    expect(gz.result.parts).toBeGreaterThanOrEqual(3);
  });

  it("fails a job whose source changed between attempts, and aborts its uploads", async () => {
    const key = "changed/out.csv";
    await stack.put("changed/in.csv", peopleData({ rows: 130_000, invalidEvery: 2, pad: 120 }).csv);
    const first = startWorker();
    stack.s3Server.beforeRequest = (r) => (isPartUpload(r, key, 2) ? hold() : undefined);
    const jobId = await enqueueTransform(job("changed/in.csv", key, peopleSchema), { queue });
    await eventually(async () =>
      (await checkpointOf(jobId))?.output.parts.length === 1 ? true : undefined,
    );
    await first.kill("SIGKILL");
    stack.s3Server.beforeRequest = undefined;
    for (const release of held.splice(0)) release();
    await stack.put("changed/in.csv", peopleData({ rows: 1000, invalidEvery: 2 }).csv);
    startWorker();
    await expect(waitForResult(queue, jobId, { timeoutMs: 60_000 })).rejects.toThrow(
      /source s3:\/\/s3csv-test\/changed\/in.csv changed since the job started .* enqueue a new job/,
    );
    expect(await stack.openUploads()).toEqual([]);
    expect(await jobRecordsLeft(stack, jobId), "a failed job leaves no record").toEqual([]);
  });
});
