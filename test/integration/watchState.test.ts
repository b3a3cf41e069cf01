import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../dev/redisServer.ts";
import { planJob, type WatchPlan } from "../../producer/watch/watchPlan.ts";
import {
  type Claim,
  TIME_MARGIN_MS,
  type WatchRecord,
  WatchState,
} from "../../producer/watch/watchState.ts";
import { queueKeys } from "../../shared/queueKeys.ts";

// What a watch records per key, against a real Redis: a claim per version (content that comes
// back is a new claim, a claim repeated is the same one), versions that arrive late, records
// of 0.3.0, outputs two keys would share, and forgetting objects that are gone.

const keys = queueKeys("bull", "csv-transform");
const plan: WatchPlan = {
  bucket: "intake",
  prefix: "orders/",
  destTemplate: "s3://clean/{path}",
  template: { transform: "contacts-normalize" },
};

function record(claim: Claim): WatchRecord {
  if (claim === "stale" || "clashesWith" in claim) throw new Error(`not a record: ${claim}`);
  return claim;
}

describe("watch state (real Redis)", () => {
  let server: RedisServer;
  let dir: string;
  let redis: Redis;
  let state: WatchState;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "s3csv-watch-state-"));
    server = await startRedisServer({ dir });
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await redis.flushall();
    state = new WatchState(redis, keys, plan.bucket, plan.prefix);
  });

  it("claims each version once: a repeated claim is the same one, and content that comes back is a new job", async () => {
    const key = "orders/a.csv";
    const a1 = record(await state.claim(key, '"A"', 1_000_000, "clean/a.csv"));
    expect(a1).toMatchObject({ seq: 1, etag: '"A"', pending: true });
    // A watcher killed before its job was added, or a second watcher: the same claim.
    expect(record(await state.claim(key, '"A"', 1_000_000, "clean/a.csv"))).toEqual(a1);
    await state.settle(key, a1);
    expect(record(await state.claim(key, '"A"', 1_000_000, "clean/a.csv")).pending).toBe(false);
    const b = record(await state.claim(key, '"B"', 1_060_000, "clean/a.csv"));
    await state.settle(key, b);
    const a2 = record(await state.claim(key, '"A"', 1_120_000, "clean/a.csv"));
    expect([a1.seq, b.seq, a2.seq]).toEqual([1, 2, 3]);
    expect(a2.pending).toBe(true);
    const ids = [a1, b, a2].map((r) => planJob(plan, key, r.etag, r.seq).jobId);
    expect(new Set(ids).size).toBe(3);
    // Settling a claim that was overtaken leaves the newer one pending.
    await state.settle(key, b);
    expect((await state.records([key]))[0]).toEqual(a2);
  });

  it("makes one claim when two watchers claim a version at once", async () => {
    const other = new Redis(server.url);
    const otherState = new WatchState(other, keys, plan.bucket, plan.prefix);
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? state : otherState).claim(`orders/k${i % 5}.csv`, '"E"', 5, `clean/k${i % 5}`),
      ),
    );
    other.disconnect();
    const seqs = claims.map((c) => record(c).seq);
    expect(new Set(seqs).size).toBe(5);
    expect(await redis.get(`${keys.base}:watch:${hashId()}:seq`)).toBe("5");
  });

  it("takes a version older than the recorded one (beyond the margin) for a late event", async () => {
    const key = "orders/late.csv";
    const now = 2_000_000_000;
    await state.claim(key, '"NEW"', now, "clean/late.csv");
    expect(await state.claim(key, '"OLD"', now - TIME_MARGIN_MS - 1000, "clean/late.csv")).toBe(
      "stale",
    );
    // Within the margin (listing and event times of one upload differ): claimed, not dropped.
    expect(
      record(await state.claim(key, '"OLDISH"', now - TIME_MARGIN_MS + 1000, "clean/late.csv")),
    ).toMatchObject({ pending: true, etag: '"OLDISH"' });
  });

  it("reads a record of 0.3.0 (the ETag alone) as done, and rewrites it on its next claim", async () => {
    const key = "orders/legacy.csv";
    await redis.hset(`${keys.base}:watch:${hashId()}:seen`, key, '"L"');
    expect((await state.records([key]))[0]).toMatchObject({ etag: '"L"', legacy: true });
    const same = record(await state.claim(key, '"L"', 7, "clean/legacy.csv"));
    expect(same).toMatchObject({ seq: 0, pending: false, legacy: false });
    expect(await state.countBetween(undefined, undefined)).toBe(1);
    expect(record(await state.claim(key, '"M"', 8, "clean/legacy.csv")).pending).toBe(true);
  });

  it("refuses a key whose output another key holds, until that key is gone", async () => {
    const first = record(await state.claim("orders/a/x.csv", '"1"', 10, "clean/x.csv"));
    expect(await state.claim("orders/b/x.csv", '"2"', 10, "clean/x.csv")).toEqual({
      clashesWith: "orders/a/x.csv",
    });
    // Recorded without a job: not offered again until its content changes.
    expect((await state.records(["orders/b/x.csv"]))[0]).toMatchObject({
      etag: '"2"',
      pending: false,
    });
    await state.settle("orders/a/x.csv", first);
    const forgotten = await state.forget(
      [{ key: "orders/a/x.csv", output: "clean/x.csv" }],
      Date.now() + 2 * TIME_MARGIN_MS,
      "event",
    );
    expect(forgotten).toBe(1);
    expect(record(await state.claim("orders/b/x.csv", '"3"', 20, "clean/x.csv")).pending).toBe(
      true,
    );
  });

  it("forgets a record on a removal only when it is older than the removal by the margin", async () => {
    const key = "orders/gone.csv";
    await state.claim(key, '"G"', Date.now(), "clean/gone.csv");
    const gone = [{ key, output: "clean/gone.csv" }];
    expect(await state.forget(gone, Date.now(), "event")).toBe(0);
    expect(await state.countBetween(undefined, undefined)).toBe(1);
    expect(await state.forget(gone, Date.now() + 2 * TIME_MARGIN_MS, "event")).toBe(1);
    expect(await state.records([key])).toEqual([null]);
    expect(await state.countBetween(undefined, undefined)).toBe(0);
    // Made again after it was deleted: a new claim.
    expect(record(await state.claim(key, '"G"', Date.now(), "clean/gone.csv")).seq).toBe(2);
  });

  it("forgets a key listings miss only when a second listing, begun past the margin, misses it too", async () => {
    const key = "orders/missed.csv";
    const gone = [{ key, output: "clean/missed.csv" }];
    const t = Date.now() + 2 * TIME_MARGIN_MS;
    await state.claim(key, '"M"', Date.now(), "clean/missed.csv");
    expect(await state.forget(gone, t, "listing")).toBe(0);
    expect(await state.anyMissed()).toBe(true);
    // The same listing's pages, or one begun within the margin: still kept.
    expect(await state.forget(gone, t + TIME_MARGIN_MS - 1, "listing")).toBe(0);
    // Shown again (one listing came back short): the mark is cleared, the count starts over.
    await state.listedAgain([key]);
    expect(await state.anyMissed()).toBe(false);
    expect(await state.forget(gone, t + 2 * TIME_MARGIN_MS, "listing")).toBe(0);
    expect(await state.forget(gone, t + 4 * TIME_MARGIN_MS, "listing")).toBe(1);
    expect(await state.records([key])).toEqual([null]);
    expect(await state.anyMissed()).toBe(false);
  });

  it("ranges keys in S3's order, by bytes, in bounded batches", async () => {
    const names = ["a", "b", "z", "é", "\u{1F600}", "\uFFFD", "a b", "a/b"].map(
      (n) => `orders/${n}`,
    );
    for (const [i, key] of names.entries()) await state.claim(key, `"${i}"`, i, `clean/${i}`);
    const byBytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    const all: string[] = [];
    for await (const batch of state.keysBetween(undefined, undefined)) all.push(...batch);
    expect(all).toEqual(byBytes);
    expect(await state.countBetween(byBytes[1], byBytes[4])).toBe(3);
    const some: string[] = [];
    for await (const batch of state.keysBetween(byBytes[1], byBytes[4])) some.push(...batch);
    expect(some).toEqual(byBytes.slice(2, 5));
    // More than one batch.
    for (let i = 0; i < 2500; i++) await state.claim(`p/${i}`, '"x"', i, `clean/p${i}`);
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
