import { createHash } from "node:crypto";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { enqueueTransform } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import { type JobResult, SPLIT_AUTO_SHARD_BYTES } from "../../shared/job.ts";
import {
  type Bench,
  BUCKET,
  deleteOutputs,
  startWorker,
  transformJob,
  upload,
} from "../harness.ts";
import { cpuSeconds } from "../procStats.ts";

// One large file on one worker (split "off") against the same job split across two workers
// (split "auto": 64 MiB shards), and, as a control for what splitting itself costs, split on
// one worker; all timed the same way, from enqueue to result, in a different order each run.
// This machine has 2 cores and the S3 server shares them: the table gives each process's CPU
// beside the wall time. Every output and reject report is checked byte-identical (SHA-256).

/** One way of running the job: worker processes, and whether it splits. */
export interface Setup {
  workers: number;
  split: "off" | "auto" | number;
}
// "auto" splits only for two worker processes or more: the control names auto's shard size.
const SETUPS: Setup[] = [
  { workers: 1, split: "off" },
  { workers: 2, split: "auto" },
  { workers: 1, split: SPLIT_AUTO_SHARD_BYTES },
];

export interface SplitRun extends Setup {
  jobId: string;
  seconds: number;
  cpu: number[];
  s3Cpu: number;
  result: JobResult;
  digests: string[];
}

async function sha256(bench: Bench, key: string): Promise<string> {
  const got = await bench.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const hash = createHash("sha256");
  for await (const chunk of got.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest("hex");
}

/**
 * One run of one setup, from enqueue to result; `job` is the job for a destination (the
 * bench's schema by default). Its outputs' SHA-256 are kept, then every output is deleted.
 */
export async function once(
  bench: Bench,
  key: string,
  setup: Setup,
  run: number,
  job: (dest: string) => Record<string, unknown> = (dest) => transformJob(key, dest),
): Promise<SplitRun> {
  const { workers, split } = setup;
  const started = await Promise.all(Array.from({ length: workers }, () => startWorker(bench)));
  const cpuBefore = started.map((w) => w.cpuSeconds());
  const s3Before = cpuSeconds(bench.s3Pid);
  const dest = `split-out/${workers}-${split}-${run}.csv`;
  const t0 = performance.now();
  const base = job(dest);
  const options = { ...(base.options as Record<string, unknown> | undefined), split };
  const id = await enqueueTransform({ ...base, options }, { queue: bench.queue });
  const result = await waitForResult(bench.queue, id, { timeoutMs: 3_600_000 });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = started.map((w, i) => w.cpuSeconds() - (cpuBefore[i] ?? 0));
  const s3Cpu = cpuSeconds(bench.s3Pid) - s3Before;
  await Promise.all(started.map((w) => w.stop()));
  const digests = [await sha256(bench, dest), await sha256(bench, result.rejects.key)];
  await deleteOutputs(bench.s3);
  return { workers, split, seconds, cpu, s3Cpu, result, digests, jobId: id };
}

export async function split(bench: Bench, body: Buffer, runs: number) {
  const key = "in-split.csv";
  await upload(bench.s3, key, body);
  const { out } = bench;
  const mb = body.length / 1e6;
  out(`\n### One ${mb.toFixed(0)} MB file: whole on one worker, split on two, split on one\n`);
  out(
    "| run | order | workers | split | shards | seconds (enqueue to result) | MB/s | worker CPU s (each) | S3 server CPU s | rows | rejected |",
  );
  out("| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |");
  const all: SplitRun[] = [];
  for (let run = 1; run <= runs; run++) {
    // Each run starts with a different setup: none always pays for a cold machine.
    const order = SETUPS.map((_, i) => SETUPS[(i + run - 1) % SETUPS.length] as Setup);
    for (const [position, setup] of order.entries()) {
      const r = await once(bench, key, setup, run);
      all.push(r);
      out(
        `| ${run} | ${position + 1} | ${r.workers} | ${r.split} | ${r.result.shards} | ${r.seconds.toFixed(1)} | ${(mb / r.seconds).toFixed(1)} | ${r.cpu.map((c) => c.toFixed(1)).join(", ")} | ${r.s3Cpu.toFixed(1)} | ${r.result.rows.read.toLocaleString("en")} | ${r.result.rows.rejected.toLocaleString("en")} |`,
      );
    }
  }
  const reference = all[0] as SplitRun;
  const same = all.every(
    (r) =>
      r.digests.join() === reference.digests.join() &&
      r.result.rows.read === reference.result.rows.read,
  );
  if (!same) throw new Error("a run's output differs from the others'");
  if (all.some((r) => r.split !== "off" && r.result.shards < 2)) {
    throw new Error(
      `split "auto" did not split a ${mb.toFixed(0)} MB file: use --split 256 or more`,
    );
  }
  out("\nEvery run's output and reject report had the same SHA-256.");
  const of = (run: number, workers: number, split: Setup["split"]) =>
    all
      .slice((run - 1) * SETUPS.length, run * SETUPS.length)
      .find((r) => r.workers === workers && r.split === split) as SplitRun;
  for (let run = 1; run <= runs; run++) {
    const whole = of(run, 1, "off");
    out(
      `- run ${run}: split on two workers ${(of(run, 2, "auto").seconds / whole.seconds).toFixed(2)}×, split on one worker ${(of(run, 1, SPLIT_AUTO_SHARD_BYTES).seconds / whole.seconds).toFixed(2)}× the wall time of whole on one`,
    );
  }
}
