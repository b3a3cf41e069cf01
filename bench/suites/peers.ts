import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Bench, here, lines, type Measure, median, node, variant } from "../harness.ts";
import type { Dataset } from "./throughput.ts";

// What a user might run instead: DuckDB and Polars, one thread each, strict (every cell read
// as text, the benchmark schema's rules checked, valid rows written as they came, invalid rows
// to a reject file), on the same local file as s3csv's row work doing the same (E with
// options.values "as-read"), their CPU seconds and wall time beside it. Their row counts must
// equal s3csv's, and whether their valid output is byte for byte s3csv's is printed. The peers
// live in bench/peers/ with their own package.json, installed on demand, never a dependency.

const exec = promisify(execFile);
const PEERS = here("./peers/");

export interface PeerRun extends Measure {
  identical: boolean;
}

/** Every run of each tool: cold (a fresh process a run) and warm (a second pass in one). */
export interface Peers {
  cold: Map<string, PeerRun[]>;
  warm: Map<string, PeerRun[]>;
}

/** Installs the peers (native binaries inside their npm packages) if they are not yet. */
async function installPeers(bench: Bench): Promise<boolean> {
  if (existsSync(join(PEERS, "node_modules/@duckdb/node-api"))) return true;
  bench.say("installing the peers (DuckDB, Polars) into bench/peers/");
  try {
    await exec("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund"], { cwd: PEERS });
    return true;
  } catch (error) {
    bench.out(
      `\nPeers not run: could not install them (${(error as Error).message.split("\n")[0]})`,
    );
    return false;
  }
}

async function peer(bench: Bench, script: string, dataset: Dataset, tag: string, warm = false) {
  const valid = join(bench.dir, `${tag}-valid.csv`);
  const args = [join(PEERS, script), dataset.path, valid, join(bench.dir, `${tag}-rejected.csv`)];
  const child = spawn(node, warm ? [...args, "--warm"] : args, {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env },
  });
  const first = await lines(child).next();
  await new Promise((r) => child.once("exit", r));
  return { ...(JSON.parse(first.value as string) as Measure), validPath: valid };
}

export async function peers(
  bench: Bench,
  dataset: Dataset,
  runs: number,
): Promise<Peers | undefined> {
  if (!(await installPeers(bench))) return undefined;
  const s3csvOut = join(bench.dir, `s3csv-${dataset.name}-valid.csv`);
  const results = new Map<string, PeerRun[]>();
  for (let run = 0; run < runs; run++) {
    const e = await variant(bench, "cpu-as-read", dataset.path, s3csvOut);
    const mine = await readFile(s3csvOut);
    results.set("s3csv", [...(results.get("s3csv") ?? []), { ...e, identical: true }]);
    // The string path beside it, timed alike: what the byte row path saves.
    const stringsOut = join(bench.dir, `s3csv-strings-${dataset.name}-valid.csv`);
    const s = await variant(bench, "cpu-as-read-strings", dataset.path, stringsOut);
    const sameAsBytes = (await readFile(stringsOut)).equals(mine);
    if (!sameAsBytes || s.valid !== e.valid || s.rejected !== e.rejected) {
      throw new Error(`the string path wrote otherwise than the byte row path on ${dataset.name}`);
    }
    results.set("s3csv strings", [
      ...(results.get("s3csv strings") ?? []),
      { ...s, identical: true },
    ]);
    for (const [name, script] of [
      ["DuckDB", "duckdb.mjs"],
      ["Polars", "polars.mjs"],
    ] as const) {
      const m = await peer(bench, script, dataset, `${name}-${dataset.name}`);
      const identical = (await readFile(m.validPath)).equals(mine);
      checkCounts(m, e, `${name} judged ${dataset.name}`);
      results.set(name, [...(results.get(name) ?? []), { ...m, identical }]);
      bench.say(`${dataset.name} run ${run + 1} ${name}: ${m.cpu.toFixed(2)} CPU s`);
    }
  }
  print(bench, dataset, results, runs);
  const warm = await warmRuns(bench, dataset, runs, s3csvOut);
  print(bench, dataset, warm, runs, true);
  return { cold: results, warm };
}

