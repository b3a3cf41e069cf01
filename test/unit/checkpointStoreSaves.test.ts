import type { Redis } from "ioredis";
import { expect, it } from "vitest";
import type { Checkpoint, JobData } from "../../shared/job.ts";
import type { ScriptClient } from "../../shared/redisScripts.ts";
import { CheckpointStore } from "../../worker/checkpoint/checkpointStore.ts";
import { checkpointFixture } from "../support/checkpointFixture.ts";

// Saves coalesce: a save made at any moment of an earlier write is written, by that write's
// loop or by a new one. The moment that matters is the one right after the last write's answer.

const checkpoint = (resumes: number): Checkpoint => ({
  ...checkpointFixture({ bucket: "b", key: "out.csv" }),
  resumes,
});

it("writes a save made at any moment after the previous write is answered", async () => {
  // The second save comes 0 to 6 microtasks after the first write's answer: the moments when
  // that write's loop has just checked for more, and when its promise settles.
  for (let ticks = 0; ticks <= 6; ticks++) {
    const written: number[] = [];
    let answered: Promise<unknown> | undefined;
    const scripts: ScriptClient = {
      define() {},
      run(_name, args) {
        const data = JSON.parse(String(args[7])) as { checkpoint: Checkpoint };
        written.push(data.checkpoint.resumes);
        answered ??= Promise.resolve(1);
        return answered;
      },
    };
    const keys = {
      jobId: "1",
      jobKey: "bull:q:1",
      lockKey: "bull:q:1:lock",
      token: "t",
      registry: "bull:q:s3csv:registry",
    };
    const data = {} as Omit<JobData, "checkpoint">;
    const store = new CheckpointStore(scripts, {} as Redis, keys, data, checkpoint(0));
    const first = store.save(checkpoint(1));
    while (!answered) await Promise.resolve();
    let moment: Promise<unknown> = answered;
    for (let i = 0; i < ticks; i++) moment = moment.then(() => undefined);
    let second: Promise<void> | undefined;
    await moment.then(() => {
      second = store.save(checkpoint(2));
    });
    await first;
    await second;
    expect(written, `the second save ${ticks} microtasks after the answer`).toEqual([1, 2]);
  }
});
