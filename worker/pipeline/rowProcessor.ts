import type { JobOptions, OutputSide, ResumeMark, RowCounts } from "../../shared/job.ts";
import { visible } from "../../shared/visible.ts";
import type { FramedRow } from "../csv/csvFramer.ts";
import { asBuffer, type RowDecoder, rowDecoder } from "../csv/rowDecoder.ts";
import { RowParser } from "../csv/rowParser.ts";
import { PermanentJobError } from "../errors.ts";
import {
  MissingCells,
  REJECT_REPORT_HEADER,
  type RowError,
  type RowErrorCode,
  type RowErrors,
} from "../judge/rowErrors.ts";
import { HeaderError, type JudgeFactory, type RowJudge, type Verdict } from "../judge/rowJudge.ts";
import { nonTextReason, otherDelimiterReason } from "../source/textSniffer.ts";
import { ByteRowPath } from "./byteRowPath.ts";
import { countIn, putEntry, summarizeMissing, summaryEntry, summaryName } from "./errorSummary.ts";
import { enforcePolicy } from "./invalidRowPolicy.ts";
import { csvLineFormat, type OutputFormat, outputFormat } from "./outputFormat.ts";

// The row processor: each framed row of the source, in order, is decoded, parsed, judged and
// routed, its valid form to the output and its errors to the reject report, and the position
// (byte offset, line, counts) moves past it. The worker's job attempts and the benchmark's
// CPU-only run both drive it; only where the text goes differs.

/** Where one output's text goes: its uploader, or memory in the benchmark. */
export interface RowSink {
  /** Nothing written yet: the output still needs its header. */
  readonly empty: boolean;
  write(text: string): void;
  /** UTF-8 bytes of a whole row (the byte row path's), then `suffix`, copied at once. */
  writeBytes(bytes: Uint8Array, suffix?: Uint8Array): void;
  /**
   * Told after every row at or past the sink's write-from offset (earlier rows are already in
   * its parts), with the position it ends at; a promise when a part was sealed (the row loop
   * waits for it), undefined otherwise (most rows cost no promise).
   */
  endRow(mark: () => ResumeMark): Promise<void> | undefined;
}

export interface RowProcessorInput {
  /** The job's options, its delimiter resolved. */
  options: JobOptions & { delimiter: string };
  judges: JudgeFactory;
  /** Where reading starts: the earlier of the outputs' resume marks. */
  from: ResumeMark;
  /** Per output, the source offset from which its rows are still to be written. */
  writeFrom: Record<OutputSide, number>;
  sinks: Record<OutputSide, RowSink>;
  /** A resumed attempt's header (read again from the source when reading starts at 0). */
  header: readonly string[] | null;
  /** Told of the header once read, for the checkpoint to keep. */
  onHeader(header: string[]): void;
  /**
   * Whether rows that can be judged and written on their bytes are (default true). Off, every
   * row takes the string path: the differential tests and the benchmark compare the two.
   */
  bytePath?: boolean;
  /**
   * Whether empty outputs get their header rows (default true). A split job's shards after the
   * first write none: their outputs are joined after the first shard's.
   */
  headers?: boolean;
}

export function cloneCounts(counts: RowCounts): RowCounts {
  const fields: RowCounts["fields"] = {};
  for (const [name, f] of Object.entries(counts.fields)) {
    putEntry(fields, name, { errors: { ...f.errors }, rows: [...f.rows] });
  }
  return { ...counts, errors: { ...counts.errors }, fields };
}

/**
 * Room for one row's lines in the reject report, in UTF-16 units of their text less the row and
 * line numbers (which a split job's shards count from their own start): 16 times the row's
 * length, at least ROW_REPORT_MIN and at most ROW_REPORT_MAX. The line that fills it is written
 * whole, and the first line always is.
 */
const ROW_REPORT_MIN = 4 * 1024;
export const ROW_REPORT_MAX = 64 * 1024;
const ROW_REPORT_PER_CHAR = 16;

export function rowReportRoom(text: string): number {
  return Math.min(ROW_REPORT_MAX, Math.max(ROW_REPORT_MIN, ROW_REPORT_PER_CHAR * text.length));
}

