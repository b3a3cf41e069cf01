// A shard writes its reject report with row and line numbers counted from its own first row;
// the whole file's report has the whole file's numbers. This adds the rows and lines before the
// shard to the first two cells of each report row, leaving every other byte as it was.
//
// It streams: only the two numbers at the head of a row are held, and the rest of the row is
// passed on as it comes, finding the row's end by its quotes. A report line is as long as what
// a whole run writes there (the raw row, the cell, a message quoting the schema), so no line
// length limit of a split run's own may apply.

import { NextByte } from "../csv/nextByte.ts";

const COMMA = 0x2c;
const QUOTE = 0x22;
const LF = 0x0a;
/** The longest a row's two numbers can be with their commas ("9007199254740991," twice). */
const HEAD_LIMIT = 40;

export interface NumberShift {
  rows: number;
  lines: number;
}

/** The report rows of `chunks` (no header), renumbered; line ends are kept as they are. */
export async function* renumberedReport(
  chunks: AsyncIterable<Uint8Array>,
  shift: NumberShift,
): AsyncGenerator<Buffer> {
  const renumber = new Renumbering(shift);
  for await (const chunk of chunks) {
    const out = renumber.push(chunk);
    if (out.length > 0) yield out;
  }
  renumber.end();
}

class Renumbering {
  readonly #shift: NumberShift;
  /** The head of the current row while its two numbers are read; null once they are written. */
  #head: number[] | null = [];
  #inQuotes = false;

  constructor(shift: NumberShift) {
    this.#shift = shift;
  }

  push(chunk: Uint8Array): Buffer {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const next = { quote: new NextByte(bytes, QUOTE), lf: new NextByte(bytes, LF) };
    const out: Buffer[] = [];
    let i = 0;
    while (i < bytes.length) {
      if (this.#head) {
        i = this.#readHead(bytes, i, out);
        continue;
      }
      // The rest of the row: passed through to its end, a line break outside quotes.
      const end = this.#rowEnd(i, next, bytes.length);
      out.push(bytes.subarray(i, end));
      i = end;
      if (bytes[end - 1] === LF && !this.#inQuotes) this.#head = [];
    }
    return Buffer.concat(out);
  }

  end(): void {
    if (this.#head && this.#head.length > 0) throw malformed();
  }

  /** Collects the head's bytes up to its second comma, then writes it renumbered. */
  #readHead(bytes: Buffer, i: number, out: Buffer[]): number {
    const head = this.#head as number[];
    while (i < bytes.length) {
      const b = bytes[i++] as number;
      head.push(b);
      if (head.length > HEAD_LIMIT) throw malformed();
      if (b !== COMMA || head.indexOf(COMMA) === head.length - 1) continue;
      const text = String.fromCharCode(...head);
      const [row, line] = text.slice(0, -1).split(",").map(Number);
      if (!isCount(row) || !isCount(line)) throw malformed();
      out.push(Buffer.from(`${row + this.#shift.rows},${line + this.#shift.lines},`, "latin1"));
      this.#head = null;
      break;
    }
    return i;
  }

  /** Where the row's rest from `i` ends: just past its line break, or the chunk's end. */
  #rowEnd(i: number, next: { quote: NextByte; lf: NextByte }, length: number): number {
    for (;;) {
      const quote = next.quote.from(i);
      if (this.#inQuotes) {
        if (quote === length) return length;
        // A doubled quote closes and opens again: the same as staying inside.
        this.#inQuotes = false;
        i = quote + 1;
        continue;
      }
      const lf = next.lf.from(i);
      if (lf < quote) return lf + 1;
      if (quote === length) return length;
      this.#inQuotes = true;
      i = quote + 1;
    }
  }
}

function isCount(n: number | undefined): n is number {
  return n !== undefined && Number.isSafeInteger(n) && n > 0;
}

function malformed(): Error {
  return new Error("a shard's reject report has a row that does not start with its numbers");
}
