import Papa from "papaparse";

// Splits one framed row into fields. A row without a quote character is a plain split; a row
// with quotes goes through papaparse, which sees exactly one row: the framer already found where
// it ends, so papaparse's cursor, newline guessing and chunking traps do not apply.

export type ParsedRow = { ok: true; fields: string[] } | { ok: false; message: string };

export class RowParser {
  readonly #delimiter: string;
  readonly #quote: string;

  constructor(dialect: { delimiter: string; quote: string }) {
    this.#delimiter = dialect.delimiter;
    this.#quote = dialect.quote;
  }

  parse(text: string, quoted: boolean): ParsedRow {
    if (!quoted) return { ok: true, fields: text.split(this.#delimiter) };
    const result = Papa.parse<string[]>(text, {
      delimiter: this.#delimiter,
      quoteChar: this.#quote,
      escapeChar: this.#quote,
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
