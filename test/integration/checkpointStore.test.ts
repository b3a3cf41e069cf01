import type { Redis } from "ioredis";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ioredisScripts } from "../../shared/redisScripts.ts";
import {
  CheckpointStore,
  defineStoreScripts,
  LockLostError,
  recordedUploads,
  recordKeys,
} from "../../worker/checkpoint/checkpointStore.ts";
import { checkpointFixture } from "../support/checkpointFixture.ts";
import { useSuiteRedis } from "../support/suiteRedis.ts";

// The checkpoint store's records against a real Redis: what lives as long as the checkpoint
// relies on it, what is dropped with the job, and that nothing is written without the lock.

const JOB_KEY = "bull:csv-transform:7";
const LOCK_KEY = `${JOB_KEY}:lock`;
const REGISTRY = "bull:csv-transform:s3csv:registry";
const TOKEN = "token-of-this-worker";
const WEEK_MS = 7 * 24 * 3600 * 1000;
const records = recordKeys(JOB_KEY);

const checkpoint = checkpointFixture({ bucket: "b", key: "out.csv" }, "U1");

describe("checkpoint store records (real Redis)", () => {
  const suite = useSuiteRedis("store");
  let store: CheckpointStore;
  beforeEach(async () => {
    await suite.redis.flushall();
    await suite.redis.hset(JOB_KEY, "data", "{}");
    await suite.redis.set(LOCK_KEY, TOKEN);
    const scripts = ioredisScripts(suite.redis);
    defineStoreScripts(scripts);
    const keys = {
      jobId: "7",
      jobKey: JOB_KEY,
      lockKey: LOCK_KEY,
      token: TOKEN,
      registry: REGISTRY,
    };
    store = new CheckpointStore(scripts, suite.redis, keys, {}, checkpoint);
  });

  it("a checkpoint write keeps its upload record and named carried text a week from then", async () => {
    await store.recordUpload("output", "U1");
    const named = store.carryKey("rejects:a:0");
    const orphan = store.carryKey("rejects:b:0");
    await store.writeCarry(named, 0, Buffer.from("row\n"));
    await store.writeCarry(orphan, 0, Buffer.from("old\n"));
    for (const key of [records.uploads, records.carries, named, orphan]) {
      await suite.redis.pexpire(key, 1000);
    }
    const rejects = { ...checkpoint.rejects, carry: { key: named, bytes: 4 } };
    await store.save({ ...checkpoint, rejects });
    for (const key of [records.uploads, records.carries, named]) {
      expect(await suite.redis.pttl(key), key).toBeGreaterThan(WEEK_MS - 60_000);
    }
    expect(await suite.redis.pttl(orphan), "a key no checkpoint names ages").toBeLessThanOrEqual(
      1000,
    );
    expect(
      JSON.parse((await suite.redis.hget(JOB_KEY, "data")) ?? "{}").checkpoint.rejects.carry,
    ).toEqual({ key: named, bytes: 4 });
  });

  it("dropping the records deletes every carry key any attempt wrote, named or not", async () => {
    await store.recordUpload("output", "U1");
    await store.markCreating("rejects");
    for (const name of ["output:a:0", "rejects:a:1", "rejects:b:0"]) {
      await store.writeCarry(store.carryKey(name), 0, Buffer.from("text"));
    }
    await store.deleteCarry(store.carryKey("output:a:0"));
    expect(await suite.redis.smembers(records.carries)).toHaveLength(2);
    // The drop answers the two keys left, each is deleted, and the drop runs again.
    const sent = await commandsSent(suite.redis, () => store.dropRecords());
    expect(sent).toEqual(["script", "script", "script", "script"]);
    expect((await suite.redis.keys(`${JOB_KEY}:*`)).sort()).toEqual([LOCK_KEY]);
  });

  it("a job whose carry keys are gone drops its records in one round trip, none of its keys left", async () => {
    await store.recordUpload("output", "U1");
    await store.markCreating("rejects");
    const sent = await commandsSent(suite.redis, () => store.dropRecords());
    expect(sent).toEqual(["script"]);
    expect((await suite.redis.keys(`${JOB_KEY}:*`)).sort()).toEqual([LOCK_KEY]);
    expect(await suite.redis.hkeys(REGISTRY)).toEqual([]);
  });

  it("reads the records of what earlier attempts may have left in one script", async () => {
    await store.recordUpload("output", "U1");
    await store.recordUpload("rejects", "U2");
    await store.markCreating("output");
    const marked = Number(await suite.redis.get(records.creating("output")));
    let strays: Awaited<ReturnType<CheckpointStore["uploadRecords"]>> | undefined;
    const sent = await commandsSent(suite.redis, async () => {
      strays = await store.uploadRecords();
    });
    expect(sent).toEqual(["script"]);
    expect(strays?.uploads).toEqual(
      new Map([
        ["U1", "output"],
        ["U2", "rejects"],
      ]),
    );
    expect(strays?.creating.output?.getTime()).toBe(marked);
    expect(strays?.creating.rejects).toBeUndefined();
  });

  it("reads empty records as no uploads and no marks", async () => {
    const none = await store.uploadRecords();
    expect(none.uploads).toEqual(new Map());
    expect(none.creating).toEqual({ output: undefined, rejects: undefined });
  });

  it("reads no records once another worker holds the lock", async () => {
    await store.recordUpload("output", "U1");
    await suite.redis.set(LOCK_KEY, "another-worker");
    await expect(store.uploadRecords()).rejects.toBeInstanceOf(LockLostError);
  });

  it("forgets aborted uploads and keeps the rest", async () => {
    await store.recordUpload("output", "U1");
    await store.recordUpload("output", "U2");
    await store.recordUpload("rejects", "U3");
    await store.forgetUploads(["U1", "U3"]);
    expect((await store.uploadRecords()).uploads).toEqual(new Map([["U2", "output"]]));
  });

  it("writes nothing once another worker holds the lock", async () => {
    const carry = store.carryKey("output:a:0");
    await store.writeCarry(carry, 0, Buffer.from("text"));
    await store.recordUpload("output", "U1");
    await suite.redis.set(LOCK_KEY, "another-worker");
    const writes: Array<[string, () => Promise<unknown>]> = [
      ["save", () => store.save({ ...checkpoint, resumes: 5 })],
      ["writeCarry", () => store.writeCarry(carry, 4, Buffer.from("more"))],
      ["deleteCarry", () => store.deleteCarry(carry)],
      ["recordUpload", () => store.recordUpload("rejects", "U9")],
      ["forgetUploads", () => store.forgetUploads(["U1"])],
      ["markCreating", () => store.markCreating("output")],
      ["dropRecords", () => store.dropRecords()],
    ];
    for (const [name, write] of writes) {
      await expect(write(), name).rejects.toBeInstanceOf(LockLostError);
    }
    expect(await suite.redis.get(carry)).toBe("text");
    expect(await suite.redis.hget(JOB_KEY, "data")).toBe("{}");
    expect(await recordedUploads(suite.redis, JOB_KEY)).toEqual(new Map([["U1", "output"]]));
    expect(await suite.redis.exists(records.creating("output"))).toBe(0);
  });
});

/**
 * The commands a client sent while `run` ran, by name ("script" for a script's): its round
 * trips. ioredis sends a script it has not sent on the connection before by EVAL, or by EVALSHA
 * and then, told NOSCRIPT, by EVAL: either way one call.
 */
async function commandsSent(redis: Redis, run: () => Promise<unknown>): Promise<string[]> {
  const send = vi.spyOn(redis, "sendCommand");
  try {
    await run();
    const names = send.mock.calls.map(([command]) => command.name);
    return names
      .filter((name, i) => !(name === "eval" && names[i - 1] === "evalsha"))
      .map((name) => (name === "eval" || name === "evalsha" ? "script" : name));
  } finally {
    send.mockRestore();
  }
}
