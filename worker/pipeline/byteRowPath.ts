import { isUtf8 } from "node:buffer";
import type { JobOptions } from "../../shared/job.ts";
import { ByteRowWriter } from "../csv/byteRowWriter.ts";
import type { FramedRow } from "../csv/csvFramer.ts";
import { FieldIndex } from "../csv/fieldIndex.ts";
import { asBuffer } from "../csv/rowDecoder.ts";
import { type ByteJudge, CHANGED, INVALID, UNDECIDED } from "../judge/byteJudge.ts";
import type { RowError } from "../judge/rowErrors.ts";
import type { RowJudge } from "../judge/rowJudge.ts";
import type { OutputFormat } from "./outputFormat.ts";
import type { RowSink } from "./rowProcessor.ts";

// The byte row path: a row indexed, judged and written on its bytes, with no string made for
// it unless a cell needs one. It takes the rows it can prove valid, answers the errors of a row
// of the right shape whose cells their validators refuse (byteJudge.ts), and hands every other
// row back (a blank row, a wrong number of cells, irregular or unclosed quoting, bytes that
// are not UTF-8, a row past maxRowBytes, a file lacking a field which may not be empty),
// and the string path then does for that row exactly what it did before this path existed:
// one definition of each verdict, each message and each output line.

type Options = Pick<
  JobOptions,
  "delimiter" | "quote" | "escape" | "encoding" | "format" | "neutralizeFormulas" | "newline"
> & { delimiter: string };

export class ByteRowPath {
  readonly #judge: ByteJudge;
  readonly #format: OutputFormat;
  readonly #index: FieldIndex;
  readonly #writer: ByteRowWriter;

  /** The path for this job's rows, or undefined when none of them can take it. */
  static for(judge: RowJudge, format: OutputFormat, options: Options): ByteRowPath | undefined {
    // Output bytes are the source's bytes: both UTF-8 (a UTF-16 source arrives transcoded),
    // and CSV without formula neutralizing (which rewrites cells).
    if (!judge.bytes || options.encoding === "windows-1252") return undefined;
    if (options.format !== "csv" || options.neutralizeFormulas) return undefined;
    return new ByteRowPath(judge.bytes(), format, options);
  }

  private constructor(judge: ByteJudge, format: OutputFormat, options: Options) {
    this.#judge = judge;
    this.#format = format;
    this.#index = new FieldIndex(options);
    this.#writer = new ByteRowWriter(format.columns, judge.columnOf, options, options.newline);
  }

  /**
   * Judges the row. True when it is valid: its output line is written to `sink` (none: the line
   * is already in an uploaded part). Its errors when it is invalid, and false when the string
   * path is to take the row: then nothing was written.
   */
  take(row: FramedRow, sink: RowSink | undefined): boolean | readonly RowError[] {
    if (row.oversize || row.unterminated) return false;
    const bytes = asBuffer(row.bytes);
    if (!(row.utf8 || isUtf8(bytes)) || !this.#index.index(bytes, row.quoted)) return false;
    const verdict = this.#judge.judge(bytes, this.#index);
    if (verdict === UNDECIDED) return false;
    if (verdict === INVALID) return this.#judge.errors;
    if (!sink) return true;
    const changes = verdict === CHANGED ? this.#judge.changes : undefined;
    if (!this.#writer.write(bytes, this.#index, row.quoted, sink, changes)) {
      sink.write(this.#format.line(this.#cells(bytes, changes)));
    }
    return true;
  }

  /** The row's cells as text, for the string writer. */
  #cells(row: Buffer, changes: readonly (string | undefined)[] | undefined): string[] {
    const { columnOf } = this.#judge;
    return columnOf.map((column, field) => {
      const change = changes?.[field];
      if (change !== undefined) return change;
      return column === -1 ? "" : this.#index.value(row, column);
    });
  }
}
