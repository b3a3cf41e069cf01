import type { RowCounts } from "../../shared/job.ts";
import { noteRow, summaryEntry } from "../pipeline/errorSummary.ts";

// A split job's row counts: its shards' added up, and their per-field error summaries merged
// with row numbers made the whole file's (each shard counts its rows from 1).

export interface ShardRows {
  counts: RowCounts;
  /** The rows before the shard. */
  rowShift: number;
}

export function mergedCounts(shards: readonly ShardRows[]): RowCounts {
  const total: RowCounts = { read: 0, valid: 0, rejected: 0, errors: {}, fields: {} };
  for (const { counts, rowShift } of shards) {
    total.read += counts.read;
    total.valid += counts.valid;
    total.rejected += counts.rejected;
    for (const [code, n] of Object.entries(counts.errors)) {
      total.errors[code] = (total.errors[code] ?? 0) + n;
    }
    for (const [field, entry] of Object.entries(counts.fields)) {
      const into = summaryEntry(total.fields, field);
      for (const [code, n] of Object.entries(entry.errors)) {
        into.errors[code] = (into.errors[code] ?? 0) + n;
      }
      for (const row of entry.rows) noteRow(into, row + rowShift);
    }
  }
  return total;
}
