import { type Bench, deleteOutputs, type Measure, median, s3csvJob, variant } from "../harness.ts";
import { cpuSeconds } from "../procStats.ts";

// Throughput on one dataset: s3csv end to end (A; A2 writing values as read, the peers' work;
// A2w the same as a worker's second job) against the naive pipeline (B), lib-storage
// (C), a plain S3-to-S3 copy (D) and s3csv's row work alone (E). A is timed as BullMQ times the
// job (processedOn to finishedOn) and B, C, D around their own work in their process: neither
// counts process start-up. Every run is printed, then the medians.

export interface Dataset {
  name: string;
  /** The object in the bucket, and the same bytes in a local file. */
  key: string;
  path: string;
  bytes: number;
}

export type Throughput = Map<string, Array<Measure & { serverCpu: number }>>;

const VARIANTS: Array<[string, string]> = [
  ["A", "s3csv end to end (worker: processedOn → finishedOn)"],
  ["A2", 'A with options.values "as-read": valid rows written as they came, as the peers do'],
  [
    "A2w",
    "A2 as a worker's second job (the first, the same, untimed; peak RSS over both): a long-lived worker",
  ],
  ["B", "naive: papaparse + zod + Papa.unparse + sequential UploadPart"],
  ["C", "lib-storage Upload fed by the naive parse/validate"],
  ["D", "plain copy: GetObject stream → lib-storage multipart upload"],
  ["E", "s3csv row work only: its row processor and writers, memory to memory"],
];

/** `beforeTimed`: called when the measured work starts, after any untimed warm-up. */
function measure(
  bench: Bench,
  id: string,
  dataset: Dataset,
  beforeTimed: () => void,
): Promise<Measure> {
  const dest = `out-${dataset.name}-${id.toLowerCase()}.csv`;
  if (id === "A") return s3csvJob(bench, dataset.key, dest);
  if (id === "A2") return s3csvJob(bench, dataset.key, dest, bench.env, { values: "as-read" });
  if (id === "A2w") {
    return s3csvJob(bench, dataset.key, dest, bench.env, { values: "as-read" }, { beforeTimed });
  }
  if (id === "B") return variant(bench, "naive", dataset.key, dest);
  if (id === "C") return variant(bench, "lib-storage", dataset.key, dest);
  if (id === "D") return variant(bench, "raw-copy", dataset.key, dest);
  return variant(bench, "cpu", dataset.path, "-");
}

export async function throughput(bench: Bench, dataset: Dataset, runs: number) {
  const results: Throughput = new Map();
  for (let run = 0; run < runs; run++) {
    for (const [id] of VARIANTS) {
      // The S3 server's CPU while each variant runs: both share the machine's cores.
      let serverAtStart = cpuSeconds(bench.s3Pid);
      const m = await measure(bench, id, dataset, () => {
        serverAtStart = cpuSeconds(bench.s3Pid);
      });
      const serverCpu = cpuSeconds(bench.s3Pid) - serverAtStart;
      results.set(id, [...(results.get(id) ?? []), { ...m, serverCpu }]);
      bench.say(`${dataset.name} run ${run + 1} ${id}: ${m.seconds.toFixed(2)} s`);
    }
    await deleteOutputs(bench.s3);
  }
  // s3csv's variants judge the same rows: their counts must agree, or the figures compare
  // different work.
  const counts = (id: string) =>
    (results.get(id) ?? []).map((m) => `${m.rows}/${m.valid}/${m.rejected}`);
  const seen = new Set(["A", "A2", "A2w", "E"].flatMap(counts));
  if (seen.size !== 1) {
    throw new Error(`s3csv's variants counted different rows: ${[...seen].join(", ")}`);
  }
  // A worker's second job writes what its first did: the same bytes as A2's.
  const outputs = new Set(
    ["A2", "A2w"].flatMap((id) =>
      (results.get(id) ?? []).map((m) => `${m.output?.etag}/${m.output?.bytes}`),
    ),
  );
  if (outputs.size !== 1) {
    throw new Error(`A2 and A2w wrote different outputs: ${[...outputs].join(", ")}`);
  }
  print(bench, dataset, results, runs);
  return results;
}

function print(bench: Bench, dataset: Dataset, results: Throughput, runs: number): void {
  const mb = dataset.bytes / 1e6;
  const { out } = bench;
  out(`\n### Throughput, ${dataset.name} dataset: ${mb.toFixed(1)} MB\n`);
  out(`Every run, seconds:\n`);
  out(`| run | ${VARIANTS.map(([id]) => id).join(" | ")} |`);
  out(`| ---: | ${VARIANTS.map(() => "---:").join(" | ")} |`);
  for (let run = 0; run < runs; run++) {
    const cells = VARIANTS.map(([id]) => results.get(id)?.[run]?.seconds.toFixed(2) ?? "");
    out(`| ${run + 1} | ${cells.join(" | ")} |`);
  }
  out(`\nMedians of ${runs}:\n`);
  out(
    "| variant | what | MB/s | rows/s (rows it parsed) | peak RSS (MB) | CPU s, measured process | CPU s, S3 server |",
  );
  out("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
  const med = (id: string, pick: (m: Measure & { serverCpu: number }) => number) =>
    median((results.get(id) ?? []).map(pick));
  for (const [id, what] of VARIANTS) {
    const seconds = med(id, (m) => m.seconds);
    const rows = med(id, (m) => m.rows);
    const rowsPerSecond = rows > 0 ? Math.round(rows / seconds).toLocaleString("en") : "–";
    out(
      `| ${id} | ${what} | ${(mb / seconds).toFixed(1)} | ${rowsPerSecond} | ${(med(id, (m) => m.peakRss) / 1e6).toFixed(0)} | ${med(id, (m) => m.cpu).toFixed(2)} | ${med(id, (m) => m.serverCpu).toFixed(2)} |`,
    );
  }
  const speed = (id: string) => mb / med(id, (m) => m.seconds);
  out(
    `\nA/D = ${(speed("A") / speed("D")).toFixed(2)}, A2/D = ${(speed("A2") / speed("D")).toFixed(2)}, A/B = ${(speed("A") / speed("B")).toFixed(2)}`,
  );
}
