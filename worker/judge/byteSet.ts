// A set of byte strings that a cell's bytes are looked up in, in place: enum values, boolean
// words, missing values. A lookup costs the cell's length, whatever the number of values (a
// schema may list thousands), and builds no string for a cell no value is as long as.

/** Up to this many values, comparing with each is cheaper than building a key. */
const FEW = 8;

export class ByteSet {
  /** The values' UTF-8, when they are FEW or fewer. */
  readonly #values: readonly Uint8Array[] | undefined;
  /** Past FEW values: each value's UTF-8 bytes as a latin1 string (one char per byte). */
  readonly #keys: Set<string> | undefined;
  /** Per byte length up to the longest value's, 1 when a value is that long. */
  readonly #lengths: Uint8Array;
  readonly size: number;
  /** The longest value's length in bytes (0 when there is none). */
  readonly maxLength: number;

  constructor(values: Iterable<string>) {
    // A value with a lone surrogate equals no decoded cell, yet its UTF-8 (U+FFFD's bytes) would.
    const possible = [...new Set(values)].filter((v) => v.isWellFormed());
    this.size = possible.length;
    const lengths = possible.map((v) => Buffer.byteLength(v, "utf8"));
    this.maxLength = lengths.reduce((longest, length) => Math.max(longest, length), 0);
    this.#lengths = new Uint8Array(this.maxLength + 1);
    for (const length of lengths) this.#lengths[length] = 1;
    if (possible.length > FEW) {
      this.#keys = new Set(possible.map((v) => Buffer.from(v, "utf8").toString("latin1")));
    } else this.#values = possible.map((v) => Buffer.from(v, "utf8"));
  }

  has(bytes: Uint8Array, start: number, end: number): boolean {
    const length = end - start;
    if (length > this.maxLength || this.#lengths[length] === 0) return false;
    if (this.#keys) {
      let key = "";
      for (let i = start; i < end; i++) key += String.fromCharCode(bytes[i] as number);
      return this.#keys.has(key);
    }
    for (const value of this.#values as readonly Uint8Array[]) {
      if (value.length === length && matchesAt(bytes, start, value)) return true;
    }
    return false;
  }
}

/** Whether `word` lies in `bytes` at `at`. */
export function matchesAt(bytes: Uint8Array, at: number, word: Uint8Array): boolean {
  for (let i = 0; i < word.length; i++) if (bytes[at + i] !== word[i]) return false;
  return true;
}
