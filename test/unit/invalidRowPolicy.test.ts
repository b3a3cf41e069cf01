import { describe, expect, it } from "vitest";
import type { RowCounts } from "../../shared/job.ts";
import type { RowError } from "../../worker/judge/rowErrors.ts";
import { enforcePolicy } from "../../worker/pipeline/invalidRowPolicy.ts";

const counts = (read: number, rejected: number): RowCounts => ({
  read,
  valid: read - rejected,
  rejected,
  errors: {},
  fields: {},
});
const error: RowError = { field: "n", code: "type-error", message: '"x" is not an integer' };

describe("options.maxInvalidRows", () => {
  it("fails the job past the limit, counting rows in words that agree with the count", () => {
    const policy = { onInvalid: "reject" as const, maxInvalidRows: 0 };
    expect(() => enforcePolicy(policy, 1, 2, [error], counts(1, 1))).toThrow(
      "1 invalid row after 1 row read, more than options.maxInvalidRows (0); last at row 1 (line 2)",
    );
    expect(() =>
      enforcePolicy({ ...policy, maxInvalidRows: 1 }, 9, 10, [error], counts(9, 2)),
    ).toThrow("2 invalid rows after 9 rows read, more than options.maxInvalidRows (1)");
    expect(() =>
      enforcePolicy({ ...policy, maxInvalidRows: 2 }, 9, 10, [error], counts(9, 2)),
    ).not.toThrow();
  });
});
