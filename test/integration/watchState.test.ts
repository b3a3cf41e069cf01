import { createHash } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { planJob, type WatchPlan } from "../../producer/watch/watchPlan.ts";
import { WatchState } from "../../producer/watch/watchState.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { useSuiteRedis } from "../support/suiteRedis.ts";

// What a watch records per key, against a real Redis: the version (ETag, LastModified) each
// key's last job was made for, replaced only by a writer that read it (compare and set); job
// ids that name the version; records of 0.3.0; outputs two keys would share; forgetting a key
// only while its record is the one read; and keys ranged in S3's byte order.

const keys = queueKeys("bull", "csv-transform");
const plan: WatchPlan = {
  bucket: "intake",
  prefix: "orders/",
  destTemplate: "s3://clean/{path}",
  template: { transform: "contacts-normalize" },
};

describe("watch state (real Redis)", () => {
  const suite = useSuiteRedis("watch-state");
  let state: WatchState;
  beforeEach(async () => {
    await suite.redis.flushall();
    state = new WatchState(suite.redis, keys, plan.bucket, plan.prefix);
  });

  it("replaces a key's record only for a writer that read the record there now; job ids name the version", async () => {
    const key = "orders/a.csv";
    const a1 = { etag: '"A"', modified: 1_000, listed: 1_000 };
    const b = { etag: '"B"', modified: 1_060, listed: -1 };
    const a2 = { etag: '"A"', modified: 1_120, listed: 1_121 };
    expect(await state.record(key, a1, null)).toBe(true);
    // A second writer that also read "none": the first one's record stands.
    expect(await state.record(key, b, null)).toBe(false);
    expect(await state.record(key, b, a1)).toBe(true);
    // A writer that read A before B was recorded: B stands.
    expect(await state.record(key, a2, a1)).toBe(false);
    expect((await state.records([key]))[0]).toEqual(b);
    expect(await state.record(key, a2, b)).toBe(true);
    expect((await state.records([key]))[0]).toEqual(a2);
    // A watcher that only noted the listed time of the version read is no rival: compared by
    // version, a writer that read that version still replaces it.
    await state.record(key, { ...a2, listed: 1_125 }, a2);
    expect(await state.record(key, b, a2)).toBe(true);
    expect((await state.records([key]))[0]).toEqual(b);
    // Content that comes back is a new job; the same version is the same job.
    const ids = [a1, b, a2, { ...a2, listed: -1 }].map((v) => planJob(plan, key, v).jobId);
    expect(new Set(ids).size).toBe(3);
    expect(ids[2]).toBe(ids[3]);
  });

  it("reads a record of 0.3.0 (the ETag alone) as a version known by its ETag, and indexes it once", async () => {
    const key = "orders/legacy.csv";
    const legacy = { etag: '"L"', modified: -1, listed: -1 };
    await suite.redis.hset(`${keys.base}:watch:${hashId()}:seen`, key, '"L"');
    expect((await state.records([key]))[0]).toEqual(legacy);
    expect(await state.countBetween(undefined, undefined)).toBe(0);
    await state.indexKeys();
    expect(await state.countBetween(undefined, undefined)).toBe(1);
    expect(await state.record(key, { etag: '"L"', modified: 7, listed: 7 }, legacy)).toBe(true);
    expect((await state.records([key]))[0]).toEqual({ etag: '"L"', modified: 7, listed: 7 });
  });

  it("gives an output to the first key that asks, until that key is forgotten; a key refused is recorded as such", async () => {
    const v = (etag: string) => ({ etag, modified: 10, listed: 10 });
    expect(await state.ownOutput("orders/a/x.csv", "clean/x.csv", v('"A"'), null)).toBeUndefined();
    // Held while its job waits to be added (no record yet), and found in the key order.
    expect(await state.records(["orders/a/x.csv"])).toEqual([null]);
    expect(await state.ownOutput("orders/b/x.csv", "clean/x.csv", v('"B"'), null)).toBe(
      "orders/a/x.csv",
    );
    expect(await state.records(["orders/b/x.csv"])).toEqual([v('"B"')]);
    // Refused again with a record read before another version was recorded: not recorded.
    expect(await state.ownOutput("orders/b/x.csv", "clean/x.csv", v('"C"'), null)).toBe(
      "orders/a/x.csv",
    );
    expect(await state.records(["orders/b/x.csv"])).toEqual([v('"B"')]);
    expect(await state.countBetween(undefined, undefined)).toBe(2);
    expect(await state.ownOutput("orders/a/x.csv", "clean/x.csv", v('"A"'), null)).toBeUndefined();
    expect(await state.forget("orders/a/x.csv", null, "clean/x.csv")).toBe(false);
    // b waited for the output: its refusal is dropped, so that it is offered again.
    expect(await state.records(["orders/b/x.csv"])).toEqual([null]);
    expect(await state.ownOutput("orders/b/x.csv", "clean/x.csv", v('"B"'), null)).toBeUndefined();
  });

  it("offers again, once the key holding an output is forgotten, only the keys it was refused to", async () => {
    const owner = { etag: '"1"', modified: 10, listed: 10 };
    await state.ownOutput("orders/a/x.csv", "clean/x.csv", owner, null);
    await state.record("orders/a/x.csv", owner, null);
    const refused = { etag: '"2"', modified: 11, listed: 11 };
    expect(await state.ownOutput("orders/b/x.csv", "clean/x.csv", refused, null)).toBe(
      "orders/a/x.csv",
    );
    await state.ownOutput("orders/c/y.csv", "clean/y.csv", owner, null);
    await state.record("orders/c/y.csv", owner, null);
    expect(await state.records(["orders/b/x.csv"])).toEqual([refused]);
    expect(await state.forget("orders/a/x.csv", owner, "clean/x.csv")).toBe(true);
    // b has no record now: the next listing offers it, and it takes the output.
    expect(await state.records(["orders/b/x.csv", "orders/c/y.csv"])).toEqual([null, owner]);
    expect(await state.ownOutput("orders/b/x.csv", "clean/x.csv", refused, null)).toBeUndefined();
  });

  it("forgets a key only while its record is the one read before its object was found gone", async () => {
    const key = "orders/gone.csv";
    const first = { etag: '"G"', modified: 100, listed: 100 };
    const again = { etag: '"G"', modified: 200, listed: -1 };
    await state.record(key, first, null);
    // Made again meanwhile (another watcher recorded the new version): kept.
    await state.record(key, again, first);
    expect(await state.forget(key, first, "clean/gone.csv")).toBe(false);
    expect(await state.forget(key, null, "clean/gone.csv")).toBe(false);
    expect(await state.countBetween(undefined, undefined)).toBe(1);
    expect(await state.forget(key, again, "clean/gone.csv")).toBe(true);
    expect(await state.records([key])).toEqual([null]);
    expect(await state.countBetween(undefined, undefined)).toBe(0);
  });

  it("records a baseline only where a key has no record", async () => {
    await state.record("orders/claimed.csv", { etag: '"NEW"', modified: 50, listed: 50 }, null);
    await state.recordBaseline([
      { key: "orders/claimed.csv", etag: '"OLD"', modified: -1, listed: 40 },
      { key: "orders/other.csv", etag: '"O"', modified: -1, listed: 40 },
    ]);
    expect(await state.records(["orders/claimed.csv", "orders/other.csv"])).toEqual([
      { etag: '"NEW"', modified: 50, listed: 50 },
      { etag: '"O"', modified: -1, listed: 40 },
    ]);
    expect(await state.countBetween(undefined, undefined)).toBe(2);
  });

  it("ranges keys in S3's order, by bytes, in bounded batches", async () => {
    const names = ["a", "b", "z", "é", "\u{1F600}", "\uFFFD", "a b", "a/b"].map(
      (n) => `orders/${n}`,
    );
    for (const [i, key] of names.entries())
      await state.record(key, { etag: `"${i}"`, modified: i, listed: i }, null);
    const byBytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    const all: string[] = [];
    for await (const batch of state.keysBetween(undefined, undefined)) all.push(...batch);
    expect(all).toEqual(byBytes);
    expect(await state.countBetween(byBytes[1], byBytes[4])).toBe(3);
    const some: string[] = [];
    for await (const batch of state.keysBetween(byBytes[1], byBytes[4])) some.push(...batch);
    expect(some).toEqual(byBytes.slice(2, 5));
    // More than one batch.
    for (let i = 0; i < 2500; i++)
      await state.record(`p/${i}`, { etag: '"x"', modified: i, listed: i }, null);
    let batches = 0;
    let count = 0;
    for await (const batch of state.keysBetween(undefined, undefined)) {
      batches++;
      count += batch.length;
    }
    expect(count).toBe(2500 + names.length);
    expect(batches).toBe(3);
  });
});

/** The id WatchState derives from the bucket and the prefix (its keys' middle part). */
function hashId(): string {
  return createHash("sha256").update(`${plan.bucket}\n${plan.prefix}`).digest("hex").slice(0, 16);
}
