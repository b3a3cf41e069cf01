// An output's carried text: what it wrote since its last durable part, kept in Redis so that a
// checkpoint can move the output's resume mark up to the live position. Each attempt writes
// keys of its own, one per durable part count, and grows the current one by what it lacks; a
// key is dropped once no saved checkpoint names it.

/** The buffered output for the checkpoint to carry: `delta` is what the key does not hold yet. */
export interface CarrySnapshot {
  key: string;
  delta: Buffer;
  bytes: number;
  parts: number;
}

export class CarriedText {
  readonly #keyFor: (parts: number) => string;
  /** Keys this attempt restored or wrote. */
  readonly #keys = new Set<string>();
  /** The key snapshots grow now, and how much of it is stored. */
  #current: string | undefined;
  #stored = 0;

  constructor(keyFor: (parts: number) => string) {
    this.#keyFor = keyFor;
  }

  /**
   * Takes on a key restored from a checkpoint (this attempt answers for deleting it too);
   * false when it already holds it.
   */
  takeRestored(key: string): boolean {
    if (this.#keys.has(key)) return false;
    this.#keys.add(key);
    return true;
  }

  /** A snapshot of `text` (the output after `parts` durable parts). */
  snapshot(parts: number, text: { bytes: number; copy(from: number): Buffer }): CarrySnapshot {
    const key = this.#keyFor(parts);
    if (key !== this.#current) {
      this.#current = key;
      this.#stored = 0;
      this.#keys.add(key);
    }
    const bytes = text.bytes;
    return { key, delta: text.copy(Math.min(this.#stored, bytes)), bytes, parts };
  }

  /** Records that a snapshot's delta is stored. */
  stored(snapshot: CarrySnapshot): void {
    if (snapshot.key === this.#current) this.#stored = Math.max(this.#stored, snapshot.bytes);
  }

  /** Keys no checkpoint can need any more: all but `kept` (none kept: all). */
  retire(kept: string | undefined): string[] {
    const retired = [...this.#keys].filter((key) => key !== kept);
    for (const key of retired) this.#keys.delete(key);
    if (this.#current !== undefined && retired.includes(this.#current)) {
      this.#current = undefined;
      this.#stored = 0;
    }
    return retired;
  }
}