/** The number of each code among a row's errors from `from` on, in their order. */
function codeCounts(errors: RowErrors, from: number): Map<RowErrorCode, number> {
  const byCode = new Map<RowErrorCode, number>();
  if (errors instanceof MissingCells) {
    if (errors.length > from) byCode.set(errors.code, errors.length - from);
    return byCode;
  }
  for (let i = from; i < errors.length; i++) {
    const { code } = errors[i] as RowError;
    byCode.set(code, (byCode.get(code) ?? 0) + 1);
  }
  return byCode;
}

/** What a row's report leaves out: "and 3 more errors of this row, not listed: 3 extra-cell". */
function unlisted(errors: RowErrors, from: number): string {
  const codes = [...codeCounts(errors, from)].map(([code, n]) => `${n} ${code}`).join(", ");
  const left = errors.length - from;
  return `and ${left} more ${left === 1 ? "error" : "errors"} of this row, not listed: ${codes}`;
}

/** Counts a row's errors by code and in the summary by field. */
function count(counts: RowCounts, errors: RowErrors, rowNumber: number): void {
  if (errors instanceof MissingCells) {
    counts.errors[errors.code] = (counts.errors[errors.code] ?? 0) + errors.length;
    summarizeMissing(counts.fields, errors, rowNumber);
    return;
  }
  for (const { field, code } of errors) {
    counts.errors[code] = (counts.errors[code] ?? 0) + 1;
    countIn(summaryEntry(counts.fields, summaryName(field)), code, 1, rowNumber);
  }
}

/** What NUL bytes in a header's labels mean, and what to do about them. */
const UTF16_WITHOUT_BOM = `the header holds NUL bytes: the file looks like UTF-16 without a byte order mark (save it as UTF-8, or as UTF-16 with one and pass --options '{"encoding":"utf-16"}')`;

/**
 * A header that does not match, as the job's failure says it: the labels' invisible characters
 * escaped (a label "\uFEFFid" would look like the "id" it is not, a NUL would reach a terminal
 * raw) and, when a label holds NUL bytes, the encoding they betray: UTF-16 read as UTF-8, whose
 * every other byte is NUL. options.encoding "utf-16" needs the byte order mark, so the hint asks
 * for one.
 */
function headerMismatch(message: string, header: readonly string[] | null): string {
  const nul = header?.some((label) => label.includes("\0")) ?? false;
  return nul ? `${visible(message)}; ${UTF16_WITHOUT_BOM}` : visible(message);
}

function rowError(code: RowError["code"], message: string): Verdict {
  return { ok: false, errors: [{ field: "", code, message }] };
}

function sameCells(cells: readonly string[], fields: readonly string[]): boolean {
  if (cells.length !== fields.length) return false;
  for (let i = 0; i < cells.length; i++) if (cells[i] !== fields[i]) return false;
  return true;
}

export class RowProcessor {
  readonly #in: RowProcessorInput;
  readonly #position: ResumeMark;
  readonly #decode: RowDecoder;
  readonly #parser: RowParser;
  /** The fields of the row being judged, for writing it as it came when nothing changed. */
  #fields: readonly string[] = [];
  readonly #reportLine: (cells: readonly string[]) => string;
  readonly #comment: number | undefined;
  #judge: RowJudge | undefined;
  #format: OutputFormat | undefined;
  #bytes: ByteRowPath | undefined;
  /** Replaying earlier rows: the header is still to be skipped. */
  #replayHeader: boolean;

  constructor(input: RowProcessorInput) {
    this.#in = input;
    const { options, from } = input;
    this.#position = { ...from, counts: cloneCounts(from.counts) };
    this.#decode = rowDecoder(options.encoding);
    this.#parser = new RowParser(options);
    this.#reportLine = csvLineFormat(options);
    this.#comment = options.commentChar?.charCodeAt(0);
    this.#replayHeader = options.header;
    // Reading from the start means reading the header row again, even if a checkpoint has it.
    if (!options.header) this.#bind(null);
    else if (from.offset > 0) {
      if (!input.header) throw new Error("checkpoint has a resume offset but no header");
      this.#bind(input.header);
    }
  }

