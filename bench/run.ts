import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { startRedisServer } from "../dev/redisServer.ts";
import {
  enqueueTransform,
  enqueueTransforms,
  queueSettings,
  transformQueue,
} from "../producer/enqueue.ts";
import { waitForResult } from "../producer/waitForResult.ts";
import { loadConfig } from "../shared/config.ts";
import type { Checkpoint, JobResult } from "../shared/job.ts";
import { createS3Client } from "../shared/s3Client.ts";
import { benchCsv, benchSchema } from "./dataset.ts";
import { cpuSeconds, peakRss } from "./procStats.ts";

// npm run bench: on one S3-compatible server (its own process) and one Redis, measures
//   throughput: s3csv end to end (A) against the naive pipeline (B), lib-storage (C), a raw
//               S3-to-S3 copy (D) and s3csv's CPU cost alone (E), medians of --runs runs;
//   memory:     a worker's peak RSS for a --size input and a --large input;
//   resume:     a job killed at about 50% and resumed: bytes re-read, re-uploaded, time;
//   small jobs: --small 1 KB jobs on one and two worker processes: jobs/s, S3 requests per job.
// Prints Markdown. --quick is the short run CI does (figures printed, nothing asserted).

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "100" },
    large: { type: "string", default: "1000" },
    runs: { type: "string", default: "3" },
    small: { type: "string", default: "1000" },
    only: { type: "string" },
    quick: { type: "boolean", default: false },
  },
});
const quick = values.quick;
const sizeMb = quick ? 10 : Number(values.size);
const largeMb = quick ? 0 : Number(values.large);
const runs = quick ? 1 : Number(values.runs);
const smallJobs = quick ? 100 : Number(values.small);
const suites = new Set((values.only ?? "throughput,memory,resume,small").split(","));
const BUCKET = "bench";
const node = process.execPath;
const here = (path: string) => new URL(path, import.meta.url).pathname;

interface Measure {
  seconds: number;
  /** CPU seconds the measured process (the worker, or the variant) used while measured. */
  cpu: number;
  rows: number;
  peakRss: number;
}

function lines(child: ChildProcess): AsyncIterator<string> {
  return createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function upload(s3: S3Client, key: string, body: Buffer): Promise<void> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }),
  );
  const parts = [];
  const step = 8 * 1024 * 1024;
  for (let at = 0, n = 1; at < body.length; at += step, n++) {
    const { ETag } = await s3.send(
      new UploadPartCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId,
        PartNumber: n,
        Body: body.subarray(at, at + step),
      }),
    );
    parts.push({ PartNumber: n, ETag });
  }
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: BUCKET,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
}

/**
 * Deletes every object but the throughput input and the small jobs' inputs. The S3 server keeps
 * objects in its memory: a suite's outputs (gigabytes after the memory suite) would otherwise
 * slow the suites after it.
 */
async function deleteOutputs(s3: S3Client): Promise<void> {
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken: token }),
    );
    for (const { Key } of page.Contents ?? []) {
      if (Key && Key !== "in.csv" && !Key.startsWith("small/"))
        await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key }));
    }
    token = page.NextContinuationToken;
  } while (token);
}

