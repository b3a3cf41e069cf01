// Polars (nodejs-polars), one thread (POLARS_MAX_THREADS=1, set before it loads), strict: the CSV
// read with every column as text, the benchmark schema's rules as expressions, valid rows written
// as they came (CRLF), invalid rows to a reject file. Prints one JSON line like duckdb.mjs.
//   node polars.mjs SOURCE.csv VALID.csv REJECTED.csv [--warm]
import { readFileSync } from "node:fs";
import { PATTERNS, RULES } from "./strictRules.mjs";

process.env.POLARS_MAX_THREADS = "1";
const { default: pl } = await import("nodejs-polars");
const [source, validPath, rejectedPath, warm] = process.argv.slice(2);

function check(rule) {
  const v = pl.col(rule.name);
  let ok = pl.lit(true);
  const and = (e) => {
    ok = ok.and(e);
  };
  if (rule.pattern) and(v.str.contains(rule.pattern));
  if (rule.oneOf) and(v.isIn(rule.oneOf));
  if (rule.length?.min !== undefined) and(v.str.lengths().gtEq(rule.length.min));
  if (rule.length?.max !== undefined) and(v.str.lengths().ltEq(rule.length.max));
  for (const [kind, pattern] of [
    ["integer", PATTERNS.INTEGER],
    ["number", PATTERNS.DECIMAL],
  ]) {
    const range = rule[kind];
    if (!range) continue;
    and(v.str.contains(pattern));
    const n = v.cast(pl.Float64, false);
    if (range.min !== undefined) and(n.gtEq(range.min));
    if (range.max !== undefined) and(n.ltEq(range.max));
  }
  if (rule.datetime) {
    and(v.str.contains(PATTERNS.DATETIME));
    and(v.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d").isNotNull());
    and(v.str.slice(11, 2).cast(pl.Int32, false).ltEq(23));
  }
  // A missing value (an empty cell) is valid unless the field is required.
  return rule.required ? v.isNotNull().and(ok.fillNull(false)) : v.isNull().or(ok.fillNull(false));
}

function judge() {
  const df = pl.readCSV(source, { inferSchemaLength: 0, quoteChar: '"', hasHeader: true });
  const valid = RULES.map(check).reduce((a, b) => a.and(b));
  const judged = df.withColumns(valid.alias("__valid"));
  const write = (rows, path) =>
    rows.drop("__valid").writeCSV(path, { includeHeader: true, lineTerminator: "\r\n" });
  const good = judged.filter(pl.col("__valid"));
  write(good, validPath);
  write(judged.filter(pl.col("__valid").not()), rejectedPath);
  return { df, good };
}
// --warm: the same file again in this process, timed alone (s3csv's cpu-as-read-warm alike).
if (warm === "--warm") judge();
const started = performance.now();
const cpuAtStart = process.cpuUsage();
const { df, good } = judge();
const cpu = process.cpuUsage(cpuAtStart);
const peakRss =
  Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]) * 1024;
process.stdout.write(
  `${JSON.stringify({ seconds: (performance.now() - started) / 1000, cpu: (cpu.user + cpu.system) / 1e6, peakRss, rows: df.height, valid: good.height, rejected: df.height - good.height })}\n`,
);