  /** The position after the last row, as a mark of its own (for a part or a checkpoint). */
  mark = (): ResumeMark => ({ ...this.#position, counts: cloneCounts(this.#position.counts) });

  /** The live position (not a copy: read it, do not keep it). */
  get position(): Readonly<ResumeMark> {
    return this.#position;
  }

  /** Verdicts depend on earlier rows (unique, primary key): a resume replays them. */
  get stateful(): boolean {
    return this.#judge?.stateful === true;
  }

  /** Routes one row; a promise only when an output sealed a part on it. */
  process(row: FramedRow): Promise<void> | undefined {
    if (this.#isComment(row)) {
      this.#pass(row);
      return undefined;
    }
    if (!this.#judge) {
      this.#readHeader(row);
      return undefined;
    }
    const position = this.#position;
    position.rowNumber++;
    position.counts.read++;
    const { output, rejects } = this.#in.sinks;
    const writes = row.start >= this.#in.writeFrom.output;
    const taken = this.#bytes?.take(row, writes ? output : undefined);
    if (taken === true) position.counts.valid++;
    else if (taken) this.#invalid(row, taken, this.#decode(asBuffer(row.bytes)) as string);
    else {
      const bytes = asBuffer(row.bytes);
      const raw = this.#decode(bytes);
      const judged = this.#judgeRow(row, raw);
      if (judged.ok) this.#valid(row, judged.cells, raw as string);
      else this.#invalid(row, judged.errors, raw ?? bytes.toString("utf8"));
    }
    this.#pass(row);
    const sealing = writes ? output.endRow(this.mark) : undefined;
    const writesReport = row.start >= this.#in.writeFrom.rejects;
    if (sealing) return writesReport ? sealing.then(() => rejects.endRow(this.mark)) : sealing;
    return writesReport ? rejects.endRow(this.mark) : undefined;
  }

  /** A row before the resume point, judged again only so that the judge remembers it. */
  remember(row: FramedRow): void {
    if (row.oversize || row.unterminated || this.#isComment(row)) return;
    if (this.#replayHeader) {
      this.#replayHeader = false;
      return;
    }
    const text = this.#decode(asBuffer(row.bytes));
    const parsed =
      text === undefined ? undefined : this.#parser.parseRow(row.bytes, text, row.quoted);
    if (parsed?.ok) this.#judge?.judge(parsed.fields);
  }

  /** After the last row: a source without a header row cannot have been a CSV. */
  checkEnd(): void {
    if (!this.#judge) {
      throw new PermanentJobError(
        "the source is empty: expected a header row (set options.header to false for files without one)",
      );
    }
  }

  #isComment(row: FramedRow): boolean {
    return this.#comment !== undefined && row.bytes[0] === this.#comment;
  }

  /** Moves the position past a row (judged, skipped or read as the header). */
  #pass(row: FramedRow): void {
    this.#position.offset = row.end;
    this.#position.lineNumber = row.nextLine;
  }

  #valid(row: FramedRow, cells: readonly string[], raw: string): void {
    this.#position.counts.valid++;
    if (row.start < this.#in.writeFrom.output) return;
    const format = this.#format as OutputFormat;
    // An unquoted row whose cells all came out as they went in is written as its source text.
    const passes = format.passThrough && !row.quoted && sameCells(cells, this.#fields);
    this.#in.sinks.output.write(passes ? raw + this.#in.options.newline : format.line(cells));
  }

  #invalid(row: FramedRow, errors: RowErrors, text: string): void {
    const { counts, rowNumber } = this.#position;
    counts.rejected++;
    count(counts, errors, rowNumber);
    if (row.start >= this.#in.writeFrom.rejects) this.#report(row, errors, text);
    enforcePolicy(this.#in.options, rowNumber, row.line, errors, counts);
  }

  /**
   * The row's lines in the reject report, one per error, each with the row's text, up to the
   * line that fills the row's room (rowReportRoom): that line says which errors it leaves out
   * (the job's result counts them all). A row has up to one error per column of the header:
   * every one listed, a long row in a wide file made a report of gigabytes (one string, the
   * event loop held), and a short row in one thousands of times its size.
   */
  #report(row: FramedRow, errors: RowErrors, text: string): void {
    const number = String(this.#position.rowNumber);
    const line = String(row.line);
    const numbers = number.length + line.length;
    const room = rowReportRoom(text);
    const reportLine = (e: RowError, message: string) =>
      this.#reportLine([number, line, e.field, e.code, message, text]);
    let report = "";
    let used = 0;
    for (let i = 0; i < errors.length; i++) {
      const e = errors.at(i) as RowError;
      const next = reportLine(e, e.message);
      used += next.length - numbers;
      if (i < errors.length - 1 && used > room) {
        // This line fills the row's room: it says what is left out.
        report += reportLine(e, `${e.message} (${unlisted(errors, i + 1)})`);
        break;
      }
      report += next;
    }
    this.#in.sinks.rejects.write(report);
  }

  #judgeRow(row: FramedRow, raw: string | undefined): Verdict {
    const { options } = this.#in;
    if (row.oversize) {
      return rowError(
        "format-error",
        `the row is longer than maxRowBytes (${options.maxRowBytes} bytes)`,
      );
    }
    if (raw === undefined) return rowError("encoding-error", "the row is not valid UTF-8");
    if (row.unterminated) {
      return rowError("format-error", "a quoted field is not closed before the end of the file");
    }
    const parsed = this.#parser.parseRow(row.bytes, raw, row.quoted);
    if (!parsed.ok) return rowError("format-error", parsed.message);
    this.#fields = parsed.fields;
    return (this.#judge as RowJudge).judge(parsed.fields);
  }

  #readHeader(row: FramedRow): void {
    const { options } = this.#in;
    const text = row.oversize ? undefined : this.#decode(asBuffer(row.bytes));
    const problem = row.oversize
      ? `it is longer than maxRowBytes (${options.maxRowBytes} bytes)`
      : text === undefined
        ? "it is not valid UTF-8"
        : undefined;
    const parsed =
      text === undefined ? undefined : this.#parser.parseRow(row.bytes, text, row.quoted);
    if (!parsed?.ok) {
      const why = problem ?? (parsed && !parsed.ok ? parsed.message : "");
      // What s3csv infer would say of such a head: binary, compressed, another encoding.
      const notText = nonTextReason(asBuffer(row.bytes), options.encoding);
      const hint = notText ? `; the source ${notText}` : "";
      throw new PermanentJobError(
        `the header row (line ${row.line}) cannot be read: ${why}${hint}`,
      );
    }
    if (parsed.fields.length > options.maxColumns) {
      throw new PermanentJobError(
        `the header row has ${parsed.fields.length} columns, more than options.maxColumns (${options.maxColumns})`,
      );
    }
    this.#pass(row);
    this.#in.onHeader(parsed.fields);
    try {
      this.#bind(parsed.fields);
    } catch (error) {
      // A header of one column that another delimiter splits: say which one (as infer does).
      const other =
        parsed.fields.length === 1 && text !== undefined
          ? otherDelimiterReason([text], options.delimiter, options.quote)
          : undefined;
      if (error instanceof PermanentJobError && other) {
        throw new PermanentJobError(`${error.message}; the header ${other}`);
      }
      throw error;
    }
  }

  #bind(header: readonly string[] | null): void {
    try {
      this.#judge = this.#in.judges.bind(header);
    } catch (error) {
      if (error instanceof HeaderError)
        throw new PermanentJobError(headerMismatch(error.message, header));
      throw error;
    }
    const { options, sinks } = this.#in;
    this.#format = outputFormat(this.#judge, options);
    if (this.#in.bytePath !== false)
      this.#bytes = ByteRowPath.for(this.#judge, this.#format, options);
    if (this.#in.headers === false) return;
    if (this.#format.header !== undefined && sinks.output.empty) {
      sinks.output.write(this.#format.header);
    }
    if (sinks.rejects.empty) sinks.rejects.write(this.#reportLine([...REJECT_REPORT_HEADER]));
  }
}