interface Worker {
  child: ChildProcess;
  peakRss(): number;
  cpuSeconds(): number;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

async function startWorker(env: NodeJS.ProcessEnv): Promise<Worker> {
  // The command users run: its launcher adds the worker's V8 heap settings.
  const child = spawn(here("../bin/s3csv"), ["worker"], {
    env: { ...env, LOG_LEVEL: "info", NODE_OPTIONS: process.env.BENCH_WORKER_NODE_OPTIONS ?? "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const out = lines(child);
  for (;;) {
    const line = await out.next();
    if (line.done) throw new Error("the worker exited before it started");
    if (line.value.includes('"worker started"')) break;
  }
  void (async () => {
    while (!(await out.next()).done) {
      // keep draining the worker's log
    }
  })();
  const exited = new Promise((r) => child.once("exit", r));
  return {
    child,
    peakRss: () => peakRss(child.pid as number),
    cpuSeconds: () => cpuSeconds(child.pid as number),
    async stop(signal = "SIGTERM") {
      child.kill(signal);
      await exited;
    },
  };
}

function transformJob(source: string, dest: string) {
  return {
    source: { bucket: BUCKET, key: source },
    destination: { bucket: BUCKET, key: dest },
    schema: benchSchema,
  };
}

async function variant(name: string, env: NodeJS.ProcessEnv, dest: string): Promise<Measure> {
  const child = spawn(
    node,
    [here("./variants.ts"), name, BUCKET, "in.csv", dest, String(sizeMb * 1e6)],
    {
      env,
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const first = await lines(child).next();
  await new Promise((r) => child.once("exit", r));
  return JSON.parse(first.value as string) as Measure;
}

async function s3csv(
  env: NodeJS.ProcessEnv,
  queue: Queue<unknown, JobResult>,
  source: string,
  dest: string,
) {
  const worker = await startWorker(env);
  const cpuAtStart = worker.cpuSeconds();
  const start = performance.now();
  const id = await enqueueTransform(transformJob(source, dest), { queue });
  const result = await waitForResult(queue, id);
  const seconds = (performance.now() - start) / 1000;
  const cpu = worker.cpuSeconds() - cpuAtStart;
  const rss = worker.peakRss();
  await worker.stop();
  return { seconds, cpu, rows: result.rows.read, peakRss: rss };
}

const dir = await mkdtemp(join(tmpdir(), "s3csv-bench-"));
const redis = await startRedisServer({ dir });
const s3Server = spawn(node, [here("./s3Server.ts")], { stdio: ["ignore", "pipe", "inherit"] });
const endpoint = (await lines(s3Server).next()).value as string;
const env: NodeJS.ProcessEnv = {
  ...process.env,
  REDIS_URL: redis.url,
  S3_ENDPOINT: endpoint,
  AWS_ACCESS_KEY_ID: "bench",
  AWS_SECRET_ACCESS_KEY: "bench",
  LOG_LEVEL: "warn",
};
const config = loadConfig(env);
const s3 = createS3Client(config, {
  credentials: { accessKeyId: "bench", secretAccessKey: "bench" },
});
const queue = transformQueue(queueSettings(config));
const s3Counts = async () =>
  (await (await fetch(`${endpoint}/__counts`)).json()) as Record<string, number>;
const out = (line = "") => process.stdout.write(`${line}\n`);
const say = (line: string) => process.stderr.write(`bench: ${line}\n`);

try {
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const csv = benchCsv(sizeMb * 1e6);
  await upload(s3, "in.csv", csv);
  const mb = csv.length / 1e6;
  out(
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; \`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\``,
  );

  if (suites.has("throughput")) {
    const variants: Array<[string, string, () => Promise<Measure>]> = [
      [
        "A",
        "s3csv end to end (enqueue → worker → completed)",
        () => s3csv(env, queue, "in.csv", "out-a.csv"),
      ],
      [
        "B",
        "naive: papaparse + zod + Papa.unparse + sequential UploadPart",
        () => variant("naive", env, "out-b.csv"),
      ],
      [
        "C",
        "lib-storage Upload fed by the naive parse/validate",
        () => variant("lib-storage", env, "out-c.csv"),
      ],
      [
        "D",
        "raw copy: GetObject stream → multipart upload",
        () => variant("raw-copy", env, "out-d.csv"),
      ],
      ["E", "s3csv parse + validate + serialize from memory", () => variant("cpu", env, "-")],
    ];
    // The S3 server's CPU while each variant runs: both share the machine's cores.
    const results = new Map<string, Array<Measure & { serverCpu: number }>>();
    for (let run = 0; run < runs; run++) {
      for (const [id, , measure] of variants) {
        const serverAtStart = cpuSeconds(s3Server.pid as number);
        const m = await measure();
        const serverCpu = cpuSeconds(s3Server.pid as number) - serverAtStart;
        results.set(id, [...(results.get(id) ?? []), { ...m, serverCpu }]);
        say(`run ${run + 1} ${id}: ${m.seconds.toFixed(2)} s`);
      }
    }
    const median3 = (id: string) => {
      const ms = results.get(id) ?? [];
      return {
        seconds: median(ms.map((m) => m.seconds)),
        rss: median(ms.map((m) => m.peakRss)),
        cpu: median(ms.map((m) => m.cpu)),
        serverCpu: median(ms.map((m) => m.serverCpu)),
      };
    };
    const rows = median((results.get("E") ?? []).map((m) => m.rows));
    const mbps = (id: string) => mb / median3(id).seconds;
    out(
      `\n### Throughput: ${mb.toFixed(1)} MB, ${rows.toLocaleString("en")} rows, 10 columns; median of ${runs}\n`,
    );
    out(
      "| variant | what | MB/s | rows/s | peak RSS (MB) | CPU s, measured process | CPU s, S3 server |",
    );
    out("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (const [id, what] of variants) {
      const m = median3(id);
      out(
        `| ${id} | ${what} | ${mbps(id).toFixed(1)} | ${Math.round(rows / m.seconds).toLocaleString("en")} | ${(m.rss / 1e6).toFixed(0)} | ${m.cpu.toFixed(1)} | ${m.serverCpu.toFixed(1)} |`,
      );
    }
    out(
      `\nA/D = ${(mbps("A") / mbps("D")).toFixed(2)}, A/B = ${(mbps("A") / mbps("B")).toFixed(2)}`,
    );
    await deleteOutputs(s3);
  }

  if (suites.has("memory")) {
    out(
      "\n### Worker peak RSS by input size (default PART_SIZE, PARTS_IN_FLIGHT, WORKER_CONCURRENCY)\n",
    );
    out("| input | seconds | MB/s | worker peak RSS (MB) |");
    out("| ---: | ---: | ---: | ---: |");
    const sizes: Array<[string, number]> = [["in.csv", mb]];
    if (largeMb > 0) {
      const large = benchCsv(largeMb * 1e6);
      await upload(s3, "large.csv", large);
      sizes.push(["large.csv", large.length / 1e6]);
    }
    for (const [key, size] of sizes) {
      const m = await s3csv(env, queue, key, `mem-${key}`);
      out(
        `| ${size.toFixed(0)} MB | ${m.seconds.toFixed(1)} | ${(size / m.seconds).toFixed(1)} | ${(m.peakRss / 1e6).toFixed(0)} |`,
      );
    }
    await deleteOutputs(s3);
  }

  if (suites.has("resume")) {
    // A worker is SIGKILLed once it has read about half the input; a second one resumes.
    const resumeEnv = { ...env, LOCK_DURATION_MS: "2000", STALLED_INTERVAL_MS: "500" };
    const clean = await s3csv(resumeEnv, queue, "in.csv", "resume-clean.csv");
    const before = await s3Counts();
    const first = await startWorker(resumeEnv);
    const start = performance.now();
    const id = await enqueueTransform(transformJob("in.csv", "resume.csv"), { queue });
    let atKill: Checkpoint | undefined;
    for (;;) {
      const checkpoint = ((await queue.getJob(id))?.data as { checkpoint?: Checkpoint } | undefined)
        ?.checkpoint;
      const resumable = checkpoint
        ? Math.min(checkpoint.output.mark.offset, checkpoint.rejects.mark.offset)
        : 0;
      if (resumable >= csv.length / 2) {
        await first.stop("SIGKILL");
        atKill = checkpoint;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const second = await startWorker(resumeEnv);
    const result = await waitForResult(queue, id);
    const total = (performance.now() - start) / 1000;
    await second.stop();
    const after = await s3Counts();
    const resumeFrom = Math.min(atKill?.output.mark.offset ?? 0, atKill?.rejects.mark.offset ?? 0);
    const uploadedParts = (after.UploadPart ?? 0) - (before.UploadPart ?? 0);
    const neededParts = result.parts + (result.rejects.bytes >= Number(config.PART_SIZE) ? 1 : 0);
    out("\n### Resume after SIGKILL at about 50%\n");
    out("| measure | value |");
    out("| --- | ---: |");
    out(`| input | ${mb.toFixed(1)} MB |`);
    out(`| resume offset (checkpoint at the kill) | ${(resumeFrom / 1e6).toFixed(1)} MB |`);
    out(
      `| read by the resumed attempt (a ranged GET from the offset) | ${((csv.length - resumeFrom) / 1e6).toFixed(1)} MB |`,
    );
    out(
      `| parts uploaded by both attempts / parts in the outputs | ${uploadedParts} / ${neededParts} |`,
    );
    out(
      `| time resumed (kill, lock expiry, takeover) / uninterrupted | ${total.toFixed(1)} s / ${clean.seconds.toFixed(1)} s |`,
    );
    await deleteOutputs(s3);
  }

  if (suites.has("small")) {
    const body = benchCsv(1000);
    for (let i = 0; i < smallJobs; i++) {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `small/${i}.csv`, Body: body }));
    }
    out(`\n### ${smallJobs} small jobs (${body.length} bytes each)\n`);
    out(
      "| worker processes | concurrency each | jobs/s | S3 requests per job | S3 writes per job |",
    );
    out("| ---: | ---: | ---: | ---: | ---: |");
    for (const [processes, concurrency] of [
      [1, 2],
      [2, 2],
      [2, 16],
    ] as const) {
      const workers = await Promise.all(
        Array.from({ length: processes }, () =>
          startWorker({ ...env, WORKER_CONCURRENCY: String(concurrency) }),
        ),
      );
      const before = await s3Counts();
      const start = performance.now();
      const tag = `${processes}x${concurrency}`;
      const inputs = Array.from({ length: smallJobs }, (_, i) =>
        transformJob(`small/${i}.csv`, `small-out/${tag}/${i}.csv`),
      );
      await enqueueTransforms(inputs, { queue });
      for (;;) {
        const counts = await queue.getJobCounts("completed", "failed");
        if ((counts.completed ?? 0) + (counts.failed ?? 0) >= smallJobs) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const seconds = (performance.now() - start) / 1000;
      const after = await s3Counts();
      await Promise.all(workers.map((w) => w.stop()));
      const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      const requests = Object.keys(after).reduce((sum, k) => sum + delta(k), 0);
      const writes = [
        "PutObject",
        "UploadPart",
        "CreateMultipartUpload",
        "CompleteMultipartUpload",
      ].reduce((sum, k) => sum + delta(k), 0);
      await queue.clean(0, 100_000, "completed");
      out(
        `| ${processes} | ${concurrency} | ${(smallJobs / seconds).toFixed(0)} | ${(requests / smallJobs).toFixed(1)} | ${(writes / smallJobs).toFixed(1)} |`,
      );
    }
  }
} finally {
  await queue.close();
  s3.destroy();
  s3Server.kill("SIGTERM");
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
}
