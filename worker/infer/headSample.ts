import { TextDecoder } from "node:util";
import type { JobOptions } from "../../shared/job.ts";
import { CsvFramer, type FramedRow } from "../csv/csvFramer.ts";
import { asBuffer, type RowDecoder, rowDecoder } from "../csv/rowDecoder.ts";
import { RowParser } from "../csv/rowParser.ts";
import type { RowErrorCode } from "../judge/rowErrors.ts";
import { shapeErrors } from "../judge/rowJudge.ts";
import { sniffDelimiter } from "../source/delimiterSniffer.ts";
import { utf16Order } from "../source/utf16Source.ts";

// The head of an object as rows, read exactly as a job reads them (the framer, the row decoder
// and parser, the job's dialect), so that a schema inferred from them describes what a job
// will judge. It also decides whether the head is CSV at all: a binary or empty object, or one
// that reads as a single column where the lines plainly hold several values, is refused here
// rather than described as one string field.

/** The text the delimiter is guessed from and binary content is looked for in (as a job's). */
const SNIFF_BYTES = 64 * 1024;
/** Lines the single-column check looks at. */
const CHECK_LINES = 50;
/** More control bytes than this share of the head: binary. */
const MAX_CONTROL_SHARE = 0.01;
/** More invalid UTF-8 sequences than this share of the head's characters: not UTF-8 text. */
const MAX_INVALID_SHARE = 0.01;
/** A delimiter that splits at least this share of the lines evenly is what the lines use. */
const EVEN_SPLIT_SHARE = 0.8;
/** What the single-column check tries; a space only when it splits a line twice or more. */
const OTHER_DELIMITERS = [",", ";", "\t", "|", " "] as const;

/** The head cannot be described as CSV; the message is a predicate for the object's name. */
export class NotCsvError extends Error {
  override name = "NotCsvError";
}

export type SampleDialect = Pick<
  JobOptions,
  | "delimiter"
  | "quote"
  | "escape"
  | "header"
  | "encoding"
  | "commentChar"
  | "maxRowBytes"
  | "maxColumns"
>;

/** How the rows are found once the head has been looked at. */
interface Reading {
  framer: CsvFramer;
  parser: RowParser;
  delimiter: string;
  /** Set for a UTF-16 source: its text is read as UTF-8, as a job transcodes it. */
  utf16?: TextDecoder;
}

export interface HeadSample {
  /** The header's labels, or field1..fieldN for a file without a header row. */
  header: string[];
  /** Data rows whose shape a job accepts (as many cells as labels, not blank), as cells. */
  rows: string[][];
  /** Data rows sampled, those a job would reject whatever the schema included. */
  read: number;
  /** Sampled rows a job rejects whatever the schema, by error code. */
  unusable: Partial<Record<RowErrorCode, number>>;
  /** The delimiter the rows were split on (found in the head when the dialect says "auto"). */
  delimiter: string;
  /** Bytes of text up to the end of the last sampled row. */
  bytes: number;
}

/**
 * Takes the text of an object's head chunk by chunk and keeps its first `rows` data rows. A
 * head that is not CSV throws NotCsvError, from push() or finish().
 */
export class HeadSampler {
  readonly #dialect: SampleDialect;
  readonly #wanted: number;
  readonly #decode: RowDecoder;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #reading: Reading | undefined;
  #labels: string[] | undefined;
  #rows: string[][] = [];
  #read = 0;
  #unusable: Partial<Record<RowErrorCode, number>> = {};
  #lines: string[] = [];
  #bytes = 0;
  #enough = false;

  constructor(dialect: SampleDialect, rows: number) {
    this.#dialect = dialect;
    this.#wanted = rows;
    this.#decode = rowDecoder(dialect.encoding);
  }

  /** True once enough rows were read: the caller stops reading. */
  push(chunk: Uint8Array): boolean {
    if (this.#enough) return true;
    if (this.#reading) {
      this.#feed(chunk);
      return this.#enough;
    }
    // Copied: the reader may reuse a chunk's memory, and this one waits for the sniff.
    this.#pending.push(Buffer.from(chunk));
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes >= SNIFF_BYTES) this.#start();
    return this.#enough;
  }

