import { CsvFramer } from "../csv/csvFramer.ts";
import { RowParser } from "../csv/rowParser.ts";

// The seam guess: a shard of a split job starts at a byte offset in the middle of the source,
// where it cannot know whether it is inside a quoted field without reading everything before
// it. It guesses: each line start at or after the offset is tried as a row boundary, and the
// first one whose following rows read as rows of the file (parsed without error, with the
// file's number of fields) is taken. A wrong guess is found by the parent, which compares it
// with where the shard before ended, and redoes the shard: it costs time, never a wrong row.

const LF = 0x0a;
const CR = 0x0d;
/** Rows after a candidate boundary that vote on it. */
const VOTERS = 16;
const SLICE = 16 * 1024;

export interface SeamDialect {
  delimiter: string;
  quote: string;
  escape?: string | undefined;
  maxRowBytes: number;
  /** The number of fields a row of this file has. */
  columns: number;
}

export type SeamGuess =
  | { found: true; start: number }
  /**
   * Not decided in the bytes given: read more. `fallback` is the first line start, for when
   * there is no more to read: rows that never read as the file's (ragged rows, long ones) make
   * it the best guess there is, right unless it is inside a quoted field.
   */
  | { found: false; fallback?: number };

/**
 * The first row boundary at or after `nominal` that the rows after it confirm. `bytes` are the
 * source's from `base` (at most `nominal - 1`, so the byte before `nominal` is seen); `atEnd`
 * says they run to the source's end, where a last row needs no terminator.
 */
export function guessRowStart(
  bytes: Uint8Array,
  base: number,
  nominal: number,
  dialect: SeamDialect,
  atEnd: boolean,
): SeamGuess {
  const parser = new RowParser(dialect);
  let fallback: number | undefined;
  const undecided = (): SeamGuess =>
    fallback === undefined ? { found: false } : { found: false, fallback };
  for (let at = Math.max(nominal - base, 0); at <= bytes.length; at++) {
    if (!startsRow(bytes, at, base)) continue;
    fallback ??= base + at;
    if (at === bytes.length) return atEnd ? { found: true, start: base + at } : undecided();
    const outside = tally(bytes.subarray(at), base + at, dialect, parser, atEnd, 0);
    if (outside === "undecided") return undecided();
    // The other reading: the line start is inside a quoted field, which the next lone quote
    // closes; the row it is in then ends at the first boundary after that quote.
    const close = closingQuote(bytes, at, dialect);
    const inside =
      close < 0
        ? undefined
        : tally(bytes.subarray(close + 1), base + close + 1, dialect, parser, atEnd, 1);
    const insideWins =
      inside !== undefined &&
      inside !== "undecided" &&
      accepted(inside) &&
      inside.good * outside.voters > outside.good * inside.voters;
    if (insideWins) return { found: true, start: inside.start };
    if (accepted(outside)) return { found: true, start: base + at };
  }
  return undecided();
}

interface Tally {
  good: number;
  voters: number;
  /** Where the first voting row starts. */
  start: number;
}

/** A clear majority of well-formed rows. */
function accepted(t: Tally): boolean {
  return t.voters > 0 && t.good * 4 >= t.voters * 3;
}

/** The index of the quote that closes a quoted field read from `at` on, or -1. */
function closingQuote(bytes: Uint8Array, at: number, dialect: SeamDialect): number {
  const quote = dialect.quote.charCodeAt(0);
  const escapeByte = dialect.escape?.charCodeAt(0) ?? quote;
  for (let i = at; i < bytes.length; i++) {
    const b = bytes[i];
    if (escapeByte !== quote && b === escapeByte) {
      i++;
      continue;
    }
    if (b !== quote) continue;
    if (escapeByte === quote && bytes[i + 1] === quote) {
      i++;
      continue;
    }
    return i;
  }
  return -1;
}

/** Whether a row may start at index `at`: after LF, or after a CR that no LF follows. */
function startsRow(bytes: Uint8Array, at: number, base: number): boolean {
  if (at === 0) return base === 0;
  const before = bytes[at - 1];
  if (before === LF) return true;
  return before === CR && (at === bytes.length || bytes[at] !== LF);
}

/**
 * Frames the rows from `offset` (the first `skip` are the rest of a row, not voters) and counts
 * those that read as rows of the file.
 */
function tally(
  bytes: Uint8Array,
  offset: number,
  dialect: SeamDialect,
  parser: RowParser,
  atEnd: boolean,
  skip: number,
): Tally | "undecided" {
  const framer = new CsvFramer({ ...dialect, startOffset: offset, startLine: 1 });
  const rows = [];
  const wanted = VOTERS + skip;
  // Framed a slice at a time: a candidate costs the rows that vote on it, not the whole window.
  for (let at = 0; at < bytes.length && rows.length < wanted; at += SLICE) {
    rows.push(...framer.push(bytes.subarray(at, at + SLICE)));
  }
  if (atEnd && rows.length < wanted) rows.push(...framer.end());
  const voters = rows.slice(skip, wanted);
  // Too few rows to judge (the bytes end first): more bytes decide, unless there are no more.
  if (voters.length < 2 && !atEnd) return "undecided";
  const start = voters[0]?.start ?? offset + bytes.length;
  let good = 0;
  for (const row of voters) {
    if (row.oversize || row.unterminated) continue;
    const parsed = parser.parse(Buffer.from(row.bytes).toString("latin1"), row.quoted);
    if (parsed.ok && parsed.fields.length === dialect.columns) good++;
  }
  return { good, voters: voters.length, start };
}