/**
 * Each tool's second pass over the file in one process, timed alone: a long-lived worker's
 * next job, its row path compiled by V8 (about a quarter of a CPU second of a cold 100 MB run
 * is V8 compiling on its background threads), and DuckDB's and Polars' second query. The counts are checked
 * as in the cold runs.
 */
async function warmRuns(bench: Bench, dataset: Dataset, runs: number, s3csvOut: string) {
  const results = new Map<string, PeerRun[]>();
  for (let run = 0; run < runs; run++) {
    const e = await variant(bench, "cpu-as-read-warm", dataset.path, s3csvOut);
    results.set("s3csv", [...(results.get("s3csv") ?? []), { ...e, identical: true }]);
    const mine = await readFile(s3csvOut);
    for (const [name, script] of [
      ["DuckDB", "duckdb.mjs"],
      ["Polars", "polars.mjs"],
    ] as const) {
      const m = await peer(bench, script, dataset, `${name}-warm-${dataset.name}`, true);
      checkCounts(m, e, `${name}, warm, judged ${dataset.name}`);
      const identical = (await readFile(m.validPath)).equals(mine);
      results.set(name, [...(results.get(name) ?? []), { ...m, identical }]);
    }
    bench.say(`${dataset.name} warm run ${run + 1} done`);
  }
  return results;
}

/** A peer's counts must be s3csv's: otherwise they did not do the same work. */
function checkCounts(m: Measure, e: Measure, what: string): void {
  if (m.rows !== e.rows || m.valid !== e.valid || m.rejected !== e.rejected) {
    throw new Error(
      `${what} otherwise than s3csv: rows ${m.rows}/${e.rows}, valid ${m.valid}/${e.valid}, rejected ${m.rejected}/${e.rejected}`,
    );
  }
}

function print(
  bench: Bench,
  dataset: Dataset,
  results: Map<string, PeerRun[]>,
  runs: number,
  warm = false,
) {
  const { out } = bench;
  const per100 = 100e6 / dataset.bytes;
  const e = results.get("s3csv")?.[0];
  out(
    warm
      ? `\n#### Warm: each one's second pass over the ${dataset.name} file in one process, timed alone\n`
      : `\n### Peers, ${dataset.name} dataset: ${(dataset.bytes / 1e6).toFixed(1)} MB, ${e?.rows.toLocaleString("en")} rows (${e?.valid?.toLocaleString("en")} valid, ${e?.rejected?.toLocaleString("en")} rejected, the same for all)\n`,
  );
  out("Every run, CPU seconds:\n");
  out(`| run | ${[...results.keys()].join(" | ")} |`);
  out(`| ---: | ${[...results.keys()].map(() => "---:").join(" | ")} |`);
  for (let run = 0; run < runs; run++) {
    const cells = [...results.values()].map((ms) => ms[run]?.cpu.toFixed(2) ?? "");
    out(`| ${run + 1} | ${cells.join(" | ")} |`);
  }
  out(`\nMedians of ${runs}:\n`);
  out(
    `| what | CPU s per 100 MB | wall s per 100 MB | peak RSS (MB${warm ? ", both passes" : ""}) | valid output identical to s3csv's |`,
  );
  out("| --- | ---: | ---: | ---: | --- |");
  for (const [name, ms] of results) {
    const what =
      name === "s3csv"
        ? `s3csv row work (E, values "as-read"${warm ? ", second pass" : ""})`
        : name === "s3csv strings"
          ? "s3csv row work, byte row path off (every row as strings)"
          : `${name}, one thread, strict${warm ? ", second pass" : ""}`;
    out(
      `| ${what} | ${(median(ms.map((m) => m.cpu)) * per100).toFixed(2)} | ${(median(ms.map((m) => m.seconds)) * per100).toFixed(2)} | ${(median(ms.map((m) => m.peakRss)) / 1e6).toFixed(0)} | ${name === "s3csv" ? "–" : ms.every((m) => m.identical) ? "yes" : "no"} |`,
    );
  }
}