  /**
   * The sample. `complete`: the text ended where the object does, so its last row counts even
   * without a line break; otherwise the read stopped early and a row it cut is left out.
   */
  finish(complete: boolean): HeadSample {
    if (!this.#reading) this.#start();
    const reading = this.#reading as Reading;
    if (complete && !this.#enough) {
      const rest = reading.utf16?.decode();
      if (rest) this.#frame(Buffer.from(rest, "utf8"));
      for (const row of reading.framer.end()) if (this.#take(row)) break;
    }
    return this.#sample(reading.delimiter);
  }

  #start(): void {
    const head = Buffer.concat(this.#pending);
    this.#pending = [];
    const { encoding, quote } = this.#dialect;
    const order = encoding === "windows-1252" ? undefined : utf16Order(head);
    if (!order && encoding === "utf-16") {
      throw new NotCsvError(
        `has no UTF-16 byte order mark; options.encoding "utf-16" needs one (FF FE or FE FF)`,
      );
    }
    const utf16 = order ? new TextDecoder(order === "le" ? "utf-16le" : "utf-16be") : undefined;
    const text = utf16 ? Buffer.from(utf16.decode(head, { stream: true }), "utf8") : head;
    refuseNonText(text, encoding);
    const delimiter =
      this.#dialect.delimiter === "auto"
        ? sniffDelimiter(text.subarray(0, SNIFF_BYTES).toString("latin1"), quote)
        : this.#dialect.delimiter;
    this.#reading = {
      framer: new CsvFramer({
        delimiter,
        quote,
        escape: this.#dialect.escape,
        maxRowBytes: this.#dialect.maxRowBytes,
        startOffset: 0,
        startLine: 1,
      }),
      parser: new RowParser({ delimiter, quote, escape: this.#dialect.escape }),
      delimiter,
      ...(utf16 ? { utf16 } : {}),
    };
    this.#frame(text);
  }

  #feed(chunk: Uint8Array): void {
    const utf16 = this.#reading?.utf16;
    this.#frame(utf16 ? Buffer.from(utf16.decode(chunk, { stream: true }), "utf8") : chunk);
  }

  #frame(text: Uint8Array): void {
    for (const row of (this.#reading as Reading).framer.push(text)) {
      if (this.#take(row)) return;
    }
  }

  /** One framed row: the header, a comment, or a data row. True once enough rows are read. */
  #take(row: FramedRow): boolean {
    const { commentChar } = this.#dialect;
    if (commentChar !== undefined && row.bytes[0] === commentChar.charCodeAt(0)) return false;
    const text = row.oversize ? undefined : this.#decode(asBuffer(row.bytes));
    if (text !== undefined && this.#lines.length < CHECK_LINES) this.#lines.push(text);
    if (this.#labels === undefined && this.#dialect.header) {
      this.#labels = this.#readHeader(row, text);
      this.#bytes = row.end;
      return false;
    }
    this.#read++;
    this.#bytes = row.end;
    const fields = this.#cells(row, text);
    if (typeof fields === "string") this.#count(fields);
    else {
      this.#labels ??= fields.map((_, i) => `field${i + 1}`);
      const shape = shapeErrors(fields, this.#labels.length, this.#labels);
      if (shape[0]) this.#count(shape[0].code);
      else this.#rows.push(fields);
    }
    this.#enough = this.#read >= this.#wanted;
    return this.#enough;
  }

  /** A data row's cells, or the code a job rejects it with before any field is judged. */
  #cells(row: FramedRow, text: string | undefined): string[] | RowErrorCode {
    if (row.oversize || row.unterminated) return "format-error";
    if (text === undefined) return "encoding-error";
    const parsed = (this.#reading as Reading).parser.parse(text, row.quoted);
    return parsed.ok ? parsed.fields : "format-error";
  }

  #count(code: RowErrorCode): void {
    this.#unusable[code] = (this.#unusable[code] ?? 0) + 1;
  }

  #readHeader(row: FramedRow, text: string | undefined): string[] {
    const { maxRowBytes, maxColumns } = this.#dialect;
    if (row.oversize) {
      throw new NotCsvError(
        `has a first row (the header) longer than options.maxRowBytes (${maxRowBytes} bytes)`,
      );
    }
    if (text === undefined) throw new NotCsvError("has a header row that is not valid UTF-8");
    const parsed = (this.#reading as Reading).parser.parse(text, row.quoted);
    if (!parsed.ok)
      throw new NotCsvError(`has a header row that cannot be read: ${parsed.message}`);
    if (parsed.fields.length > maxColumns) {
      throw new NotCsvError(
        `has ${parsed.fields.length} columns in its header, more than options.maxColumns (${maxColumns})`,
      );
    }
    return parsed.fields;
  }

  #sample(delimiter: string): HeadSample {
    const labels = this.#labels;
    if (labels === undefined) {
      throw new NotCsvError(
        this.#dialect.header ? "is empty: there is no header row" : "is empty: there are no rows",
      );
    }
    refuseBadLabels(labels);
    if (this.#read === 0) {
      throw new NotCsvError(
        "has a header row but no data rows: there are no values to infer types from",
      );
    }
    if (labels.length === 1) refuseHiddenColumns(this.#lines, delimiter, this.#dialect.quote);
    const unusable = this.#read - this.#rows.length;
    if (unusable * 2 > this.#read) {
      const counts = Object.entries(this.#unusable)
        .map(([code, n]) => `${code} ${n}`)
        .join(", ");
      throw new NotCsvError(
        `does not read as CSV with delimiter ${JSON.stringify(delimiter)} and quote ${JSON.stringify(this.#dialect.quote)}: ${unusable} of the ${this.#read} sampled rows would be rejected whatever the schema (${counts})`,
      );
    }
    return {
      header: labels,
      rows: this.#rows,
      read: this.#read,
      unusable: this.#unusable,
      delimiter,
      bytes: this.#bytes,
    };
  }
}

/** Refuses a head that is not text: empty, NUL or many control bytes, or not UTF-8. */
function refuseNonText(head: Buffer, encoding: SampleDialect["encoding"]): void {
  const sample = head.subarray(0, SNIFF_BYTES);
  const bom = sample[0] === 0xef && sample[1] === 0xbb && sample[2] === 0xbf ? 3 : 0;
  if (/^\s*$/.test(sample.subarray(bom).toString("latin1"))) {
    throw new NotCsvError(sample.length === 0 ? "is empty" : "is empty: it holds only blank lines");
  }
  if (sample[0] === 0x1f && sample[1] === 0x8b) {
    throw new NotCsvError(
      `is gzip-compressed: name it .gz or pass --options '{"compression":"gzip"}'`,
    );
  }
  if (sample.subarray(0, 4).toString("latin1") === "PK\x03\x04") {
    throw new NotCsvError("is a ZIP archive (an .xlsx workbook, say), not CSV text: export CSV");
  }
  let nul = 0;
  let control = 0;
  for (const byte of sample) {
    if (byte === 0) nul++;
    // Tab, LF, FF and CR are the control characters text files have.
    else if (
      (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0c && byte !== 0x0d) ||
      byte === 0x7f
    )
      control++;
  }
  if (nul > 0 || control > sample.length * MAX_CONTROL_SHARE) {
    throw new NotCsvError(
      `looks binary, not like CSV text: its first ${sample.length} bytes hold ${nul} NUL and ${control} other control bytes`,
    );
  }
  if (encoding === "windows-1252") return;
  // Streaming: a character the sample's end cuts in two is not an error.
  const text = new TextDecoder("utf-8").decode(sample, { stream: true });
  const invalid = text.split("\uFFFD").length - 1;
  if (invalid > text.length * MAX_INVALID_SHARE) {
    throw new NotCsvError(
      `is not UTF-8 text: ${invalid} invalid byte sequences in its first ${sample.length} bytes (if it is windows-1252, pass --options '{"encoding":"windows-1252"}')`,
    );
  }
}

/** A header a job would fail on: a blank label, or one that appears twice. */
function refuseBadLabels(labels: readonly string[]): void {
  const problems: string[] = [];
  const seen = new Set<string>();
  labels.forEach((label, i) => {
    if (label.trim() === "") problems.push(`column ${i + 1} has no label`);
    else if (seen.has(label)) problems.push(`"${label}" appears more than once`);
    seen.add(label);
  });
  if (problems.length) {
    throw new NotCsvError(
      `has a header row a job would fail on (${problems.join("; ")}): fix its labels, or pass --options '{"header":false}' if the first row is data`,
    );
  }
}

/**
 * One column, yet another delimiter (or runs of spaces) splits most lines the same number of
 * times: the lines hold several values and the dialect is wrong, so no schema is made.
 */
function refuseHiddenColumns(lines: readonly string[], delimiter: string, quote: string): void {
  if (lines.length < 2) return;
  for (const candidate of OTHER_DELIMITERS) {
    if (candidate === delimiter) continue;
    const least = candidate === " " ? 2 : 1;
    const byCount = new Map<number, number>();
    for (const line of lines) {
      const n = countOutsideQuotes(line, candidate, quote);
      if (n >= least) byCount.set(n, (byCount.get(n) ?? 0) + 1);
    }
    const even = Math.max(0, ...byCount.values());
    if (even >= lines.length * EVEN_SPLIT_SHARE) {
      const name = candidate === "\t" ? "tab" : JSON.stringify(candidate);
      const flag = candidate === "\t" ? "tab" : `'${candidate}'`;
      throw new NotCsvError(
        `reads as a single column: no ${JSON.stringify(delimiter)} was found, but its lines look ${name}-separated (pass --delimiter ${flag})`,
      );
    }
  }
}

function countOutsideQuotes(line: string, char: string, quote: string): number {
  let count = 0;
  let quoted = false;
  for (const c of line) {
    if (c === quote) quoted = !quoted;
    else if (c === char && !quoted) count++;
  }
  return count;
}
