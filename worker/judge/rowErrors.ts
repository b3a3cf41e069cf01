// Row-level error codes from the Frictionless error catalogue, so that data teams read verdicts
// in the vocabulary of the tools they already use.
export const ROW_ERROR_CODES = [
  "blank-row",
  "extra-cell",
  "missing-cell",
  "type-error",
  "constraint-error",
  "unique-error",
  "primary-key",
  "encoding-error",
  "format-error",
  // Not Frictionless's: a registered transform threw on the row.
  "transform-error",
] as const;
export type RowErrorCode = (typeof ROW_ERROR_CODES)[number];

export interface RowError {
  /** The field's name, or "" for an error about the whole row. */
  field: string;
  code: RowErrorCode;
  message: string;
}

export const REJECT_REPORT_HEADER = [
  "row_number",
  "line_number",
  "field",
  "error",
  "message",
  "raw",
] as const;
