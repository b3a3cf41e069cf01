// A worker's idle part buffers, between its jobs. A job's part buffers are its largest memory and
// the costliest to get: a fresh 8 MiB buffer faults in 2,048 pages as it is first written, at
// 12-28 us each on this project's machines (about 0.1 CPU s for the four buffers of a job). Each
// job's PartBudget still owns the buffers it uses, and gives back here only those it is done
// with, once its attempt has ended; the next job takes them as spares. A buffer holds nothing
// of the job before it that a part could show: a part is the bytes written since the buffer was
// taken, and nothing reads past them. Kept buffers are freed at once after `idleMs` without a
// job taking one, so an idle worker does not hold a job's part memory.

export class PartPool {
  readonly #limit: number;
  readonly #idleMs: number;
  readonly #buffers: Buffer<ArrayBuffer>[] = [];
  #timer: NodeJS.Timeout | undefined;

  /** Keeps at most `limit` buffers, for `idleMs` after the last one given back. */
  constructor(limit: number, idleMs: number) {
    this.#limit = limit;
    this.#idleMs = idleMs;
  }

  /** Buffers kept now. */
  get size(): number {
    return this.#buffers.length;
  }

  /** A kept buffer of at least `bytes`, if there is one; the caller owns it from now on. */
  take(bytes: number): Buffer<ArrayBuffer> | undefined {
    for (let i = this.#buffers.length - 1; i >= 0; i--) {
      const buffer = this.#buffers[i] as Buffer<ArrayBuffer>;
      if (buffer.length < bytes) continue;
      this.#buffers.splice(i, 1);
      return buffer;
    }
    return undefined;
  }

  /** Keeps buffers an ended attempt no longer uses, up to the limit; the rest are freed. */
  give(buffers: Iterable<Buffer<ArrayBuffer>>): void {
    for (const buffer of buffers) {
      if (this.#buffers.length < this.#limit) this.#buffers.push(buffer);
      else free(buffer);
    }
    clearTimeout(this.#timer);
    if (this.#buffers.length === 0) return;
    this.#timer = setTimeout(() => this.clear(), this.#idleMs);
    // An idle worker's pending free must not keep its process alive.
    this.#timer.unref();
  }

  /** Frees every kept buffer now. */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const buffer of this.#buffers.splice(0)) free(buffer);
  }
}

/**
 * Gives a buffer's memory back now: left to the garbage collector, external memory waits for a
 * full collection, which an idle worker may not run for minutes.
 */
function free(buffer: Buffer<ArrayBuffer>): void {
  buffer.buffer.transfer(0);
}
