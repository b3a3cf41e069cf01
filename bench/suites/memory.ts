import { type Bench, deleteOutputs, s3csvJob, upload } from "../harness.ts";

// A worker's peak RSS by input size, default settings: bounded by part size and concurrency,
// never by file size. The large input is the messy dataset (5 % of its rows rejected: the
// reject report is an output too).

export async function memory(
  bench: Bench,
  inputs: Array<{ key: string; bytes: number; make?: () => Buffer }>,
) {
  const { out } = bench;
  out(
    "\n### Worker peak RSS by input size (default PART_SIZE, PARTS_IN_FLIGHT, WORKER_CONCURRENCY)\n",
  );
  out("| input | seconds | MB/s | rows rejected | worker peak RSS (MB) |");
  out("| --- | ---: | ---: | ---: | ---: |");
  for (const input of inputs) {
    if (input.make) await upload(bench.s3, input.key, input.make());
    const m = await s3csvJob(bench, input.key, `mem-${input.key}`);
    const mb = input.bytes / 1e6;
    out(
      `| ${input.key}, ${mb.toFixed(0)} MB | ${m.seconds.toFixed(1)} | ${(mb / m.seconds).toFixed(1)} | ${m.rejected.toLocaleString("en")} | ${(m.peakRss / 1e6).toFixed(0)} |`,
    );
    await deleteOutputs(bench.s3);
  }
}
