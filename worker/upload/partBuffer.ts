import type { PartBudget } from "./partBudget.ts";

// The text of the part being built, encoded into one buffer. Rows arrive as strings (gathered
// into a batch and encoded together: one native call per batch instead of two per row) or as
// bytes already encoded (the byte row path's), and the buffers of uploaded parts come back,
// through the job's PartBudget, to be filled again: a fresh part-sized allocation per part
// costs page faults and leaves external memory for the GC to find late, which is most of a
// worker's RSS above its baseline.

/** Text gathered before it is encoded. */
const BATCH_CHARS = 16 * 1024;
/**
 * A small output starts small and grows fourfold; past GROW_TO_PART it takes a part-sized buffer
 * at once, as outputs that filled a part do. A fresh buffer's pages cost memory only once
 * written, but every copy on the way writes them twice, and a page fault is dear (12-28 us
 * measured on this project's machines): 64 KiB doubling to 8 MiB faulted twice a part's pages.
 */
const FIRST_CAPACITY = 64 * 1024;
const GROW_TO_PART = 1024 * 1024;
/** UTF-8 needs at most 3 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units). */
const MAX_BYTES_PER_UNIT = 3;

/**
 * A part buffer's size for parts of `partSize`: the part, a batch of text encoded past it (a part
 * is cut at the first row boundary at or past its size) and a small buffer's worth more.
 */
export function partBufferCapacity(partSize: number): number {
  return partSize + BATCH_CHARS * MAX_BYTES_PER_UNIT + FIRST_CAPACITY;
}

export class PartBuffer {
  readonly #capacity: number;
  readonly #budget: PartBudget;
  #buffer: Buffer<ArrayBuffer> | undefined;
  #bytes = 0;
  #batch = "";
  #filledOne = false;

  /** Buffers of uploaded parts are kept in, and taken from, `budget` (the job's). */
  constructor(partSize: number, budget: PartBudget) {
    this.#capacity = partBufferCapacity(partSize);
    this.#budget = budget;
  }

  append(text: string): void {
    this.#batch += text;
    if (this.#batch.length >= BATCH_CHARS) this.#encode();
  }

  /** Bytes already UTF-8, then `suffix` if given, copied in (after any text before them). */
  appendBytes(bytes: Uint8Array, suffix?: Uint8Array): void {
    if (this.#batch.length > 0) this.#encode();
    const at = this.#bytes;
    const end = at + bytes.length + (suffix?.length ?? 0);
    this.#reserve(end);
    const buffer = this.#buffer as Buffer;
    buffer.set(bytes, at);
    if (suffix) {
      // A line break is a byte or two: set() costs more than that.
      for (let i = 0, to = at + bytes.length; i < suffix.length; i++)
        buffer[to + i] = suffix[i] as number;
    }
    this.#bytes = end;
  }

  /**
   * Whether the part holds at least `size` bytes. Parts are cut on this: it depends only on the
   * rows since the part's start, so a resumed job (which appends the same rows in other
   * batches, as text or as bytes) cuts its parts where an uninterrupted run does. The batch is
   * encoded only when it could reach `size` (a UTF-16 unit is at most 3 bytes).
   */
  holds(size: number): boolean {
    if (this.#bytes >= size) return true;
    if (this.#bytes + this.#batch.length * MAX_BYTES_PER_UNIT < size) return false;
    this.#encode();
    return this.#bytes >= size;
  }

  /** Every appended byte, the batch encoded first. */
  get bytes(): number {
    this.#encode();
    return this.#bytes;
  }

  get isEmpty(): boolean {
    return this.#bytes === 0 && this.#batch.length === 0;
  }

  /** A copy of the bytes from `from` on (the part's buffer will be reused). */
  copyFrom(from: number): Buffer {
    this.#encode();
    return this.#buffer ? Buffer.from(this.#buffer.subarray(from, this.#bytes)) : Buffer.alloc(0);
  }

  /** Hands over everything buffered as one part's body and starts an empty part. */
  take(): Buffer {
    this.#encode();
    const body = this.#buffer ? this.#buffer.subarray(0, this.#bytes) : Buffer.alloc(0);
    if (this.#bytes >= this.#capacity / 2) this.#filledOne = true;
    this.#buffer = undefined;
    this.#bytes = 0;
    return body;
  }

  /** Gives back a body from take() once nothing reads it any more (its part is uploaded). */
  release(body: Buffer): void {
    // Only a buffer of its own, at least a part buffer's capacity, is kept: a body that is a
    // slice (of Node's pool: a small gzip part's concatenation) is left to the GC.
    const memory = body.buffer;
    if (body.byteOffset !== 0 || !(memory instanceof ArrayBuffer)) return;
    if (memory.byteLength < this.#capacity) return;
    this.#budget.keepSpare(Buffer.from(memory));
  }

  #encode(): void {
    const text = this.#batch;
    if (text.length === 0) return;
    this.#batch = "";
    this.#reserve(this.#bytes + text.length * MAX_BYTES_PER_UNIT);
    this.#bytes += (this.#buffer as Buffer).write(text, this.#bytes, "utf8");
  }

  #reserve(needed: number): void {
    const current = this.#buffer;
    if (current && current.length >= needed) return;
    const length = current?.length ?? 0;
    // A spare is part-sized: only a buffer on its way to a part's size takes one, so that a
    // small reject report never holds a part buffer the output then allocates again.
    const toPart = this.#filledOne || Math.max(length, needed) >= GROW_TO_PART;
    const spare = toPart ? this.#budget.takeSpare(needed) : undefined;
    if (spare) {
      if (current) {
        current.copy(spare, 0, 0, this.#bytes);
        // Freed now, as a grown buffer's is below (nothing else holds a part being built).
        current.buffer.transfer(0);
      }
      this.#buffer = spare;
      return;
    }
    const target = toPart
      ? this.#capacity
      : Math.min(this.#capacity, Math.max(FIRST_CAPACITY, length * 4));
    // Past the usual capacity (a row longer than a batch of text ends the part), double, so
    // a part is copied a few times, not once per batch.
    const size = needed <= target ? target : Math.max(needed, length * 2);
    // A grown buffer is allocated unfilled, so its pages cost a fault only once written (a
    // transfer(size) zero-fills the whole size: a reject report of 6.7 MB faulted a part's 8.5);
    // the bytes are copied over and the buffer outgrown freed now (transfer(0) detaches it): left
    // to the GC, a first part's buffers on the way to a part's size stay allocated until a
    // collection finds them.
    const grown = Buffer.allocUnsafe(size);
    if (current) {
      current.copy(grown, 0, 0, this.#bytes);
      current.buffer.transfer(0);
    }
    this.#buffer = grown;
  }
}
