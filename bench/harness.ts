import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { DeleteObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { Queue } from "bullmq";
import { enqueueTransform } from "../producer/enqueue.ts";
import { waitForResult } from "../producer/waitForResult.ts";
import type { JobResult } from "../shared/job.ts";
import { benchSchema } from "./dataset.ts";
import { cpuSeconds, peakRss } from "./procStats.ts";

// What the benchmark's suites share: the S3 and Redis they run against, worker processes
// started by the s3csv command, s3csv jobs and the comparison variants, and the servers' counts.

export const BUCKET = "bench";
export const node = process.execPath;
export const here = (path: string) => new URL(path, import.meta.url).pathname;

/** One run of one variant. */
export interface Measure {
  seconds: number;
  /** CPU seconds the measured process (the worker, or the variant) used while measured. */
  cpu: number;
  /** Rows the variant parsed (0: it parses none); valid and rejected where it judges them. */
  rows: number;
  valid?: number;
  rejected?: number;
  peakRss: number;
  /** The output an s3csv job wrote. */
  output?: { etag: string; bytes: number };
}

export interface Bench {
  env: NodeJS.ProcessEnv;
  s3: S3Client;
  queue: Queue<unknown, JobResult>;
  /** The S3 server's process, and what it counted (requests by kind, bytes in and out). */
  s3Pid: number;
  s3Counts(): Promise<Record<string, number>>;
  dir: string;
  /** The s3csv command workers are started with (bench/installedCommand.ts). */
  command: string;
  out(line?: string): void;
  say(line: string): void;
}

export function lines(child: ChildProcess): AsyncIterator<string> {
  return createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** Uploads a test input in 8 MiB parts (the S3 emulator caps request bodies). */
export async function upload(s3: S3Client, key: string, body: Buffer): Promise<void> {
  const params = { Bucket: BUCKET, Key: key, Body: body };
  await new Upload({ client: s3, params, partSize: 8 * 1024 * 1024, queueSize: 1 }).done();
}

/**
 * Deletes every object but the inputs (`in-*`, `small/`). The S3 server keeps objects in its
 * memory: a suite's outputs (gigabytes after the memory suite) would slow the suites after it.
 */
export async function deleteOutputs(s3: S3Client): Promise<void> {
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken: token }),
    );
    for (const { Key } of page.Contents ?? []) {
      if (Key && !Key.startsWith("in-") && !Key.startsWith("small/"))
        await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key }));
    }
    token = page.NextContinuationToken;
  } while (token);
}

export interface Worker {
  child: ChildProcess;
  peakRss(): number;
  cpuSeconds(): number;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startWorker(bench: Bench, env = bench.env): Promise<Worker> {
  // The command users run: its launcher adds the worker's V8 flags and glibc setting.
  const child = spawn(bench.command, ["worker"], {
    env: { ...env, LOG_LEVEL: "info", NODE_OPTIONS: process.env.BENCH_WORKER_NODE_OPTIONS ?? "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const out = lines(child);
  for (;;) {
    const line = await out.next();
    if (line.done) throw new Error("the worker exited before it started");
    if (line.value.includes('"worker started"')) break;
  }
  // Its log is read to the end, so that it never blocks on a full pipe.
  void (async () => {
    while (!(await out.next()).done);
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

export function transformJob(source: string, dest: string, options?: { values: "as-read" }) {
  return {
    source: { bucket: BUCKET, key: source },
    destination: { bucket: BUCKET, key: dest },
    schema: benchSchema,
    ...(options ? { options } : {}),
  };
}

/**
 * One s3csv job on a worker of its own, timed as BullMQ times it (from the worker taking the
 * job to the job finishing: processedOn to finishedOn), as the comparison variants time their
 * own work; CPU is the worker process's over the whole job. `warm`: the worker has done the
 * same job once before (its peak RSS then covers both).
 */
export async function s3csvJob(
  bench: Bench,
  source: string,
  dest: string,
  env = bench.env,
  options?: { values: "as-read" },
  warm?: { beforeTimed(): void },
) {
  const worker = await startWorker(bench, env);
  if (warm) {
    // A long-lived worker's next job: the same job done once before, untimed, on this worker.
    const id = await enqueueTransform(transformJob(source, `${dest}.first`, options), {
      queue: bench.queue,
    });
    await waitForResult(bench.queue, id);
    warm.beforeTimed();
  }
  const cpuAtStart = worker.cpuSeconds();
  const id = await enqueueTransform(transformJob(source, dest, options), { queue: bench.queue });
  const result = await waitForResult(bench.queue, id);
  const cpu = worker.cpuSeconds() - cpuAtStart;
  const rss = worker.peakRss();
  await worker.stop();
  const job = await bench.queue.getJob(id);
  const seconds = ((job?.finishedOn ?? 0) - (job?.processedOn ?? 0)) / 1000;
  const { read, valid, rejected } = result.rows;
  return { seconds, cpu, rows: read, valid, rejected, peakRss: rss, output: result.output };
}

/**
 * The flags bin/s3csv starts Node with (its `exec` line: the one place they are set) and the
 * variables it exports (`export NAME="${NAME:-value}"`).
 */
function s3csvLaunch(): { flags: string[]; env: Record<string, string> } {
  const script = readFileSync(here("../bin/s3csv"), "utf8");
  const env: Record<string, string> = {};
  for (const [, name, value] of script.matchAll(/^export (\w+)="\$\{\1:-([^}]*)\}"$/gm)) {
    env[name as string] = value as string;
  }
  const exec = script.split("\n").find((line) => line.startsWith("exec "));
  const words = exec?.split(/\s+/) ?? [];
  const flags = words.slice(words.indexOf('"$node"') + 1, words.indexOf('"$main"'));
  if (flags.length === 0 || !flags.every((flag) => flag.startsWith("--"))) {
    throw new Error('bin/s3csv\'s exec line has no flags between "$node" and "$main"');
  }
  return { flags, env };
}

/** A comparison variant (bench/variants.ts) in a process of its own. */
export async function variant(
  bench: Bench,
  name: string,
  source: string,
  dest: string,
): Promise<Measure> {
  // s3csv's own row work runs under the flags and variables the s3csv command starts Node with
  // (from the TypeScript sources: its peak RSS holds Node's type stripper, a worker's does not).
  const launch = name.startsWith("cpu") ? s3csvLaunch() : { flags: [], env: {} };
  const child = spawn(node, [...launch.flags, here("./variants.ts"), name, BUCKET, source, dest], {
    env: { ...launch.env, ...bench.env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const first = await lines(child).next();
  await new Promise((r) => child.once("exit", r));
  return JSON.parse(first.value as string) as Measure;
}
