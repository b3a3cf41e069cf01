import { type FieldIndex, QUOTED } from "./fieldIndex.ts";

// Writes a valid row's output line from its source bytes, for the byte row path: the line
// csvWriter.ts's formatRow would write from the row's cells (RFC 4180: comma-separated, a cell
// quoted only when it holds a comma, a quote or a line break), built by copying byte ranges
// instead of decoding, splitting and encoding. A row with a cell whose bytes are not its output
// (one that needs quoting the source did not give it, another escape character) is left to the
// string writer.

export interface ByteSink {
  /** Copies `bytes`, then `suffix` if given. */
  writeBytes(bytes: Uint8Array, suffix?: Uint8Array): void;
}

/** The composing buffer's size, kept whatever the rows. */
const SCRATCH = 4096;
const COMMA = 0x2c;
const DQUOTE = 0x22;
const CR = 0x0d;
const LF = 0x0a;

export class ByteRowWriter {
  /** Per output column, the field it shows, and the source column that is read from (-1: none). */
  readonly #fields: Int32Array;
  readonly #columns: Int32Array;
  /**
   * The output's columns are the source's, in its order and dialect: a row of that many cells
   * is its own output line wherever no cell changes or sheds quotes it does not need.
   */
  readonly #sourceLayout: boolean;
  readonly #newline: Uint8Array;
  /** The source's dialect is the output's: an unquoted cell never needs quotes. */
  readonly #sameDialect: boolean;
  /** Quoted text with its escapes is the output's quoted text: quotes doubled, `"`. */
  readonly #rfcQuoting: boolean;
  #scratch = new Uint8Array(SCRATCH);

  constructor(
    fieldOfOutput: readonly number[],
    columnOf: readonly number[],
    dialect: { delimiter: string; quote: string; escape?: string | undefined },
    newline: string,
  ) {
    this.#fields = Int32Array.from(fieldOfOutput);
    this.#columns = Int32Array.from(fieldOfOutput, (field) => columnOf[field] as number);
    this.#newline = Buffer.from(newline);
    this.#rfcQuoting = dialect.quote === '"' && (dialect.escape ?? '"') === '"';
    this.#sameDialect = dialect.delimiter === "," && this.#rfcQuoting;
    this.#sourceLayout = this.#sameDialect && this.#columns.every((column, i) => column === i);
  }

