import { afterEach, describe, expect, it, vi } from "vitest";
import { PartBudget } from "../../worker/upload/partBudget.ts";
import { PartPool } from "../../worker/upload/partPool.ts";

// A worker's idle part buffers between jobs: bounded, handed to one owner at a time, freed once
// the worker is idle.

const buffer = (bytes: number) => Buffer.allocUnsafeSlow(bytes) as Buffer<ArrayBuffer>;

describe("PartPool", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("hands out a kept buffer big enough, once, and keeps no more than its limit", () => {
    const pool = new PartPool(2, 30_000);
    const [small, big, extra] = [buffer(100), buffer(200), buffer(200)];
    pool.give([small, big, extra]);
    expect(pool.size).toBe(2);
    // The one past the limit is freed at once, not left for the garbage collector.
    expect(extra.buffer.detached).toBe(true);
    expect(pool.take(150)).toBe(big);
    expect(pool.take(150)).toBeUndefined();
    expect(pool.take(100)).toBe(small);
    expect(pool.take(1)).toBeUndefined();
    expect(big.buffer.detached).toBe(false);
    pool.clear();
  });

  it("frees what it keeps once no job has given any back for its idle time", () => {
    vi.useFakeTimers();
    const pool = new PartPool(4, 30_000);
    const first = buffer(100);
    pool.give([first]);
    vi.advanceTimersByTime(20_000);
    // A buffer given back starts the idle time again, for every buffer kept.
    const second = buffer(100);
    pool.give([second]);
    vi.advanceTimersByTime(20_000);
    expect(pool.size).toBe(2);
    vi.advanceTimersByTime(10_000);
    expect(pool.size).toBe(0);
    expect([first.buffer.detached, second.buffer.detached]).toEqual([true, true]);
    expect(pool.take(1)).toBeUndefined();
  });

  it("gives a job's spares to the pool when its attempt ends, and the next job takes them", () => {
    const pool = new PartPool(8, 30_000);
    const job = new PartBudget(2, pool);
    const buffers = [1, 2, 3, 4, 5].map(() => buffer(100));
    for (const b of buffers) job.keepSpare(b);
    // As many as the job can use at once: one filling per output and a part per slot.
    job.close();
    expect(pool.size).toBe(4);
    const next = new PartBudget(2, pool);
    const taken = [1, 2, 3, 4].map(() => next.takeSpare(100));
    expect(new Set(taken)).toEqual(new Set(buffers.slice(0, 4)));
    expect(next.takeSpare(100)).toBeUndefined();
    pool.clear();
  });
});
