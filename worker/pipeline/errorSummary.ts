import {
  type FieldErrors,
  type RowCounts,
  SUMMARY_FIELDS,
  SUMMARY_ROWS,
} from "../../shared/job.ts";
import type { MissingCells } from "../judge/rowErrors.ts";

// The errors by field in a job's row counts stay bounded however many rows fail: at most
// SUMMARY_FIELDS fields have an entry (the rest share "(other fields)"), each naming its first
// SUMMARY_ROWS rows. A job's row processor adds each error here; a split job's parent adds its
// shards' summaries the same way.

const OTHER_FIELDS = "(other fields)";
/** The entry of errors about the whole row (field ""). */
const ROW = "(row)";
const NONE: readonly number[] = [];

/** The name an error of `field` is summarized under. */
export const summaryName = (field: string): string => field || ROW;

/**
 * The summary's own entry named `name`, if it has one: a column may be named `constructor` or
 * `toString`, which a plain read finds on Object.prototype.
 */
function entryOf(fields: RowCounts["fields"], name: string): FieldErrors | undefined {
  return Object.hasOwn(fields, name) ? fields[name] : undefined;
}

/** Adds an entry as the summary's own, whatever its name (`__proto__` would set a prototype). */
export function putEntry(fields: RowCounts["fields"], name: string, entry: FieldErrors): void {
  Object.defineProperty(fields, name, {
    value: entry,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** The entry errors of `field` are counted in (created, or the shared one when full). */
export function summaryEntry(fields: RowCounts["fields"], field: string): FieldErrors {
  const own = entryOf(fields, field);
  if (own) return own;
  // Counting the entries costs one per entry: done only until the shared one exists, which is
  // at most SUMMARY_FIELDS times a job (it was done for every error of a field without an
  // entry, and a short row in a wide file has an error per column: 73% of such a job's time).
  // A column named "(other fields)" itself shares its entry with the rest from its first error
  // on, where the name already made the two one entry once the summary was full.
  const shared = entryOf(fields, OTHER_FIELDS);
  if (shared) return shared;
  const name = Object.keys(fields).length < SUMMARY_FIELDS ? field : OTHER_FIELDS;
  const entry = { errors: {}, rows: [] };
  putEntry(fields, name, entry);
  return entry;
}

/** Names a row in an entry, while it names fewer than SUMMARY_ROWS (each row once). */
export function noteRow(entry: FieldErrors, rowNumber: number): void {
  if (entry.rows.length < SUMMARY_ROWS && entry.rows.at(-1) !== rowNumber) {
    entry.rows.push(rowNumber);
  }
}

/** Counts an error of `code` in an entry, `n` times, for the row numbered `rowNumber`. */
export function countIn(entry: FieldErrors, code: string, n: number, rowNumber: number): void {
  entry.errors[code] = (entry.errors[code] ?? 0) + n;
  noteRow(entry, rowNumber);
}

/**
 * Counts a short row's missing cells as summaryEntry would one by one, in column order, at a
 * cost bounded by SUMMARY_FIELDS, not by the header's width: once the shared entry exists, a
 * missing column with an entry of its own counts there and the rest count in the shared one at
 * once.
 */
export function summarizeMissing(
  fields: RowCounts["fields"],
  missing: MissingCells,
  rowNumber: number,
): void {
  const { labels } = missing;
  let column = missing.cells;
  // Until the shared entry exists, each column finds its entry or makes one. A job's labels are
  // distinct (see shapeCheck), and fewer than SUMMARY_FIELDS entries exist until then: at most
  // SUMMARY_FIELDS + 1 steps a row, the last making the shared entry.
  for (; column < labels.length && entryOf(fields, OTHER_FIELDS) === undefined; column++) {
    const entry = summaryEntry(fields, summaryName(labels[column] as string));
    countIn(entry, missing.code, 1, rowNumber);
  }
  if (column === labels.length) return;
  let shared = labels.length - column;
  const columnsOf = missing.columnsOf();
  const from = (label: string): number => {
    let n = 0;
    for (const c of columnsOf.get(label) ?? NONE) if (c >= column) n++;
    return n;
  };
  // A column named "(other fields)" counts in the shared entry either way: its own name is it.
  for (const name in fields) {
    const entry = entryOf(fields, name);
    if (entry === undefined) continue;
    const own = name === ROW ? from(ROW) + from("") : from(name);
    if (own > 0) {
      countIn(entry, missing.code, own, rowNumber);
      shared -= own;
    }
  }
  if (shared > 0)
    countIn(entryOf(fields, OTHER_FIELDS) as FieldErrors, missing.code, shared, rowNumber);
}