  /**
   * Writes the output line of `row` (indexed by `index`), with `changes` (per field, a
   * canonical text that replaces its cell) if any; false, having written nothing, when a cell's
   * bytes or text are not what the string writer would write for it.
   */
  write(
    row: Uint8Array,
    index: FieldIndex,
    quoted: boolean,
    sink: ByteSink,
    changes?: readonly (string | undefined)[],
  ): boolean {
    const columns = this.#columns;
    const asSource = this.#sourceLayout && index.count === columns.length;
    if (asSource && !changes) {
      // The row as it came, when every quote it has is one the output needs.
      if (!quoted || quotesNeeded(row, index)) {
        sink.writeBytes(row, this.#newline);
        // A long composed row's scratch is not kept while rows take this way.
        if (this.#scratch.length > SCRATCH) this.#scratch = new Uint8Array(SCRATCH);
        return true;
      }
    }
    // At most the row, two quotes and a comma per cell, and the changed cells' text.
    let room = row.length + 3 * columns.length;
    if (changes) for (const text of changes) room += text?.length ?? 0;
    // Grown for a long row, shrunk again after it (a long row is not kept for the whole job).
    const size = this.#scratch.length;
    if (size < room) this.#scratch = new Uint8Array(Math.max(room, size * 2));
    else if (size > SCRATCH && room * 4 < size) {
      this.#scratch = new Uint8Array(Math.max(SCRATCH, room * 2));
    }
    const out = this.#scratch;
    const at = asSource
      ? this.#composeRuns(row, index, out, changes)
      : this.#composeCells(row, index, out, changes);
    // A row of one empty cell is the string writer's, which quotes it (formatRow): an empty
    // line is one readers skip.
    if (at === -1 || (at === 0 && columns.length === 1)) return false;
    sink.writeBytes(out.subarray(0, at), this.#newline);
    return true;
  }

  /**
   * The output line, cell by cell, in `out`: its end, or -1 when a cell's bytes or text are
   * not what the string writer would write for it.
   */
  #composeCells(
    row: Uint8Array,
    index: FieldIndex,
    out: Uint8Array,
    changes: readonly (string | undefined)[] | undefined,
  ): number {
    const columns = this.#columns;
    const { starts, ends, flags } = index;
    let at = 0;
    for (let k = 0; k < columns.length; k++) {
      if (k > 0) out[at++] = COMMA;
      const change = changes?.[this.#fields[k] as number];
      if (change !== undefined) {
        at = copyText(change, out, at);
        if (at === -1) return -1;
        continue;
      }
      const column = columns[k] as number;
      if (column === -1) continue;
      let start = starts[column] as number;
      let end = ends[column] as number;
      const flag = flags[column] as number;
      if (flag & QUOTED) {
        // Quoted text is output as it came, quotes included, when its value needs them and the
        // quoting is RFC 4180's; as its value alone when it needs none.
        if (keepsQuotes(row, start, end, flag)) {
          if (!this.#rfcQuoting) return -1;
          start--;
          end++;
        }
      } else if (!this.#sameDialect && needsQuotes(row, start, end)) return -1;
      at = copy(row, start, end, out, at);
    }
    return at;
  }

  /**
   * The output line of a row whose columns are the output's, in the output's dialect: the
   * source's bytes, copied in runs, except where a cell changes (its canonical text) or is
   * quoted without needing it (its value alone). What #composeCells writes, with one copy
   * per run of cells instead of one per cell. The end in `out`, or -1 as copyText says.
   */
  #composeRuns(
    row: Uint8Array,
    index: FieldIndex,
    out: Uint8Array,
    changes: readonly (string | undefined)[] | undefined,
  ): number {
    const { starts, ends, flags, count } = index;
    let at = 0;
    // The source's bytes from here on are not yet in `out`.
    let from = 0;
    for (let k = 0; k < count; k++) {
      const start = starts[k] as number;
      const end = ends[k] as number;
      const flag = flags[k] as number;
      const change = changes?.[this.#fields[k] as number];
      if (change !== undefined) {
        // The whole cell, its quotes too, gives way to the text.
        at = copy(row, from, flag & QUOTED ? start - 1 : start, out, at);
        at = copyText(change, out, at);
        if (at === -1) return -1;
        from = flag & QUOTED ? end + 1 : end;
      } else if (flag & QUOTED && !keepsQuotes(row, start, end, flag)) {
        at = copy(row, from, start - 1, out, at);
        at = copy(row, start, end, out, at);
        from = end + 1;
      }
    }
    return copy(row, from, row.length, out, at);
  }
}

/** Every quoted field of the row holds what RFC 4180 output quotes (doubled quotes among it). */
function quotesNeeded(row: Uint8Array, index: FieldIndex): boolean {
  const { starts, ends, flags, count } = index;
  for (let i = 0; i < count; i++) {
    const flag = flags[i] as number;
    if (flag & QUOTED && !keepsQuotes(row, starts[i] as number, ends[i] as number, flag)) {
      return false;
    }
  }
  return true;
}

/** Whether a quoted cell's output keeps its quotes: its value needs them, or it has escapes. */
function keepsQuotes(row: Uint8Array, start: number, end: number, flag: number): boolean {
  return flag !== QUOTED || needsQuotes(row, start, end);
}

/** A comma, a double quote or a line break: what RFC 4180 output quotes. */
function needsQuotes(row: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const b = row[i];
    if (b === COMMA || b === DQUOTE || b === CR || b === LF) return true;
  }
  return false;
}

/**
 * A canonical value's text (numbers, dates, booleans: ASCII with nothing to quote), or -1 when
 * it has other characters: the string writer then writes the row.
 */
function copyText(text: string, to: Uint8Array, at: number): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80 || c === COMMA || c === DQUOTE || c === CR || c === LF) return -1;
    to[at++] = c;
  }
  return at;
}

function copy(from: Uint8Array, start: number, end: number, to: Uint8Array, at: number): number {
  // Short cells by hand: a typed-array copy costs more than the bytes below this.
  if (end - start < 32) {
    for (let i = start; i < end; i++) to[at++] = from[i] as number;
    return at;
  }
  to.set(from.subarray(start, end), at);
  return at + end - start;
}
