// Where each field of one framed row lies in its bytes: the row's structural index. It is the
// one definition of how a row splits into fields, for the byte row path (which judges cells in
// place) and the string parser (which decodes the same ranges). The delimiter, quote and escape
// are ASCII (JobOptions says so), so no byte of a multi-byte UTF-8 character is ever taken for
// one, and a field's range always holds whole characters.
//
// Quoting is regular when a quoted field starts at a field start, escapes its inner quotes
// (doubled, or behind the escape character) and is followed by a delimiter or the row's end; a
// quote anywhere else makes the row irregular, and the string parser hands it to papaparse.

/** Fields whose index arrays are kept whatever the rows that follow. */
const RETAINED = 4096;

/** Bytes of quoted text scanned by hand before a native search takes over. */
const SHORT_QUOTED = 24;

/** The field was quoted: its range is what lies between the quotes. */
export const QUOTED = 1;
/** The quoted field holds escapes: its range is not yet its value (see `unescapeField`). */
const ESCAPED = 2;

export class FieldIndex {
  readonly #quoteChar: string;
  readonly #escapeChar: string | undefined;
  readonly #delimiter: number;
  readonly #quote: number;
  /** -1 when quotes are escaped by doubling. */
  readonly #escape: number;
  /** Start and end (exclusive) of field i's value, or of its quoted text. */
  starts: Int32Array;
  ends: Int32Array;
  flags: Uint8Array;
  /** Fields in the last row indexed. */
  count = 0;

  constructor(dialect: { delimiter: string; quote: string; escape?: string | undefined }) {
    this.#quoteChar = dialect.quote;
    this.#escapeChar = dialect.escape;
    this.#delimiter = dialect.delimiter.charCodeAt(0);
    this.#quote = dialect.quote.charCodeAt(0);
    const escapeByte = dialect.escape?.charCodeAt(0) ?? this.#quote;
    this.#escape = escapeByte === this.#quote ? -1 : escapeByte;
    this.starts = new Int32Array(16);
    this.ends = new Int32Array(16);
    this.flags = new Uint8Array(16);
  }

  /**
   * Indexes `row` (its bytes without the line terminator). False when its quoting is irregular;
   * `quoted` false (the framer saw no quote character) skips looking for quotes.
   */
  index(row: Uint8Array, quoted: boolean): boolean {
    const n = row.length;
    const delimiter = this.#delimiter;
    // A row of very many fields (up to maxRowBytes of delimiters) leaves the arrays that large:
    // let them go once rows are back to a quarter of it.
    if (this.count * 4 < this.starts.length) this.trim();
    this.count = 0;
    if (!quoted) {
      let start = 0;
      for (let i = 0; i < n; i++) {
        if (row[i] === delimiter) {
          this.#push(start, i, 0);
          start = i + 1;
        }
      }
      this.#push(start, n, 0);
      return true;
    }
    const quote = this.#quote;
    const escapeByte = this.#escape;
    let i = 0;
    for (;;) {
      if (i < n && row[i] === quote) {
        const start = i + 1;
        let flags = QUOTED;
        let j = start;
        if (escapeByte === -1) {
          // Quoted text runs to the next quote: its first bytes by hand (most quoted cells are
          // short, and a native search's call costs more than they do), the rest natively.
          for (;;) {
            const byHand = Math.min(n, j + SHORT_QUOTED);
            while (j < byHand && row[j] !== quote) j++;
            if (j === byHand) {
              if (byHand === n) return false; // not closed within the row
              j = row.indexOf(quote, byHand);
              if (j === -1) return false;
            }
            if (j + 1 < n && row[j + 1] === quote) {
              flags = QUOTED | ESCAPED;
              j += 2;
            } else break;
          }
        } else {
          // An escape makes the next byte literal, whatever it is.
          for (;;) {
            if (j >= n) return false; // not closed within the row
            const b = row[j] as number;
            if (b === escapeByte) {
              if (j + 1 >= n) return false;
              flags = QUOTED | ESCAPED;
              j += 2;
            } else if (b === quote) break;
            else j++;
          }
        }
        this.#push(start, j, flags);
        i = j + 1;
        if (i === n) return true;
        if (row[i] !== delimiter) return false;
        i++;
      } else {
        let j = i;
        while (j < n && row[j] !== delimiter) {
          if (row[j] === quote) return false;
          j++;
        }
        this.#push(i, j, 0);
        if (j === n) return true;
        i = j + 1;
      }
    }
  }

  /**
   * Lets go of arrays grown past RETAINED fields (the row last indexed is then forgotten): for
   * a user that may not index another row for a long time.
   */
  trim(): void {
    if (this.starts.length > RETAINED) {
      this.#allocate(16);
      this.count = 0;
    }
  }

  /** Field i's value: its UTF-8 bytes in `row` (the row last indexed) decoded, unescaped. */
  value(row: Buffer, i: number): string {
    const text = decodeUtf8(row, this.starts[i] as number, this.ends[i] as number);
    return this.escaped(i) ? unescapeField(text, this.#quoteChar, this.#escapeChar) : text;
  }

  escaped(i: number): boolean {
    return ((this.flags[i] as number) & ESCAPED) !== 0;
  }

  #push(start: number, end: number, flags: number): void {
    const at = this.count;
    if (at === this.starts.length) this.#grow();
    this.starts[at] = start;
    this.ends[at] = end;
    this.flags[at] = flags;
    this.count = at + 1;
  }

  #grow(): void {
    const { starts, ends, flags } = this;
    this.#allocate(starts.length * 2);
    this.starts.set(starts);
    this.ends.set(ends);
    this.flags.set(flags);
  }

  #allocate(size: number): void {
    this.starts = new Int32Array(size);
    this.ends = new Int32Array(size);
    this.flags = new Uint8Array(size);
  }
}

/** Below this, an ASCII cell is decoded by hand: a native decode's call costs more. */
const SHORT_CELL = 24;

/** UTF-8 bytes[start, end) as text. */
function decodeUtf8(bytes: Buffer, start: number, end: number): string {
  if (end - start > SHORT_CELL) return bytes.toString("utf8", start, end);
  let text = "";
  for (let i = start; i < end; i++) {
    const b = bytes[i] as number;
    if (b >= 0x80) return bytes.toString("utf8", start, end);
    text += String.fromCharCode(b);
  }
  return text;
}

/**
 * A quoted field's value from its text between the quotes: a doubled quote is one quote, or,
 * with an escape character, the escape makes the next character literal.
 */
export function unescapeField(text: string, quote: string, escapeChar: string | undefined): string {
  if (escapeChar === undefined || escapeChar === quote)
    return text.replaceAll(quote + quote, quote);
  let value = "";
  let from = 0;
  for (let e = text.indexOf(escapeChar); e !== -1; e = text.indexOf(escapeChar, from)) {
    value += text.slice(from, e) + (text[e + 1] ?? "");
    from = e + 2;
  }
  return value + text.slice(from);
}
