// The CSV framer: finds row boundaries on raw bytes, so every row it yields carries exact byte
// offsets into the source object (what a resume needs) and no UTF-8 character is ever split
// (boundaries are ASCII bytes, and no byte of a multi-byte UTF-8 sequence is below 0x80).
//
// A row ends at LF, CRLF or a lone CR outside quotes. A quote opens a quoted section only at the
// start of a field; inside one, `""` is an escaped quote and any other quote closes it. Line
// numbers count physical lines, including those inside quoted fields.
//
// Each chunk is checked for UTF-8 once (one native call, where a call per row costs more than
// the rest of a row's byte path), and a row that lies in the checked part is known valid.

import { isUtf8 } from "node:buffer";
import { NextByte } from "./nextByte.ts";
import { sequenceLength } from "./utf8.ts";

const LF = 0x0a;
const CR = 0x0d;
const BOM = [0xef, 0xbb, 0xbf];

export interface FramedRow {
  /** The row's bytes without its line terminator (only a head of it when `oversize`). */
  bytes: Uint8Array;
  /** Absolute offset of the row's first byte in the source. */
  start: number;
  /** Absolute offset just past the row's terminator: where the next row starts. */
  end: number;
  /** 1-based physical line on which the row starts. */
  line: number;
  /** Physical line on which the next row starts. */
  nextLine: number;
  /** The row contains a quote character and needs the full field parser. */
  quoted: boolean;
  /** The row is longer than maxRowBytes; only its head was kept. */
  oversize: boolean;
  /** The source ended inside a quoted field. */
  unterminated: boolean;
  /** The bytes are known to be valid UTF-8 (false: not known; check them if it matters). */
  utf8: boolean;
}

export interface FramerOptions {
  delimiter: string;
  quote: string;
  /** Makes the next byte inside quotes literal; absent (or the quote): quotes are doubled. */
  escape?: string | undefined;
  maxRowBytes: number;
  /** Absolute offset of the first byte that will be pushed. */
  startOffset: number;
  /** Physical line number at startOffset. */
  startLine: number;
}

/** Bytes of an oversize row kept for the reject report. */
const OVERSIZE_HEAD = 1024;

export class CsvFramer {
  readonly #delimiter: number;
  readonly #quote: number;
  readonly #escape: number; // -1 when quotes escape themselves by doubling
  readonly #maxRowBytes: number;

  #offset: number; // absolute offset of the next byte to be pushed
  #line: number; // physical line at the scan position
  #rowStart: number;
  #rowLine: number;
  #partial: Uint8Array[] = [];
  #partialBytes = 0;
  #rowBytes = 0;
  #quoted = false;
  #oversize = false;
  #inQuotes = false;
  #quoteInQuotes = false; // a quote inside quotes was the last byte: `""` or a close?
  #escaped = false; // an escape inside quotes was the last byte: the next one is literal
  #crInQuotes = false; // a CR inside quotes was the last byte: a following LF is the same line break
  #crPending = false; // a CR outside quotes was the last byte: the row ended, CR or CRLF?
  #lastByte = -1;
  #bomPending: boolean;
  #bomHead: number[] = [];
  /** The part of the chunk being scanned known to be valid UTF-8: [#utf8From, #utf8To). */
  #utf8From = 0;
  #utf8To = 0;

  constructor(options: FramerOptions) {
    this.#delimiter = options.delimiter.charCodeAt(0);
    this.#quote = options.quote.charCodeAt(0);
    const escapeByte = options.escape?.charCodeAt(0) ?? this.#quote;
    this.#escape = escapeByte === this.#quote ? -1 : escapeByte;
    this.#maxRowBytes = options.maxRowBytes;
    this.#offset = options.startOffset;
    this.#rowStart = options.startOffset;
    this.#line = options.startLine;
    this.#rowLine = options.startLine;
    this.#bomPending = options.startOffset === 0;
  }

  /** The offset of the next byte to be pushed: every byte so far, a BOM's too, is framed. */
  get offset(): number {
    return this.#offset;
  }

