import {
  type FieldErrors,
  type RowCounts,
  SUMMARY_FIELDS,
  SUMMARY_ROWS,
} from "../../shared/job.ts";

// The errors by field in a job's row counts stay bounded however many rows fail: at most
// SUMMARY_FIELDS fields have an entry (the rest share "(other fields)"), each naming its first
// SUMMARY_ROWS rows. A job's row processor adds each error here; a split job's parent adds its
// shards' summaries the same way.

const OTHER_FIELDS = "(other fields)";

/** The entry errors of `field` are counted in (created, or the shared one when full). */
export function summaryEntry(fields: RowCounts["fields"], field: string): FieldErrors {
  const own = fields[field];
  if (own) return own;
  // Counting the entries costs one per entry: done only until the shared one exists, which is
  // at most SUMMARY_FIELDS times a job (it was done for every error of a field without an
  // entry, and a short row in a wide file has an error per column: 73% of such a job's time).
  // A column named "(other fields)" itself shares its entry with the rest from its first error
  // on, where the name already made the two one entry once the summary was full.
  const name =
    fields[OTHER_FIELDS] === undefined && Object.keys(fields).length < SUMMARY_FIELDS
      ? field
      : OTHER_FIELDS;
  const entry = fields[name] ?? { errors: {}, rows: [] };
  fields[name] = entry;
  return entry;
}

/** Names a row in an entry, while it names fewer than SUMMARY_ROWS (each row once). */
export function noteRow(entry: FieldErrors, rowNumber: number): void {
  if (entry.rows.length < SUMMARY_ROWS && entry.rows.at(-1) !== rowNumber) {
    entry.rows.push(rowNumber);
  }
}
