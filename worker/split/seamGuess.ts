import { CsvFramer, type FramedRow } from "../csv/csvFramer.ts";
import { asBuffer } from "../csv/rowDecoder.ts";
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
  /** The rows after it, in order: where each ends and how it read (comments do not vote). */
  rows: Array<{ end: number; vote: "good" | "formed" | "bad" | "comment" }>;
  /**
   * The row the offset falls in, as this reading frames it, is longer than maxRowBytes: a
   * row a whole run would reject. Likely the reading is wrong (the inside of a quoted field
   * that never closes, in a file with no quotes at all).
   */
  oversize: boolean;
}

/** Rows a reading keeps, comments included: enough to vote, and bounded whatever the rows. */
const ROWS_KEPT = 4 * VOTERS;

class Reading {
  readonly tally: Tally = { start: undefined, rows: [], oversize: false };
  readonly #framer: CsvFramer;
  readonly #parser: RowParser;
  readonly #dialect: SeamDialect;
  readonly #comment: number;
  #pushed = 0;
  #voters = 0;

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
    return this.#voters >= VOTERS || this.tally.rows.length >= ROWS_KEPT || this.tally.oversize;
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
      tally.rows.push({ end: row.end, vote: this.#vote(row) });
    }
  }

  #vote(row: FramedRow): Tally["rows"][number]["vote"] {
    if (row.bytes[0] === this.#comment) return "comment";
    this.#voters++;
    if (row.oversize || row.unterminated) return "bad";
    // Only the field count matters: latin1 text keeps one unit per byte, whatever the encoding.
    const text = asBuffer(row.bytes).toString("latin1");
    const parsed = this.#parser.parseRow(row.bytes, text, row.quoted);
    if (!parsed.ok) return "bad";
    return parsed.fields.length === this.#dialect.columns ? "good" : "formed";
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
    // Outside wins ties: once all its voters are good, nothing inside can beat it.
    if (outside.done && !outside.tally.oversize && allGood(outside.tally)) return true;
    // Inside, all good, beats an outside reading that has a bad voter already.
    const i = inside.tally;
    return inside.done && !i.oversize && allGood(i) && !allGood(outside.tally);
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
    if (outside.start === undefined || outside.start === inside.start) return outside.start;
    return (
      converged(outside, inside) ??
      (above(rank(inside), rank(outside)) ? inside.start : outside.start)
    );
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

/** The votes of `rows` (comments leave them out). */
function votes(rows: Tally["rows"]) {
  const voting = rows.filter((r) => r.vote !== "comment");
  const good = voting.filter((r) => r.vote === "good").length;
  const formed = good + voting.filter((r) => r.vote === "formed").length;
  return { voters: voting.length, good, formed };
}

function allGood(t: Tally): boolean {
  const { voters, good } = votes(t.rows);
  return good === voters;
}

/** A clear majority of well-formed rows of the file's width. */
function accepted({ voters, good }: { voters: number; good: number }): boolean {
  return voters > 0 && good * 4 >= voters * 3;
}

/**
 * When the later reading's first boundary is a row boundary of the earlier one too, the two
 * read the same rows from there on: their voters there say nothing. The rows only the earlier
 * reading has decide: rows of the file's width make it right (its start is the first row
 * boundary); rows that are not say the later one is. Undefined when they never met.
 */
function converged(a: Tally, b: Tally): number | undefined {
  const [early, late] = (a.start as number) < (b.start as number) ? [a, b] : [b, a];
  const meet = late.start as number;
  const at = early.rows.findIndex((r) => r.end === meet);
  if (at < 0) return undefined;
  // Often a few rows only: half of them of the file's width is enough (a blank line among
  // three rows is no reason to think them the inside of a quoted field).
  const between = votes(early.rows.slice(0, at + 1));
  return between.good * 2 >= between.voters ? early.start : late.start;
}

/**
 * How well a reading's rows read, most telling first, for comparing two: a reading whose first
 * row is not oversize; whose voters are three quarters good; the larger share of good voters;
 * then of well-formed ones (ragged rows: no reading has the file's number of fields, but only
 * the right one parses cleanly).
 */
function rank(t: Tally): number[] {
  const v = votes(t.rows);
  const share = (n: number) => (v.voters === 0 ? 0 : n / v.voters);
  return [t.oversize ? 0 : 1, accepted(v) ? 1 : 0, share(v.good), share(v.formed)];
}

/** Whether rank `a` is above rank `b` (equal ranks: no). */
function above(a: number[], b: number[]): boolean {
  for (const [i, x] of a.entries()) {
    const y = b[i] as number;
    if (x !== y) return x > y;
  }
  return false;
}
