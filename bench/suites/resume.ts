import { enqueueTransform } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { Checkpoint } from "../../shared/job.ts";
import { type Bench, deleteOutputs, s3csvJob, startWorker, transformJob } from "../harness.ts";
import type { Dataset } from "./throughput.ts";

// A job whose worker is SIGKILLed once its checkpoint has passed about half the input, then
// resumed by another: what it read and uploaded again, as the S3 server counted them.

export async function resume(bench: Bench, dataset: Dataset) {
  const env = { ...bench.env, LOCK_DURATION_MS: "2000", STALLED_INTERVAL_MS: "500" };
  const clean = await s3csvJob(bench, dataset.key, "resume-clean.csv", env);
  const first = await startWorker(bench, env);
  const start = performance.now();
  const id = await enqueueTransform(transformJob(dataset.key, "resume.csv"), {
    queue: bench.queue,
  });
  let atKill: Checkpoint | undefined;
  for (;;) {
    const job = await bench.queue.getJob(id);
    const checkpoint = (job?.data as { checkpoint?: Checkpoint } | undefined)?.checkpoint;
    const resumable = checkpoint
      ? Math.min(checkpoint.output.mark.offset, checkpoint.rejects.mark.offset)
      : 0;
    if (resumable >= dataset.bytes / 2) {
      await first.stop("SIGKILL");
      atKill = checkpoint;
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const afterKill = await bench.s3Counts();
  const second = await startWorker(bench, env);
  const result = await waitForResult(bench.queue, id);
  const total = (performance.now() - start) / 1000;
  await second.stop();
  const end = await bench.s3Counts();
  const delta = (k: string) => (end[k] ?? 0) - (afterKill[k] ?? 0);
  const resumeFrom = Math.min(atKill?.output.mark.offset ?? 0, atKill?.rejects.mark.offset ?? 0);
  const outputs = result.output.bytes + result.rejects.bytes;
  const uploadedAtKill = (atKill?.output.bytes ?? 0) + (atKill?.rejects.bytes ?? 0);
  const { out } = bench;
  out(`\n### Resume after SIGKILL at about 50% (${dataset.name} dataset)\n`);
  out("| measure | value |");
  out("| --- | ---: |");
  out(`| input | ${(dataset.bytes / 1e6).toFixed(1)} MB |`);
  out(`| resume offset (the checkpoint at the kill) | ${(resumeFrom / 1e6).toFixed(1)} MB |`);
  out(
    `| read by the resumed attempt (ranged GET bytes the server sent) | ${(delta("bytesSentRanged") / 1e6).toFixed(1)} MB |`,
  );
  out(
    `| uploaded by the resumed attempt (bytes the server received) / outputs' bytes not yet durable at the kill | ${(delta("bytesReceived") / 1e6).toFixed(1)} MB / ${((outputs - uploadedAtKill) / 1e6).toFixed(1)} MB |`,
  );
  out(
    `| time resumed (kill, lock expiry, takeover) / uninterrupted | ${total.toFixed(1)} s / ${clean.seconds.toFixed(1)} s |`,
  );
  await deleteOutputs(bench.s3);
}