  push(chunk: Uint8Array): FramedRow[] {
    const rows: FramedRow[] = [];
    if (this.#bomPending) {
      chunk = this.#consumeBom(chunk, false);
      if (this.#bomPending) return rows;
    }
    this.#scan(chunk, rows);
    return rows;
  }

  end(): FramedRow[] {
    const rows: FramedRow[] = [];
    if (this.#bomPending) this.#scan(this.#consumeBom(new Uint8Array(0), true), rows);
    if (this.#inQuotes && this.#quoteInQuotes) {
      // A quote as the very last byte closes the field.
      this.#inQuotes = false;
      this.#quoteInQuotes = false;
    }
    if (this.#crPending) {
      this.#crPending = false;
      this.#emit(rows, null, 0, this.#offset - 1, this.#offset, false);
    } else if (this.#partialBytes > 0 || this.#rowBytes > 0 || this.#inQuotes) {
      this.#emit(rows, null, 0, this.#offset, this.#offset, this.#inQuotes);
    }
    return rows;
  }

  /** Holds back the first bytes of the source until it is known whether they are a BOM. */
  #consumeBom(chunk: Uint8Array, atEnd: boolean): Uint8Array {
    const head = this.#bomHead;
    let used = 0;
    while (head.length < 3 && used < chunk.length) {
      head.push(chunk[used] as number);
      used++;
    }
    const isPrefix = head.every((b, i) => b === BOM[i]);
    if (head.length < 3 && isPrefix && !atEnd) return new Uint8Array(0);
    this.#bomPending = false;
    const rest = chunk.subarray(used);
    if (head.length === 3 && isPrefix) {
      this.#offset += 3;
      this.#rowStart = 3;
      return rest;
    }
    // Every held byte came from this chunk: it is the row data as it stands.
    if (used === head.length) return chunk;
    const out = new Uint8Array(head.length + rest.length);
    out.set(head, 0);
    out.set(rest, head.length);
    return out;
  }

  #scan(chunk: Uint8Array, rows: FramedRow[]): void {
    const n = chunk.length;
    if (n === 0) return;
    this.#checkUtf8(chunk);
    const base = this.#offset;
    const quote = this.#quote;
    let i = 0; // scan position in chunk
    let segStart = 0; // where the current row's bytes begin in this chunk
    const next: NextBytes = {
      quote: new NextByte(chunk, quote),
      escape: new NextByte(chunk, this.#escape),
      lf: new NextByte(chunk, LF),
      cr: new NextByte(chunk, CR),
    };

    while (i < n) {
      if (this.#crPending) {
        this.#crPending = false;
        const crlf = chunk[i] === LF;
        // The CR was the byte just before i (in this chunk or the previous one).
        const contentEnd = base + i - 1;
        const end = crlf ? base + i + 1 : base + i;
        this.#emit(rows, chunk, segStart, contentEnd, end, false);
        if (crlf) i++;
        segStart = i;
        continue;
      }
      if (this.#inQuotes) {
        if (!this.#quoteInQuotes && !this.#escaped) {
          i = this.#skipQuotedText(chunk, i, next);
          if (i === n) break;
        }
        if (this.#quotedByte(chunk[i] as number)) i++;
        continue;
      }
      // Unquoted: jump to the next byte that matters.
      const stop = Math.min(next.quote.from(i), next.lf.from(i), next.cr.from(i));
      if (stop === n) {
        i = n;
        break;
      }
      const b = chunk[stop] as number;
      if (b === quote) {
        this.#quoted = true;
        const prev = stop > 0 ? (chunk[stop - 1] as number) : this.#lastByte;
        const atRowStart = base + stop === this.#rowStart;
        if (atRowStart || prev === this.#delimiter) {
          this.#inQuotes = true;
          this.#crInQuotes = false;
        }
        i = stop + 1;
      } else if (b === LF) {
        this.#emit(rows, chunk, segStart, base + stop, base + stop + 1, false);
        i = stop + 1;
        segStart = i;
      } else {
        // CR: the row ends here; whether the terminator is CR or CRLF depends on the next byte.
        this.#crPending = true;
        i = stop + 1;
      }
    }
    // Keep the unfinished row's bytes for the next chunk.
    if (segStart < n) {
      const keep = this.#crPending ? n - 1 : n; // a pending CR is not content
      if (keep > segStart) this.#append(chunk.subarray(segStart, keep));
    }
    this.#lastByte = chunk[n - 1] as number;
    this.#offset = base + n;
  }

  /**
   * The chunk's bytes from its first character start to the end of its last whole character,
   * if they are valid UTF-8 (the characters a chunk boundary cuts belong to rows that are
   * copied whole, and checked one by one).
   */
  #checkUtf8(chunk: Uint8Array): void {
    const n = chunk.length;
    let from = 0;
    while (from < n && from < 3 && ((chunk[from] as number) & 0xc0) === 0x80) from++;
    let to = n;
    let lead = n - 1;
    while (lead > from && lead > n - 4 && ((chunk[lead] as number) & 0xc0) === 0x80) lead--;
    const b = chunk[lead] as number;
    if (b >= 0xc0 && n - lead < sequenceLength(b)) to = lead;
    const valid = from < to && isUtf8(chunk.subarray(from, to));
    this.#utf8From = valid ? from : 0;
    this.#utf8To = valid ? to : 0;
  }

  /**
   * Quoted text from `i` up to the next quote or escape (or the chunk's end), which is returned:
   * its line breaks counted as #quotedByte would count them (CR, LF and CRLF each end one line).
   */
  #skipQuotedText(chunk: Uint8Array, i: number, next: NextBytes): number {
    const stop = Math.min(next.quote.from(i), next.escape.from(i));
    if (stop === i) return i;
    for (let cr = next.cr.from(i); cr < stop; cr = next.cr.from(cr + 1)) this.#line++;
    for (let lf = next.lf.from(i); lf < stop; lf = next.lf.from(lf + 1)) {
      const afterCr = lf > i ? chunk[lf - 1] === CR : this.#crInQuotes;
      if (!afterCr) this.#line++;
    }
    this.#crInQuotes = chunk[stop - 1] === CR;
    return stop;
  }

