import { TextDecoder } from "node:util";
import type { JobOptions } from "../../shared/job.ts";
import { CsvFramer, type FramedRow } from "../csv/csvFramer.ts";
import { asBuffer, type RowDecoder, rowDecoder } from "../csv/rowDecoder.ts";
import { RowParser } from "../csv/rowParser.ts";
import type { RowErrorCode, RowErrors } from "../judge/rowErrors.ts";
import { shapeCheck } from "../judge/rowJudge.ts";
import { sniffDelimiter } from "../source/delimiterSniffer.ts";
import { nonTextReason, otherDelimiterReason } from "../source/textSniffer.ts";
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
  /** The shape check for #labels, once they are known. */
  #shape: ((fields: readonly string[]) => RowErrors) | undefined;
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
    const nonText = nonTextReason(text.subarray(0, SNIFF_BYTES), encoding);
    if (nonText) throw new NotCsvError(nonText);
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
      this.#shape ??= shapeCheck(this.#labels);
      const shape = this.#shape(fields).at(0);
      if (shape) this.#count(shape.code);
      else this.#rows.push(fields);
    }
    this.#enough = this.#read >= this.#wanted;
    return this.#enough;
  }

  /** A data row's cells, or the code a job rejects it with before any field is judged. */
  #cells(row: FramedRow, text: string | undefined): string[] | RowErrorCode {
    if (row.oversize || row.unterminated) return "format-error";
    if (text === undefined) return "encoding-error";
    const parsed = (this.#reading as Reading).parser.parseRow(row.bytes, text, row.quoted);
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
    const parsed = (this.#reading as Reading).parser.parseRow(row.bytes, text, row.quoted);
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
    const hidden =
      labels.length === 1 && this.#lines.length >= 2
        ? otherDelimiterReason(this.#lines, delimiter, this.#dialect.quote)
        : undefined;
    if (hidden) throw new NotCsvError(hidden);
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
