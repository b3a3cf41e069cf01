import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { startRedisServer } from "../dev/redisServer.ts";
import { queueSettings, transformQueue } from "../producer/enqueue.ts";
import { loadConfig } from "../shared/config.ts";
import { createS3Client } from "../shared/s3Client.ts";
import { benchCsv, messyCsv } from "./dataset.ts";
import { type Bench, BUCKET, here, lines, median, node, upload } from "./harness.ts";
import { installedCommand } from "./installedCommand.ts";
import { memory } from "./suites/memory.ts";
import { type Peers, peers } from "./suites/peers.ts";
import { resume } from "./suites/resume.ts";
import { smallJobs } from "./suites/smallJobs.ts";
import { split } from "./suites/split.ts";
import { splitShapes } from "./suites/splitShapes.ts";
import { type Dataset, type Throughput, throughput } from "./suites/throughput.ts";
import { watchListing } from "./suites/watch.ts";

// npm run bench: on one S3-compatible server (its own process) and one Redis, on two datasets
// (clean: canonical values; messy: non-canonical values, long quoted text, 5 % invalid rows):
//   throughput: s3csv end to end (A), the naive pipeline (B), lib-storage (C), a plain copy
//               (D), s3csv's row work alone (E), every run and the medians of --runs;
//   peers:      DuckDB and Polars, one thread, strict, beside s3csv's row work;
//   memory:     a worker's peak RSS for a --size input and a --large messy input;
//   resume:     a job killed at about 50% and resumed: what it read and uploaded again;
//   small jobs: --small 1 KB jobs on one and two worker processes: jobs/s, S3 requests per job;
//   split:      one --split MB file, whole on one worker against split on two (not in the
//               default set: --only split, or --only ...,split);
//   shapes:     split against whole on messy shapes of --shapes MB each (ragged rows, every
//               field quoted, row-like quoted notes, CR-only; not in the default set);
//   watch:      one s3csv watch listing round over --objects objects (not in the default set).
// Prints Markdown, then the figures against the targets. --quick is the short run CI does
// (figures printed, nothing asserted).

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "100" },
    large: { type: "string", default: "1000" },
    runs: { type: "string", default: "3" },
    small: { type: "string", default: "1000" },
    split: { type: "string", default: "1000" },
    shapes: { type: "string", default: "100" },
    objects: { type: "string", default: "100000" },
    only: { type: "string" },
    quick: { type: "boolean", default: false },
  },
});
const quick = values.quick;
const sizeMb = quick ? 10 : Number(values.size);
const largeMb = quick ? 0 : Number(values.large);
const runs = quick ? 1 : Number(values.runs);
const small = quick ? 100 : Number(values.small);
const suites = new Set((values.only ?? "throughput,peers,memory,resume,small").split(","));

const dir = await mkdtemp(join(tmpdir(), "s3csv-bench-"));
// Built before any server starts: a compile error ends the run instead of leaving them running.
const command = await installedCommand(dir).catch(async (error: unknown) => {
  await rm(dir, { recursive: true, force: true });
  throw error;
});
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
const bench: Bench = {
  env,
  s3: createS3Client(config, { credentials: { accessKeyId: "bench", secretAccessKey: "bench" } }),
  queue: transformQueue(queueSettings(config)),
  s3Pid: s3Server.pid as number,
  s3Counts: async () =>
    (await (await fetch(`${endpoint}/__counts`)).json()) as Record<string, number>,
  dir,
  command,
  out: (line = "") => process.stdout.write(`${line}\n`),
  say: (line) => process.stderr.write(`bench: ${line}\n`),
};

async function dataset(name: string, make: (bytes: number) => Buffer): Promise<Dataset> {
  const body = make(sizeMb * 1e6);
  const key = `in-${name}.csv`;
  const path = join(dir, key);
  await upload(bench.s3, key, body);
  await writeFile(path, body);
  return { name, key, path, bytes: body.length };
}

/** The figures the issue sets targets for, from this run, each with its target. */
function targets(measured: Map<string, { throughput?: Throughput; peers?: Peers }>) {
  bench.out("\n### Against the targets (this run, medians)\n");
  bench.out("| dataset | measure | value | target |");
  bench.out("| --- | --- | ---: | ---: |");
  for (const [name, m] of measured) {
    const cpu = (runs: ReadonlyArray<{ cpu: number }> | undefined) =>
      median((runs ?? []).map((r) => r.cpu));
    const speed = (id: string) => 1 / median((m.throughput?.get(id) ?? []).map((r) => r.seconds));
    const duck = cpu(m.peers?.cold.get("DuckDB"));
    if (m.throughput && m.peers) {
      const row = (what: string, value: number, target: string) =>
        bench.out(`| ${name} | ${what} | ${value.toFixed(2)} | ${target} |`);
      row(
        'worker CPU s per job (A2, values "as-read", S3 to S3) / DuckDB\'s (file to file)',
        cpu(m.throughput.get("A2")) / duck,
        "≤ 1.0",
      );
      row(
        "the same, a worker's second job (A2w) / DuckDB's second pass in one process (warm)",
        cpu(m.throughput.get("A2w")) / cpu(m.peers.warm.get("DuckDB")),
        "–",
      );
      row(
        "worker CPU s per job (A, default canonical values) / DuckDB's",
        cpu(m.throughput.get("A")) / duck,
        "–",
      );
      row(
        'row work CPU s (E, values "as-read", file to file) / DuckDB\'s',
        cpu(m.peers.cold.get("s3csv")) / duck,
        "≤ 0.6",
      );
      row(
        "the same, each one's second pass in one process (warm) / DuckDB's second",
        cpu(m.peers.warm.get("s3csv")) / cpu(m.peers.warm.get("DuckDB")),
        "–",
      );
    }
    if (m.throughput) {
      bench.out(
        `| ${name} | end to end / plain copy throughput (A/D) | ${(speed("A") / speed("D")).toFixed(2)} | ≥ 0.5 |`,
      );
      bench.out(
        `| ${name} | end to end, values "as-read" / plain copy throughput (A2/D) | ${(speed("A2") / speed("D")).toFixed(2)} | – |`,
      );
    }
  }
}

try {
  await bench.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const datasets = [await dataset("clean", benchCsv), await dataset("messy", messyCsv)];
  bench.out(
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; \`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\``,
  );
  const measured = new Map<string, { throughput?: Throughput; peers?: Peers }>();
  for (const d of datasets) {
    const m: { throughput?: Throughput; peers?: Peers } = {};
    if (suites.has("throughput")) m.throughput = await throughput(bench, d, runs);
    if (suites.has("peers")) m.peers = await peers(bench, d, runs);
    measured.set(d.name, m);
  }
  if (suites.has("memory")) {
    const [clean, messy] = datasets as [Dataset, Dataset];
    const inputs: Array<{ key: string; bytes: number; make?: () => Buffer }> = [clean, messy];
    if (largeMb > 0) {
      const large = messyCsv(largeMb * 1e6);
      inputs.push({ key: "in-large-messy.csv", bytes: large.length, make: () => large });
    }
    await memory(bench, inputs);
  }
  if (suites.has("resume")) await resume(bench, datasets[0] as Dataset);
  if (suites.has("small")) await smallJobs(bench, small);
  if (suites.has("split")) await split(bench, benchCsv(Number(values.split) * 1e6), runs);
  if (suites.has("shapes")) await splitShapes(bench, Number(values.shapes), runs);
  if (suites.has("watch")) await watchListing(bench, Number(values.objects), runs);
  targets(measured);
} finally {
  await bench.queue.close();
  bench.s3.destroy();
  s3Server.kill("SIGTERM");
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
}
