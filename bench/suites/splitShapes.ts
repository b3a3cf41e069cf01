import { type Bench, BUCKET, upload } from "../harness.ts";
import { messySchema, messyShapes } from "../messyShapes.ts";
import { once, type Setup, type SplitRun } from "./split.ts";

// Split against whole on the shapes real exports take that a byte-range split finds hardest
// (ragged rows, every field quoted, row-like quoted notes, CR-only line ends): each shape's file
// whole on one worker and split into 16 MiB shards on two, timed alike from enqueue to result,
// every run shown, in a different order each run. Outputs are checked byte-identical.

const SHARD = 16 * 1024 * 1024;
const SETUPS: Setup[] = [
  { workers: 1, split: "off" },
  { workers: 2, split: SHARD },
];
// The shape whose one row spans a shard needs parts over the emulator's request limit here.
const SHAPES = Object.entries(messyShapes).filter(([, shape]) => !shape.coversAShard);

export async function splitShapes(bench: Bench, megabytes: number, runs: number) {
  const { out } = bench;
  out(`\n### Split against whole on messy shapes, ${megabytes} MB each (16 MiB shards)\n`);
  out("| shape | run | workers | split | shards | redone | seconds | split / whole |");
  out("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
  for (const [name, shape] of SHAPES) {
    const key = "in-shape.csv";
    await upload(bench.s3, key, shape.make(megabytes * 1e6));
    const job = (dest: string) => ({
      source: { bucket: BUCKET, key },
      destination: { bucket: BUCKET, key: dest },
      schema: messySchema,
      options: shape.options,
    });
    const all: SplitRun[] = [];
    for (let run = 1; run <= runs; run++) {
      const order = SETUPS.map((_, i) => SETUPS[(i + run - 1) % SETUPS.length] as Setup);
      const pair: SplitRun[] = [];
      for (const setup of order) pair.push(await once(bench, key, setup, run, job));
      const whole = pair.find((r) => r.split === "off") as SplitRun;
      for (const r of pair) {
        const redone = await redoneOf(bench, r);
        const ratio = r === whole ? "" : (r.seconds / whole.seconds).toFixed(2);
        out(
          `| ${name} | ${run} | ${r.workers} | ${r.split} | ${r.result.shards} | ${redone} | ${r.seconds.toFixed(1)} | ${ratio} |`,
        );
      }
      all.push(...pair);
    }
    const reference = all[0] as SplitRun;
    if (all.some((r) => r.digests.join() !== reference.digests.join())) {
      throw new Error(`${name}: a split run's output differs from the whole run's`);
    }
  }
  out("\nEvery shape's outputs and reject reports, split or whole, had the same SHA-256.");
}

/** How many shards the run's parent redid (0 for a whole run). */
async function redoneOf(bench: Bench, run: SplitRun): Promise<number> {
  const job = await bench.queue.getJob(run.jobId);
  const data = job?.data as { checkpoint?: { split?: { redone?: number } } } | undefined;
  return data?.checkpoint?.split?.redone ?? 0;
}