  /**
   * One byte inside a quoted field: counts the lines it holds and finds where the field closes.
   * False when the byte is to be read again, unquoted (the quote before it closed the field).
   */
  #quotedByte(b: number): boolean {
    const quote = this.#quote;
    if (this.#quoteInQuotes) {
      this.#quoteInQuotes = false;
      if (b === quote) return true; // an escaped quote
      this.#inQuotes = false;
      return false;
    }
    if (this.#escaped) this.#escaped = false;
    else if (b === this.#escape || b === quote) {
      if (b === quote) this.#quoteInQuotes = true;
      else this.#escaped = true;
      this.#crInQuotes = false;
      return true;
    }
    if (b === LF) {
      if (!this.#crInQuotes) this.#line++;
    } else if (b === CR) this.#line++;
    this.#crInQuotes = b === CR;
    return true;
  }

  #append(bytes: Uint8Array): void {
    this.#rowBytes += bytes.length;
    if (this.#rowBytes > this.#maxRowBytes) this.#oversize = true;
    const room = (this.#oversize ? OVERSIZE_HEAD : this.#maxRowBytes) - this.#partialBytes;
    if (room <= 0) return;
    const kept = bytes.length > room ? bytes.subarray(0, room) : bytes;
    // Copy: the chunk's memory belongs to the reader and may be reused.
    this.#partial.push(Uint8Array.prototype.slice.call(kept));
    this.#partialBytes += kept.length;
  }

  #emit(
    rows: FramedRow[],
    chunk: Uint8Array | null,
    segStart: number,
    contentEnd: number,
    end: number,
    unterminated: boolean,
  ): void {
    const base = this.#offset;
    const segEnd = chunk ? Math.max(segStart, contentEnd - base) : segStart;
    let bytes: Uint8Array;
    let utf8 = false;
    if (this.#partialBytes === 0 && !this.#oversize && chunk) {
      bytes = chunk.subarray(segStart, segEnd);
      if (bytes.length > this.#maxRowBytes) {
        this.#oversize = true;
        bytes = Uint8Array.prototype.slice.call(bytes.subarray(0, OVERSIZE_HEAD));
      } else utf8 = segStart >= this.#utf8From && segEnd <= this.#utf8To;
    } else {
      if (chunk && segEnd > segStart) this.#append(chunk.subarray(segStart, segEnd));
      // A CR that ended the previous chunk was kept out of the partial row already.
      bytes = concat(this.#partial, this.#partialBytes);
    }
    const hasTerminator = end > contentEnd;
    const nextLine = hasTerminator ? this.#line + 1 : this.#line;
    rows.push({
      bytes,
      start: this.#rowStart,
      end,
      line: this.#rowLine,
      nextLine,
      quoted: this.#quoted,
      oversize: this.#oversize,
      unterminated,
      utf8,
    });
    this.#line = nextLine;
    this.#rowStart = end;
    this.#rowLine = nextLine;
    this.#partial = [];
    this.#partialBytes = 0;
    this.#rowBytes = 0;
    this.#quoted = false;
    this.#oversize = false;
  }
}

interface NextBytes {
  quote: NextByte;
  escape: NextByte;
  lf: NextByte;
  cr: NextByte;
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
