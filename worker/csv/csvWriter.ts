import type { JsonType } from "../judge/rowJudge.ts";

// Output rows. CSV is RFC 4180: comma-separated, fields quoted only when they must be (a comma,
// a quote or a line break inside), quotes doubled. NDJSON is one JSON object per line.

const NEEDS_QUOTES = /[",\r\n]/;

export function formatCell(cell: string): string {
  return NEEDS_QUOTES.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

const FORMULA_START = /^[=+\-@\t\r]/;
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A cell a spreadsheet would run as a formula gets a leading quote (OWASP CSV injection). */
export function neutralizeFormula(cell: string): string {
  return FORMULA_START.test(cell) && !NUMBER.test(cell) ? `'${cell}` : cell;
}

export function formatRow(cells: readonly string[], newline: string): string {
  // A row of one empty cell is quoted, as Python's csv module writes it: bare, it is an empty
  // line, which readers skip (pandas, Python's csv module), and the row would be lost.
  if (cells.length === 1 && cells[0] === "") return `""${newline}`;
  let line = "";
  for (let i = 0; i < cells.length; i++) {
    if (i > 0) line += ",";
    line += formatCell(cells[i] as string);
  }
  return line + newline;
}

function jsonValue(text: string, type: JsonType | undefined): unknown {
  if (text === "") return null;
  if (type === "json") return JSON.parse(text);
  if (type === "boolean") return text === "true";
  if (type === "integer" || type === "number") {
    const n = Number(text);
    // Integers beyond 2^53 and NaN/INF keep their exact text.
    return (type === "integer" ? Number.isSafeInteger(n) : Number.isFinite(n)) ? n : text;
  }
  return text;
}

export function ndjsonRowFormatter(
  header: readonly string[],
  types: readonly JsonType[] | undefined,
): (cells: readonly string[]) => string {
  return (cells) => {
    const row: Record<string, unknown> = {};
    for (let i = 0; i < header.length; i++)
      row[header[i] as string] = jsonValue(cells[i] as string, types?.[i]);
    return `${JSON.stringify(row)}\n`;
  };
}
