import { CsvFramer, type FramedRow } from "../csv/csvFramer.ts";
import { RowParser } from "../csv/rowParser.ts";

// The seam guess: a shard of a split job starts at a byte offset in the middle of the source,
// where it cannot know whether it is inside a quoted field without reading everything before
// it. Two readings of the bytes from that offset run side by side, in one pass: one takes the
// offset to be outside quotes, the other inside a quoted field. Each reading's first row
// boundary is a candidate, and the rows after it vote on it (parsed without error, with the
// file's number of fields). A wrong guess is found by the parent, which compares it with where
// the shard before ended, and redoes the shard: it costs time, never a wrong row.
//
// Every byte goes through each reading's framer once, and each reading parses at most
// VOTERS + 1 rows, so a guess costs time linear in the bytes it reads and holds at most a row
// (maxRowBytes) per reading, whatever the bytes are: ragged rows, no quotes, only quotes.

const LF = 0x0a;
const CR = 0x0d;
/** Rows after a candidate boundary that vote on it. */
export const VOTERS = 16;

export interface SeamDialect {
  delimiter: string;
  quote: string;
  escape?: string | undefined;
  commentChar?: string | undefined;
  maxRowBytes: number;
  /** The number of fields a row of this file has. */
  columns: number;
}

/** One reading's tally: its first row boundary and how the rows after it read. */
interface Tally {
  /** The first row boundary after the offset, once found. */
  start: number | undefined;
  voters: number;
  /** Voters that read as rows of the file: well formed, with the file's number of fields. */
  good: number;
  /** Voters that parse without a quoting error, whatever their number of fields. */
  formed: number;
  /**
   * The row the offset falls in, as this reading frames it, is longer than maxRowBytes: a
   * row a whole run would reject. Likely the reading is wrong (the inside of a quoted field
   * that never closes, in a file with no quotes at all).
   */
  oversize: boolean;
}

class Reading {
  readonly tally: Tally = { start: undefined, voters: 0, good: 0, formed: 0, oversize: false };
  readonly #framer: CsvFramer;
  readonly #parser: RowParser;
  readonly #dialect: SeamDialect;
  readonly #comment: number;
  #pushed = 0;

  /** `first` stands for the byte before the offset: it sets the state the reading starts in. */
  constructor(offset: number, first: number, dialect: SeamDialect, parser: RowParser) {
    this.#dialect = dialect;
    this.#parser = parser;
    this.#comment = dialect.commentChar?.charCodeAt(0) ?? -1;
    this.#framer = new CsvFramer({ ...dialect, startOffset: offset - 1, startLine: 1 });
    this.#count(this.#framer.push(Uint8Array.of(first)));
  }

  /** No more bytes change this reading's tally. */
  get done(): boolean {
    return this.tally.voters >= VOTERS || this.tally.oversize;
  }

  push(bytes: Uint8Array): void {
    if (this.done) return;
    this.#count(this.#framer.push(bytes));
    // Until the first row ends, every byte pushed is in it: past maxRowBytes, it is oversize
    // (the framer would say so only where it ends, which may be nowhere near).
    this.#pushed += bytes.length;
    if (this.tally.start === undefined && this.#pushed > this.#dialect.maxRowBytes) {
      this.tally.oversize = true;
    }
  }

  end(): void {
    if (!this.done) this.#count(this.#framer.end());
  }

  #count(rows: FramedRow[]): void {
    const tally = this.tally;
    for (const row of rows) {
      if (tally.start === undefined) {
        // The rest of the row the offset falls in: where it ends is this reading's candidate.
        tally.start = row.end;
        tally.oversize = row.oversize;
        continue;
      }
      if (this.done) return;
      if (row.bytes[0] === this.#comment) continue;
      tally.voters++;
      if (row.oversize || row.unterminated) continue;
      const parsed = this.#parser.parse(Buffer.from(row.bytes).toString("latin1"), row.quoted);
      if (!parsed.ok) continue;
      tally.formed++;
      if (parsed.fields.length === this.#dialect.columns) tally.good++;
    }
  }
}

/**
 * The guess for the first row boundary at or after `offset`. Push the source's bytes from
 * `offset - 1` on (the byte before the offset says whether a row starts exactly there) until
 * `push` answers true, or the bytes run out; then `start` says where the shard's rows start.
 */
export class SeamGuess {
  readonly #offset: number;
  readonly #dialect: SeamDialect;
  #outside: Reading | undefined;
  #inside: Reading | undefined;
  /** Bytes pushed, the one before the offset included: what the guess cost. */
  examined = 0;

