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
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { startRedisServer } from "../dev/redisServer.ts";
import { enqueueTransform, queueSettings, transformQueue } from "../producer/enqueue.ts";
import { waitForResult } from "../producer/waitForResult.ts";
import { loadConfig } from "../shared/config.ts";
import { createS3Client } from "../shared/s3Client.ts";
import { benchCsv, benchSchema } from "./dataset.ts";
import { peakRss } from "./peakRss.ts";

// npm run bench [-- --size MB --runs N]: s3csv end to end (A) against the naive pipeline (B),
// lib-storage (C), a raw S3-to-S3 copy (D) and the CPU cost alone (E), on the same
// S3-compatible server and Redis. Prints a Markdown table of medians.

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "100" },
    runs: { type: "string", default: "3" },
    only: { type: "string" },
  },
});
const sizeMb = Number(values.size);
const runs = Number(values.runs);
const BUCKET = "bench";
const node = process.execPath;
const here = (path: string) => new URL(path, import.meta.url).pathname;

interface Measure {
  seconds: number;
  rows: number;
  peakRss: number;
}

function lines(child: ChildProcess): AsyncIterator<string> {
  return createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
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

async function s3csv(env: NodeJS.ProcessEnv, dest: string): Promise<Measure> {
  const worker = spawn(node, [here("../bin/s3csv.js"), "worker"], {
    env: { ...env, LOG_LEVEL: "info", NODE_OPTIONS: process.env.BENCH_WORKER_NODE_OPTIONS ?? "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const out = lines(worker);
  for (;;) {
    const line = await out.next();
    if (line.done) throw new Error("the worker exited before it started");
    if (line.value.includes('"worker started"')) break;
  }
  const config = loadConfig(env);
  const queue = transformQueue(queueSettings(config));
  const start = performance.now();
  const id = await enqueueTransform(
    {
      source: { bucket: BUCKET, key: "in.csv" },
      destination: { bucket: BUCKET, key: dest },
      schema: benchSchema,
    },
    { queue },
  );
  const result = await waitForResult(queue, id);
  const seconds = (performance.now() - start) / 1000;
  const rss = peakRss(worker.pid as number);
  await queue.close();
  worker.kill("SIGTERM");
  await new Promise((r) => worker.once("exit", r));
  return { seconds, rows: result.rows.read, peakRss: rss };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
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
try {
  const s3 = createS3Client(loadConfig(env), {
    credentials: { accessKeyId: "bench", secretAccessKey: "bench" },
  });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const csv = benchCsv(sizeMb * 1e6);
  await upload(s3, "in.csv", csv);
  s3.destroy();
  const mb = csv.length / 1e6;
  process.stderr.write(`bench: ${mb.toFixed(1)} MB, ${runs} runs per variant\n`);

  const variants: Array<[string, string, () => Promise<Measure>]> = [
    ["A", "s3csv end to end (enqueue → worker → completed)", () => s3csv(env, "out-a.csv")],
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
  const results = new Map<string, Measure[]>();
  for (let run = 0; run < runs; run++) {
    for (const [id, , measure] of variants) {
      if (values.only && !values.only.split(",").includes(id)) continue;
      const m = await measure();
      results.set(id, [...(results.get(id) ?? []), m]);
      process.stderr.write(`  run ${run + 1} ${id}: ${m.seconds.toFixed(2)} s\n`);
    }
  }
  const summary = new Map(
    [...results].map(([id, ms]) => [
      id,
      {
        seconds: median(ms.map((m) => m.seconds)),
        rows: median(ms.map((m) => m.rows)),
        rss: median(ms.map((m) => m.peakRss)),
      },
    ]),
  );
  const mbps = (id: string) => mb / (summary.get(id)?.seconds ?? Number.NaN);
  const rowsOf = summary.get("E")?.rows ?? 0;
  console.log(
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}`,
  );
  console.log(`Input: ${mb.toFixed(1)} MB, ${rowsOf} rows, 10 columns; median of ${runs} runs\n`);
  console.log("| variant | what | MB/s | rows/s | peak RSS (MB) |");
  console.log("| --- | --- | ---: | ---: | ---: |");
  for (const [id, what] of variants) {
    const s = summary.get(id);
    if (!s) continue;
    console.log(
      `| ${id} | ${what} | ${mbps(id).toFixed(1)} | ${Math.round(rowsOf / s.seconds).toLocaleString("en")} | ${(s.rss / 1e6).toFixed(0)} |`,
    );
  }
  console.log(
    `\nA/D = ${(mbps("A") / mbps("D")).toFixed(2)}, A/B = ${(mbps("A") / mbps("B")).toFixed(2)}`,
  );
} finally {
  s3Server.kill("SIGTERM");
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
}
