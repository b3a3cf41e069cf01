import type { JobOptions } from "../../shared/job.ts";
import { selectColumns } from "../csv/columnSelection.ts";
import { formatRow, ndjsonRowFormatter, neutralizeFormula } from "../csv/csvWriter.ts";
import type { RowJudge } from "../judge/rowJudge.ts";

// How judged rows are written: the output's columns (options.select/rename), its format (CSV or
// NDJSON), formula neutralizing, and whether an unchanged row may be written as it came.

export interface OutputFormat {
  /** The output's header line; undefined for NDJSON. */
  header: string | undefined;
  /** A valid row's line. */
  line(cells: readonly string[]): string;
  /** Per output column, the judge's column it shows (options.select). */
  columns: readonly number[];
  /**
   * An unquoted row whose cells all came out unchanged (all of them, in order) may be written
   * as its source text: only when the source's dialect is the output's.
   */
  passThrough: boolean;
}

type Options = Pick<
  JobOptions,
  | "delimiter"
  | "quote"
  | "escape"
  | "format"
  | "neutralizeFormulas"
  | "newline"
  | "select"
  | "rename"
>;

/** A CSV line of the given cells (the reject report's, and the CSV output's). */
export function csvLineFormat(options: Options): (cells: readonly string[]) => string {
  const { newline } = options;
  return options.neutralizeFormulas
    ? (cells) => formatRow(cells.map(neutralizeFormula), newline)
    : (cells) => formatRow(cells, newline);
}

export function outputFormat(judge: RowJudge, options: Options): OutputFormat {
  const columns = selectColumns(judge.outputHeader, judge.outputTypes, options);
  const csv = options.format === "csv";
  const format = csv ? csvLineFormat(options) : ndjsonRowFormatter(columns.header, columns.types);
  return {
    header: csv ? formatRow(columns.header, options.newline) : undefined,
    line: columns.all ? format : (cells) => format(columns.pick(cells)),
    columns: columns.indexes,
    // With another quote or escape character, a row without them may still hold a `"` that
    // RFC 4180 output has to quote.
    passThrough:
      columns.all &&
      csv &&
      options.delimiter === "," &&
      options.quote === '"' &&
      (options.escape === undefined || options.escape === '"') &&
      !options.neutralizeFormulas,
  };
}