  constructor(offset: number, dialect: SeamDialect) {
    if (offset < 1) throw new Error("a seam guess starts after the source's first byte");
    this.#offset = offset;
    this.#dialect = dialect;
  }

  /** Feeds the next bytes; true once more bytes would not change the guess. */
  push(chunk: Uint8Array): boolean {
    if (chunk.length === 0) return this.decided;
    this.examined += chunk.length;
    let bytes = chunk;
    if (!this.#outside || !this.#inside) {
      this.#begin(chunk[0] as number);
      bytes = chunk.subarray(1);
    }
    this.#outside?.push(bytes);
    this.#inside?.push(bytes);
    return this.decided;
  }

  /** Whether the guess is final: more bytes cannot change which reading wins. */
  get decided(): boolean {
    const outside = this.#outside;
    const inside = this.#inside;
    if (!outside || !inside) return false;
    if (outside.done && inside.done) return true;
    const o = outside.tally;
    // Outside wins ties: once all its voters are good, nothing inside can beat it.
    if (outside.done && !o.oversize && o.good === o.voters) return true;
    // Inside, all good, beats an outside reading that has a bad voter already.
    const i = inside.tally;
    return inside.done && !i.oversize && i.good === i.voters && o.good < o.voters;
  }

  /**
   * Where the shard's rows start, from the bytes pushed (`atEnd`: they ran to the source's
   * end, where a last row needs no terminator), or undefined when neither reading found a row
   * boundary in them.
   */
  start(atEnd: boolean): number | undefined {
    if (atEnd) {
      this.#outside?.end();
      this.#inside?.end();
    }
    const outside = this.#outside?.tally;
    const inside = this.#inside?.tally;
    if (!outside || !inside) return undefined;
    if (inside.start === undefined) return outside.start;
    if (outside.start === undefined) return inside.start;
    return above(rank(inside), rank(outside)) ? inside.start : outside.start;
  }

  /** The two readings, set up from the byte before the offset. */
  #begin(before: number): void {
    const { quote, delimiter, escape: escapeChar } = this.#dialect;
    const q = quote.charCodeAt(0);
    const special = [q, delimiter.charCodeAt(0), escapeChar?.charCodeAt(0), LF, CR];
    // Outside quotes: a line break or a delimiter before the offset is kept (a row or a field
    // starts at the offset); any other byte stands for the middle of an unquoted field.
    const keep = before === LF || before === CR || before === delimiter.charCodeAt(0);
    const neutral = [0x61, 0x62, 0x63].find((b) => !special.includes(b)) as number;
    const parser = new RowParser(this.#dialect);
    this.#outside = new Reading(this.#offset, keep ? before : neutral, this.#dialect, parser);
    // Inside a quoted field: as if a quote had opened one just before the offset.
    this.#inside = new Reading(this.#offset, q, this.#dialect, parser);
  }
}

/**
 * How well a reading's rows read, most telling first, for comparing two: a reading whose first
 * row is not oversize; whose voters are three quarters good; the larger share of good voters;
 * then of well-formed ones (ragged rows: no reading has the file's number of fields, but only
 * the right one parses cleanly).
 */
function rank(t: Tally): number[] {
  const share = (n: number) => (t.voters === 0 ? 0 : n / t.voters);
  const accepted = t.voters > 0 && t.good * 4 >= t.voters * 3;
  return [t.oversize ? 0 : 1, accepted ? 1 : 0, share(t.good), share(t.formed)];
}

/** Whether rank `a` is above rank `b` (equal ranks: no). */
function above(a: number[], b: number[]): boolean {
  for (const [i, x] of a.entries()) {
    const y = b[i] as number;
    if (x !== y) return x > y;
  }
  return false;
}
