import Papa from "papaparse";
import { FieldIndex, unescapeField } from "./fieldIndex.ts";
import { asBuffer } from "./rowDecoder.ts";

// Splits one framed row into fields. A row without a quote character is a plain split; a row
// with regular quoting is split where its field index says; anything irregular goes through
// papaparse, which then sees exactly one row: the framer already found where it ends, so
// papaparse's cursor, newline guessing and chunking traps do not apply.

export type ParsedRow = { ok: true; fields: string[] } | { ok: false; message: string };

export class RowParser {
  readonly #delimiter: string;
  readonly #quote: string;
  readonly #escape: string | undefined;
  readonly #index: FieldIndex;

  constructor(dialect: { delimiter: string; quote: string; escape?: string | undefined }) {
    this.#delimiter = dialect.delimiter;
    this.#quote = dialect.quote;
    this.#escape = dialect.escape;
    this.#index = new FieldIndex(dialect);
  }

  /** Fields of a row from its bytes and their text (decoded with the job's encoding). */
  parseRow(bytes: Uint8Array, text: string, quoted: boolean): ParsedRow {
    if (!quoted) return { ok: true, fields: text.split(this.#delimiter) };
    const index = this.#index;
    if (index.index(bytes, true)) {
      const fields = this.#fields(bytes, text);
      // Quoted rows may be rare: a very long one's index is not kept until the next.
      index.trim();
      return { ok: true, fields };
    }
    // Irregular quoting: papaparse gives its verdict and the words for the reject report.
    const result = Papa.parse<string[]>(text, {
      delimiter: this.#delimiter,
      quoteChar: this.#quote,
      escapeChar: this.#escape ?? this.#quote,
      header: false,
      skipEmptyLines: false,
      dynamicTyping: false,
    });
    const first = result.errors[0];
    if (first) return { ok: false, message: describePapaError(first) };
    if (result.data.length !== 1) {
      return { ok: false, message: "malformed quoting: the row does not parse as one record" };
    }
    return { ok: true, fields: result.data[0] as string[] };
  }

  /** The indexed fields' values. */
  #fields(bytes: Uint8Array, text: string): string[] {
    const index = this.#index;
    const { starts, ends, count } = index;
    // One unit per byte (ASCII, or a single-byte encoding): byte offsets are text offsets.
    const sameOffsets = text.length === bytes.length;
    const buffer = asBuffer(bytes);
    const fields: string[] = new Array(count);
    for (let i = 0; i < count; i++) {
      if (!sameOffsets) fields[i] = index.value(buffer, i);
      else {
        const raw = text.slice(starts[i], ends[i]);
        fields[i] = index.escaped(i) ? unescapeField(raw, this.#quote, this.#escape) : raw;
      }
    }
    return fields;
  }
}

function describePapaError(error: Papa.ParseError): string {
  switch (error.code) {
    case "MissingQuotes":
      return "malformed quoting: a quoted field is not closed";
    case "InvalidQuotes":
      return "malformed quoting: a closing quote is followed by other characters";
    default:
      return `malformed row: ${error.message}`;
  }
}
