import { PutObjectCommand } from "@aws-sdk/client-s3";
import { enqueueTransforms } from "../../producer/enqueue.ts";
import { benchCsv } from "../dataset.ts";
import { type Bench, BUCKET, startWorker, transformJob } from "../harness.ts";

// Many 1 KB jobs on one and two worker processes: jobs per second, the worker CPU each job
// costs (every worker process, from the first job enqueued to the last one finished), and the S3
// requests (and writes) each job costs, as the S3 server counted them.

export async function smallJobs(bench: Bench, count: number) {
  const body = benchCsv(1000);
  for (let i = 0; i < count; i++) {
    await bench.s3.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: `small/${i}.csv`, Body: body }),
    );
  }
  const { out } = bench;
  out(`\n### ${count} small jobs (${body.length} bytes each)\n`);
  out(
    "| worker processes | concurrency each | jobs/s | worker CPU ms per job | S3 requests per job | S3 writes per job |",
  );
  out("| ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const [processes, concurrency] of [
    [1, 2],
    [2, 2],
    [2, 16],
  ] as const) {
    const workers = await Promise.all(
      Array.from({ length: processes }, () =>
        startWorker(bench, { ...bench.env, WORKER_CONCURRENCY: String(concurrency) }),
      ),
    );
    const before = await bench.s3Counts();
    const cpuBefore = workers.reduce((sum, w) => sum + w.cpuSeconds(), 0);
    const start = performance.now();
    const tag = `${processes}x${concurrency}`;
    const inputs = Array.from({ length: count }, (_, i) =>
      transformJob(`small/${i}.csv`, `small-out/${tag}/${i}.csv`),
    );
    await enqueueTransforms(inputs, { queue: bench.queue });
    for (;;) {
      const counts = await bench.queue.getJobCounts("completed", "failed");
      if ((counts.completed ?? 0) + (counts.failed ?? 0) >= count) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (performance.now() - start) / 1000;
    const after = await bench.s3Counts();
    const cpu = workers.reduce((sum, w) => sum + w.cpuSeconds(), 0) - cpuBefore;
    await Promise.all(workers.map((w) => w.stop()));
    const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
    const kinds = Object.keys(after).filter((k) => !k.startsWith("bytes"));
    const requests = kinds.reduce((sum, k) => sum + delta(k), 0);
    const writes = ["PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"]
      .map(delta)
      .reduce((a, b) => a + b, 0);
    await bench.queue.clean(0, 100_000, "completed");
    out(
      `| ${processes} | ${concurrency} | ${(count / seconds).toFixed(0)} | ${((cpu * 1000) / count).toFixed(2)} | ${(requests / count).toFixed(1)} | ${(writes / count).toFixed(1)} |`,
    );
  }
}
