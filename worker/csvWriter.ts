// RFC 4180 output: comma-separated, fields quoted only when they must be (a comma, a quote or a
// line break inside), quotes doubled.

const NEEDS_QUOTES = /[",\r\n]/;

export function formatCell(cell: string): string {
  return NEEDS_QUOTES.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

export function formatRow(cells: readonly string[], newline: string): string {
  let line = "";
  for (let i = 0; i < cells.length; i++) {
    if (i > 0) line += ",";
    line += formatCell(cells[i] as string);
  }
  return line + newline;
}
