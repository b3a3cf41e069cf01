import type { JobOptions, RowCounts } from "../../shared/job.ts";
import { PermanentJobError } from "../errors.ts";
import type { RowError, RowErrors } from "../judge/rowErrors.ts";

// What a job does about invalid rows beyond reporting them: options.onInvalid "fail",
// options.maxInvalidRows and options.maxInvalidRatio fail it for good.

type Policy = Pick<JobOptions, "onInvalid" | "maxInvalidRows" | "maxInvalidRatio">;

/** The invalid-row ratio is judged only once this many rows are read (or at the end). */
const RATIO_SAMPLE = 1000;

/** Why the rows so far break options.maxInvalidRatio, or undefined. */
export function ratioExceeded(policy: Policy, counts: RowCounts, atEnd: boolean) {
  const { maxInvalidRatio } = policy;
  if (maxInvalidRatio === undefined || counts.read === 0 || (!atEnd && counts.read < RATIO_SAMPLE))
    return undefined;
  const ratio = counts.rejected / counts.read;
  if (ratio <= maxInvalidRatio) return undefined;
  return `${counts.rejected} of ${counts.read} rows are invalid (${(ratio * 100).toFixed(2)}%), more than options.maxInvalidRatio (${maxInvalidRatio})`;
}

/** Throws PermanentJobError when an invalid row (already counted) breaks the job's policy. */
export function enforcePolicy(
  policy: Policy,
  rowNumber: number,
  line: number,
  errors: RowErrors,
  counts: RowCounts,
): void {
  const first = errors.at(0) as RowError;
  if (policy.onInvalid === "fail") {
    throw new PermanentJobError(
      `row ${rowNumber} (line ${line}) is invalid and options.onInvalid is "fail": ${first.code}${first.field ? ` in "${first.field}"` : ""}: ${first.message}`,
    );
  }
  if (policy.maxInvalidRows !== undefined && counts.rejected > policy.maxInvalidRows) {
    throw new PermanentJobError(
      `${countOf(counts.rejected, "invalid row")} after ${countOf(counts.read, "row")} read, more than options.maxInvalidRows (${policy.maxInvalidRows}); last at row ${rowNumber} (line ${line})`,
    );
  }
  const ratio = ratioExceeded(policy, counts, false);
  if (ratio) throw new PermanentJobError(`${ratio}; last invalid row ${rowNumber} (line ${line})`);
}

/** "1 invalid row", "2 invalid rows": a count in a message. */
export function countOf(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
