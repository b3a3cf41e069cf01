// A worker's idle part buffers, between its jobs. A job's part buffers are its largest memory and
// the costliest to get: a fresh 8 MiB buffer faults in 2,048 pages as it is first written, at
// 12-28 us each on the machines measured (0.1-0.23 CPU s for the four buffers of a job). Each
// job's PartBudget still owns the buffers it uses, and gives back here only those whose parts
// S3 has taken, once its attempt has ended; the next job takes them as spares. A buffer holds
// nothing of the job before it that a part could show: a part is the bytes written since the
// buffer was taken, and nothing reads past them.
//
// The pool holds buffers of one size only, the capacity of the worker's PART_SIZE: a job with
// another part size (its own options.partSize, or a source too large for PART_SIZE) neither
// takes nor gives, so the pool's memory is at most `limit` of the worker's usual part buffers
// whatever jobs come. Every kept buffer is freed at once when nothing has been given back for
// `idleMs`, so an idle worker does not hold a job's part memory.

import type { Config } from "../../shared/config.ts";
import { partBufferCapacity } from "./partBuffer.ts";

/** How long a worker keeps idle part buffers after the last one given back. */
const WORKER_IDLE_MS = 30_000;

/**
 * A worker's pool: buffers of its PART_SIZE, as many as its jobs hold at once (one filling per
 * output and every part in flight, each job), freed 30 s after the last one given back.
 */
export function workerPartPool(
  config: Pick<Config, "PART_SIZE" | "PARTS_IN_FLIGHT" | "WORKER_CONCURRENCY">,
): PartPool {
  return new PartPool(
    partBufferCapacity(config.PART_SIZE),
    (config.PARTS_IN_FLIGHT + 2) * config.WORKER_CONCURRENCY,
    WORKER_IDLE_MS,
  );
}

export class PartPool {
  /** The one buffer size kept. */
  readonly capacity: number;
  readonly #limit: number;
  readonly #idleMs: number;
  readonly #buffers: Buffer<ArrayBuffer>[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(capacity: number, limit: number, idleMs: number) {
    this.capacity = capacity;
    this.#limit = limit;
    this.#idleMs = idleMs;
  }

  /** Whether a job of parts of `partSize` fills buffers of the pool's size. */
  serves(partSize: number): boolean {
    return partBufferCapacity(partSize) === this.capacity;
  }

  /** Buffers kept now. */
  get size(): number {
    return this.#buffers.length;
  }

  /** A kept buffer, if there is one and `bytes` fit in it; the caller owns it from now on. */
  take(bytes: number): Buffer<ArrayBuffer> | undefined {
    return bytes <= this.capacity ? this.#buffers.pop() : undefined;
  }

  /**
   * Keeps buffers an ended attempt no longer uses: those of the pool's size, up to its limit.
   * The rest are left to the garbage collector (not freed here: nothing may still read them,
   * but the pool never learnt that of a buffer it does not keep).
   */
  give(buffers: Iterable<Buffer<ArrayBuffer>>): void {
    if (this.#closed) return;
    let kept = false;
    for (const buffer of buffers) {
      if (buffer.length !== this.capacity || this.#buffers.length >= this.#limit) continue;
      this.#buffers.push(buffer);
      kept = true;
    }
    // Only a buffer given back restarts the idle time: jobs that give none (small outputs never
    // reach a part-sized buffer) must not keep the pool's memory alive.
    if (!kept) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.clear(), this.#idleMs);
    // An idle worker's pending free must not keep its process alive.
    this.#timer.unref();
  }

  /**
   * Frees every kept buffer now: left to the garbage collector, external memory waits for a
   * full collection, which an idle worker may not run for minutes.
   */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const buffer of this.#buffers.splice(0)) buffer.buffer.transfer(0);
  }

  /** Frees every kept buffer and keeps none given back from now on (the worker is closing). */
  close(): void {
    this.#closed = true;
    this.clear();
  }
}
