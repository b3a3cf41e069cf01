// DuckDB (@duckdb/node-api), one thread, strict: the CSV read with every column as text, the
// benchmark schema's rules in SQL, valid rows written as they came (CRLF), invalid rows to a
// reject file. Prints one JSON line: { seconds, cpu, rows, valid, rejected }.
//   node duckdb.mjs SOURCE.csv VALID.csv REJECTED.csv [--warm]
// --warm: the work done twice on one database, the second time timed (a long-lived process's
// next file: s3csv's cpu-as-read-warm is timed alike).

import { readFileSync } from "node:fs";
import { DuckDBInstance } from "@duckdb/node-api";
import { PATTERNS, RULES } from "./strictRules.mjs";

const [source, validPath, rejectedPath, warm] = process.argv.slice(2);
const text = (s) => `'${String(s).replaceAll("'", "''")}'`;

function check(rule) {
  const v = `"${rule.name}"`;
  const parts = [];
  if (rule.pattern) parts.push(`regexp_full_match(${v}, ${text(rule.pattern)})`);
  if (rule.oneOf) parts.push(`${v} IN (${rule.oneOf.map(text).join(", ")})`);
  if (rule.length?.min !== undefined) parts.push(`length(${v}) >= ${rule.length.min}`);
  if (rule.length?.max !== undefined) parts.push(`length(${v}) <= ${rule.length.max}`);
  for (const [kind, pattern, cast] of [
    ["integer", PATTERNS.INTEGER, "HUGEINT"],
    ["number", PATTERNS.DECIMAL, "DOUBLE"],
  ]) {
    const range = rule[kind];
    if (!range) continue;
    parts.push(`regexp_full_match(${v}, ${text(pattern)})`);
    if (range.min !== undefined) parts.push(`TRY_CAST(${v} AS ${cast}) >= ${range.min}`);
    if (range.max !== undefined) parts.push(`TRY_CAST(${v} AS ${cast}) <= ${range.max}`);
  }
  if (rule.datetime) {
    parts.push(`regexp_full_match(${v}, ${text(PATTERNS.DATETIME)})`);
    parts.push(`TRY_CAST(substr(${v}, 1, 10) AS DATE) IS NOT NULL`);
    parts.push(`TRY_CAST(substr(${v}, 12, 2) AS INTEGER) <= 23`);
  }
  const ok = parts.length ? parts.join(" AND ") : "true";
  return rule.required ? `(${v} IS NOT NULL AND ${ok})` : `(${v} IS NULL OR (${ok}))`;
}

let started = performance.now();
let cpuAtStart = process.cpuUsage();
const db = await DuckDBInstance.create(":memory:", {
  threads: "1",
  autoinstall_known_extensions: "false",
  autoload_known_extensions: "false",
});
const c = await db.connect();
const columns = RULES.map((r) => `"${r.name}"`).join(", ");
const copy = (where, path) =>
  c.run(
    `COPY (SELECT ${columns} FROM src WHERE ${where}) TO ${text(path)} (HEADER, DELIMITER ',', NEW_LINE '\\r\\n')`,
  );
async function judge() {
  await c.run("DROP TABLE IF EXISTS src");
  await c.run(
    `CREATE TABLE src AS SELECT *, ${RULES.map(check).join(" AND ")} AS __valid FROM read_csv(${text(source)}, all_varchar = true, header = true, delim = ',', quote = '"', escape = '"', strict_mode = true)`,
  );
  await copy("__valid", validPath);
  await copy("NOT __valid", rejectedPath);
  return (
    await c.runAndReadAll("SELECT count(*), count(*) FILTER (__valid) FROM src")
  ).getRows()[0];
}
let counts = await judge();
if (warm === "--warm") {
  // The same file again on the same database, timed alone.
  started = performance.now();
  cpuAtStart = process.cpuUsage();
  counts = await judge();
}
const cpu = process.cpuUsage(cpuAtStart);
const peakRss =
  Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]) * 1024;
const rows = Number(counts[0]);
const valid = Number(counts[1]);
process.stdout.write(
  `${JSON.stringify({ seconds: (performance.now() - started) / 1000, cpu: (cpu.user + cpu.system) / 1e6, peakRss, rows, valid, rejected: rows - valid })}\n`,
);
