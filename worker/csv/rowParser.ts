import Papa from "papaparse";

// Splits one framed row into fields. A row without a quote character is a plain split; a row
// with regular RFC 4180 quoting is split here; anything irregular goes through papaparse, which
// then sees exactly one row: the framer already found where it ends, so papaparse's cursor,
// newline guessing and chunking traps do not apply.

export type ParsedRow = { ok: true; fields: string[] } | { ok: false; message: string };

export class RowParser {
  readonly #delimiter: string;
  readonly #quote: string;
  readonly #escape: string;

  constructor(dialect: { delimiter: string; quote: string; escape?: string | undefined }) {
    this.#delimiter = dialect.delimiter;
    this.#quote = dialect.quote;
    this.#escape = dialect.escape ?? dialect.quote;
  }

  parse(text: string, quoted: boolean): ParsedRow {
    if (!quoted) return { ok: true, fields: text.split(this.#delimiter) };
    const fields = splitQuoted(text, this.#delimiter, this.#quote, this.#escape);
    if (fields) return { ok: true, fields };
    // Irregular quoting: papaparse gives its verdict and the words for the reject report.
    const result = Papa.parse<string[]>(text, {
      delimiter: this.#delimiter,
      quoteChar: this.#quote,
      escapeChar: this.#escape,
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

/**
 * RFC 4180 fields of one row whose quoting is regular: a quoted field starts at a field start,
 * escapes its inner quotes (doubled, or behind `escapeChar`) and is followed by a delimiter or the
 * row's end. Anything else gives null, and the caller hands the row to papaparse.
 */
export function splitQuoted(
  text: string,
  delimiter: string,
  quote: string,
  escapeChar = quote,
): string[] | null {
  const fields: string[] = [];
  const n = text.length;
  const doubling = escapeChar === quote;
  let i = 0;
  for (;;) {
    if (text[i] === quote) {
      let value = "";
      let from = i + 1;
      for (;;) {
        const q = text.indexOf(quote, from);
        const e = doubling ? -1 : text.indexOf(escapeChar, from);
        if (e !== -1 && (q === -1 || e < q)) {
          if (e + 1 >= n) return null;
          value += text.slice(from, e) + text[e + 1];
          from = e + 2;
          continue;
        }
        if (q === -1) return null;
        value += text.slice(from, q);
        if (doubling && text[q + 1] === quote) {
          value += quote;
          from = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i === n) return fields;
      if (text[i] !== delimiter) return null;
      i++;
    } else {
      const d = text.indexOf(delimiter, i);
      const end = d === -1 ? n : d;
      const value = text.slice(i, end);
      if (value.includes(quote)) return null;
      fields.push(value);
      if (d === -1) return fields;
      i = d + 1;
    }
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
