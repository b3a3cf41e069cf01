// A job attempt's part memory, shared by its two outputs (the output and the reject report):
// at most `slots` parts upload at once across both, and the buffer of an uploaded part waits
// here until either output fills it again. With a window and spare buffers of its own, each
// output held up to PARTS_IN_FLIGHT + 1 part buffers, twice that a job; shared, a job with plain
// output holds at most PARTS_IN_FLIGHT + 2 (one filling per output, the rest uploading; gzip
// output adds a part body built from its members). The reject report fills slowly and rarely
// holds a slot the output could use; when its parts are slow, the output waits for them.
// Buffers come from the worker's PartPool when the job has no spare, and go back to it when the
// attempt ends (close()).

import type { PartPool } from "./partPool.ts";

export class PartBudget {
  readonly #slots: number;
  readonly #pool: PartPool | undefined;
  #busy = 0;
  /** Uploads waiting for a slot: at most one, since one row loop drives both outputs. */
  readonly #waiting: (() => void)[] = [];
  readonly #spares: Buffer<ArrayBuffer>[] = [];

  constructor(slots: number, pool?: PartPool) {
    this.#slots = slots;
    this.#pool = pool;
  }

  /** Waits for a free upload slot; release() it once the part's upload has ended. */
  async acquire(): Promise<void> {
    if (this.#busy < this.#slots) {
      this.#busy++;
      return;
    }
    // The slot passes straight to the waiter: no later caller can take it first.
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    if (this.#busy === 0) throw new Error("PartBudget.release() without a slot acquired");
    const next = this.#waiting.shift();
    if (next) next();
    else this.#busy--;
  }

  /** A kept buffer of at least `bytes`, to fill again, if there is one. */
  takeSpare(bytes: number): Buffer<ArrayBuffer> | undefined {
    const spare = this.#spares.at(-1);
    if (!spare || spare.length < bytes) return this.#pool?.take(bytes);
    this.#spares.pop();
    return spare;
  }

  /**
   * Keeps a buffer S3 is done with, up to as many as the job can use at once (one filling per
   * output and every slot's part in flight): never more buffers than the job held at its peak.
   */
  keepSpare(buffer: Buffer<ArrayBuffer>): void {
    if (this.#spares.length < this.#slots + 2) this.#spares.push(buffer);
  }

  /** The attempt has ended and its uploads settled: its spare buffers go to the worker's pool. */
  close(): void {
    const spares = this.#spares.splice(0);
    this.#pool?.give(spares);
  }
}
