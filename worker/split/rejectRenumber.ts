import { CsvFramer } from "../csv/csvFramer.ts";

// A shard writes its reject report with row and line numbers counted from its own first row;
// the whole file's report has the whole file's numbers. This adds the rows and lines before the
// shard to the first two cells of each report row, leaving every other byte as it was.

const COMMA = 0x2c;

export interface NumberShift {
  rows: number;
  lines: number;
}

/** The report rows of `chunks` (no header), renumbered; each ends with `newline`. */
export async function* renumberedReport(
  chunks: AsyncIterable<Uint8Array>,
  shift: NumberShift,
  newline: string,
  maxRowBytes: number,
): AsyncGenerator<Buffer> {
  const framer = new CsvFramer({
    delimiter: ",",
    quote: '"',
    maxRowBytes,
    // Any offset but 0: only a stream's first bytes are looked at as a byte order mark.
    startOffset: 1,
    startLine: 1,
  });
  const end = Buffer.from(newline);
  for await (const chunk of chunks) {
    const rows = framer.push(chunk);
    if (rows.length > 0) yield Buffer.concat(rows.flatMap((r) => [renumbered(r, shift), end]));
  }
  const rows = framer.end();
  if (rows.length > 0) yield Buffer.concat(rows.flatMap((r) => [renumbered(r, shift), end]));
}

function renumbered(row: { bytes: Uint8Array; oversize: boolean }, shift: NumberShift): Buffer {
  const bytes = Buffer.from(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength);
  const first = bytes.indexOf(COMMA);
  const second = first < 0 ? -1 : bytes.indexOf(COMMA, first + 1);
  const rowNumber = Number(bytes.subarray(0, first).toString("latin1"));
  const lineNumber = Number(bytes.subarray(first + 1, second).toString("latin1"));
  if (
    row.oversize ||
    first <= 0 ||
    second < 0 ||
    !Number.isInteger(rowNumber) ||
    !Number.isInteger(lineNumber)
  ) {
    throw new Error("a shard's reject report has a row that does not start with its numbers");
  }
  const head = `${rowNumber + shift.rows},${lineNumber + shift.lines}`;
  return Buffer.concat([Buffer.from(head, "latin1"), bytes.subarray(second)]);
}
