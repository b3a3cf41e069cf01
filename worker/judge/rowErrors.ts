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

/**
 * A row's errors in order, read by index: an array, or a short row's MissingCells. A short row
 * in a wide file has an error per column it lacks, and a file of such rows would cost rows ×
 * columns made one by one: what counts, summarizes or reports them reads what it needs.
 */
export type RowErrors = readonly RowError[] | MissingCells;

/**
 * A short row's errors, one missing-cell per label from `cells` on (the row has `cells` of the
 * header's `labels.length`), each made only when read.
 */
export class MissingCells {
  readonly code = "missing-cell";
  readonly labels: readonly string[];
  readonly cells: number;
  /** Per label, the columns it names (built once per header, when first asked). */
  readonly columnsOf: () => ReadonlyMap<string, readonly number[]>;

  constructor(
    labels: readonly string[],
    cells: number,
    columnsOf: () => ReadonlyMap<string, readonly number[]>,
  ) {
    this.labels = labels;
    this.cells = cells;
    this.columnsOf = columnsOf;
  }

  get length(): number {
    return this.labels.length - this.cells;
  }

  /** The error at `index`, counted from the end when negative (as an array's `at`). */
  at(index: number): RowError | undefined {
    const whole = Math.trunc(index) || 0;
    const i = whole < 0 ? whole + this.length : whole;
    if (!(i >= 0 && i < this.length)) return undefined;
    const label = this.labels[this.cells + i] as string;
    return {
      field: label,
      code: this.code,
      message: `the row has ${this.cells} cells, the header has ${this.labels.length}: "${label}" is missing`,
    };
  }
}

export const REJECT_REPORT_HEADER = [
  "row_number",
  "line_number",
  "field",
  "error",
  "message",
  "raw",
] as const;
