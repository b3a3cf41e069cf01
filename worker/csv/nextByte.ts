// Forward-only byte search over one chunk, shared by every scanner that frames rows on bytes.

/**
 * Where a byte next occurs in a chunk, from a position that only moves forward: one native
 * search per occurrence, never a rescan. The chunk's length when there is none (or the byte is
 * -1, no byte at all).
 */
export class NextByte {
  readonly #chunk: Uint8Array;
  readonly #byte: number;
  #at: number;

  constructor(chunk: Uint8Array, byte: number) {
    this.#chunk = chunk;
    this.#byte = byte;
    this.#at = byte === -1 ? chunk.length : this.#search(0);
  }

  from(position: number): number {
    if (this.#at < position) this.#at = this.#search(position);
    return this.#at;
  }

  #search(position: number): number {
    const at = this.#chunk.indexOf(this.#byte, position);
    return at === -1 ? this.#chunk.length : at;
  }
}
