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

  it("keeps buffers of its one size only, up to its limit, and hands each out once", () => {
    const pool = new PartPool(200, 2, 30_000);
    const [small, first, big, second, third] = [100, 200, 300, 200, 200].map(buffer);
    pool.give([small, first, big, second, third] as Buffer<ArrayBuffer>[]);
    expect(pool.size).toBe(2);
    // Those not kept are left to the garbage collector, not freed under whoever may hold them.
    expect([small, big, third].map((b) => b?.buffer.detached)).toEqual([false, false, false]);
    expect(pool.take(201)).toBeUndefined();
    expect(pool.take(150)).toBe(second);
    expect(pool.take(200)).toBe(first);
    expect(pool.take(1)).toBeUndefined();
    expect(first?.buffer.detached).toBe(false);
  });

  it("frees what it keeps once nothing has been given back for its idle time", () => {
    vi.useFakeTimers();
    const pool = new PartPool(100, 4, 30_000);
    const first = buffer(100);
    pool.give([first]);
    vi.advanceTimersByTime(20_000);
    // An attempt that gives nothing back (its outputs never reached a part) does not count.
    pool.give([]);
    pool.give([buffer(50)]);
    vi.advanceTimersByTime(10_000);
    expect(pool.size).toBe(0);
    expect(first.buffer.detached).toBe(true);
    // A buffer given back starts the idle time again, for every buffer kept.
    const [second, third] = [buffer(100), buffer(100)];
    pool.give([second]);
    vi.advanceTimersByTime(20_000);
    pool.give([third]);
    vi.advanceTimersByTime(20_000);
    expect(pool.size).toBe(2);
    vi.advanceTimersByTime(10_000);
    expect(pool.size).toBe(0);
    expect([second.buffer.detached, third.buffer.detached]).toEqual([true, true]);
    expect(pool.take(1)).toBeUndefined();
  });

  it("keeps nothing once closed, and frees what it kept", () => {
    const pool = new PartPool(100, 4, 30_000);
    const kept = buffer(100);
    pool.give([kept]);
    pool.close();
    expect(kept.buffer.detached).toBe(true);
    // A job a forced close cut off may end later and give its buffers back.
    pool.give([buffer(100)]);
    expect(pool.size).toBe(0);
    expect(pool.take(1)).toBeUndefined();
  });

  it("gives a job's spares to the pool when its budget closes, and the next job takes them", () => {
    const pool = new PartPool(100, 8, 30_000);
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
