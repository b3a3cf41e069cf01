import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Queue } from "bullmq";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { enqueueTransform } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import { type Checkpoint, CONTRACT_VERSION, type JobResult } from "../../shared/job.ts";
import { workerCensus } from "../../shared/workerCensus.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import {
  type PreviousRelease,
  previousRelease,
  previousTag,
  type ReleaseFile,
} from "../support/previousRelease.ts";
import { isPartUpload } from "../support/s3Server.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { eventually, job, queueFor, rejectsKeyOf, runProcess } from "./helpers.ts";

// A rolling upgrade: workers and producers of the previous release (checked out from the
// project's history at its tag and installed beside this one) share a queue with this
// release's. A job that uses no new option runs on either, from either's producer, and a job
// killed mid-way on one resumes on the other, both ways, byte-identical to a run that never
// stopped. A job that needs a newer contract than a worker has is handed back, not failed.

const MiB = 1024 * 1024;
const SOURCE = "upgrade/in.csv";

// Every test against the last release of the previous job contract; the hand-offs (a job run
// on, and resumed across, either release) against the last release of this one too.
for (const [file, handOffsOnly] of [
  ["previous-release", false],
  ["latest-release", true],
] as const) {
  const tag = await previousTag(file);
  if (typeof tag !== "string") console.warn(`rolling upgrade tests skipped: ${tag.missing}`);
  upgradeSuite(file, tag, handOffsOnly);
}

function upgradeSuite(
  file: ReleaseFile,
  tag: string | { missing: string },
  handOffsOnly: boolean,
): void {
  describe.skipIf(typeof tag !== "string")(
    `rolling upgrade: ${typeof tag === "string" ? tag : file} beside this release`,
    () => {
      let release: PreviousRelease;
      let stack: Stack;
      let queue: Queue<unknown, JobResult>;
      let clean: { output: Buffer; rejects: Buffer; result: JobResult };
      const workers: WorkerProcess[] = [];
      const held: Array<() => void> = [];

      const current = (extra: NodeJS.ProcessEnv = {}) => {
        const w = spawnWorker(stack.env, extra);
        workers.push(w);
        return w;
      };
      const previous = () => {
        const w = spawnWorker(stack.env, {}, release.command);
        workers.push(w);
        return w;
      };

      beforeAll(async () => {
        const found = await previousRelease(file);
        if ("missing" in found) throw new Error(found.missing);
        release = found;
        stack = await startStack({
          PART_SIZE: String(5 * MiB),
          PARTS_IN_FLIGHT: "2",
          LOCK_DURATION_MS: "2000",
          STALLED_INTERVAL_MS: "500",
        });
        queue = queueFor(stack);
        // Every 997th row invalid: the output spans several parts, the report rides in carries.
        await stack.put(SOURCE, peopleData({ rows: 130_000, invalidEvery: 997, pad: 120 }).csv);
        const w = current();
        const id = await enqueueTransform(job(SOURCE, "upgrade/clean.csv", peopleSchema), {
          queue,
        });
        const result = await waitForResult(queue, id, { timeoutMs: 110_000 });
        await w.kill("SIGTERM");
        clean = {
          output: await stack.get("upgrade/clean.csv"),
          rejects: await stack.get(rejectsKeyOf("upgrade/clean.csv")),
          result,
        };
        expect(result.parts).toBeGreaterThanOrEqual(4);
      }, 300_000);

      afterEach(async () => {
        stack.s3Server.beforeRequest = undefined;
        for (const release of held.splice(0)) release();
        for (const w of workers.splice(0)) await w.kill();
      });

      afterAll(async () => {
        await queue?.close();
        await stack?.stop();
      });

      async function expectClean(dest: string, result: JobResult): Promise<void> {
        expect((await stack.get(dest)).equals(clean.output)).toBe(true);
        expect((await stack.get(rejectsKeyOf(dest))).equals(clean.rejects)).toBe(true);
        expect(result.rows).toEqual(clean.result.rows);
        expect(await stack.openUploads()).toEqual([]);
      }

      it("runs a job from this release's producer on a previous-release worker", async () => {
        const w = previous();
        const dest = "upgrade/new-producer.csv";
        const id = await enqueueTransform(job(SOURCE, dest, peopleSchema), { queue });
        const result = await waitForResult(queue, id, { timeoutMs: 110_000 }).catch((error) => {
          throw new Error(`${error}; previous worker's log:\n${w.output().slice(-3000)}`);
        });
        await expectClean(dest, result);
      });

      it("runs a job from the previous release's CLI on this release's worker", async () => {
        current();
        const dest = "upgrade/old-producer.csv";
        const schemaFile = join(tmpdir(), `upgrade-schema-${process.pid}.json`);
        await writeFile(schemaFile, JSON.stringify(peopleSchema));
        const args = [
          "enqueue",
          "--source",
          `s3://${BUCKET}/${SOURCE}`,
          "--dest",
          `s3://${BUCKET}/${dest}`,
        ];
        const cli = await runProcess(release.command, [...args, "--schema", schemaFile, "--json"], {
          env: stack.env,
          timeoutMs: 60_000,
        });
        expect(cli.code, cli.stderr).toBe(0);
        const { jobId } = JSON.parse(cli.stdout) as { jobId: string };
        await expectClean(dest, await waitForResult(queue, jobId, { timeoutMs: 110_000 }));
      });

      /** Kills `first` once `parts` output parts are checkpointed, then lets `second` finish. */
      async function handOver(
        name: string,
        first: () => WorkerProcess,
        second: () => WorkerProcess,
      ): Promise<JobResult> {
        const dest = `upgrade/${name}.csv`;
        const parts = 2;
        const w = first();
        stack.s3Server.beforeRequest = (r) =>
          isPartUpload(r, dest, parts + 1)
            ? new Promise<void>((resolve) => {
                held.push(resolve);
              })
            : undefined;
        const id = await enqueueTransform(job(SOURCE, dest, peopleSchema), { queue });
        await eventually(async () => {
          const data = (await queue.getJob(id))?.data as { checkpoint?: Checkpoint } | undefined;
          return (data?.checkpoint?.output.parts.length ?? 0) >= parts ? true : undefined;
        }, 90_000).catch((error) => {
          throw new Error(`${error}; first worker's log:\n${w.output().slice(-3000)}`);
        });
        await w.kill("SIGKILL");
        stack.s3Server.beforeRequest = undefined;
        for (const release of held.splice(0)) release();
        const next = second();
        const result = await waitForResult(queue, id, { timeoutMs: 110_000 }).catch((error) => {
          throw new Error(`${error}; second worker's log:\n${next.output().slice(-3000)}`);
        });
        expect(result.resumes).toBeGreaterThanOrEqual(1);
        await expectClean(dest, result);
        return result;
      }

      it("resumes on a previous-release worker a job this release's worker checkpointed", async () => {
        await handOver("new-then-old", current, previous);
      });

      it("resumes on this release's worker a job a previous-release worker checkpointed", async () => {
        await handOver("old-then-new", previous, current);
      });

      // The contract tests: a release of this contract has nothing of them to show.
      if (!handOffsOnly) {
        it("splits with auto only when every worker of the queue has split jobs", async () => {
          previous();
          current();
          // The previous release's worker announces no contract: it would fail a shard.
          await eventually(async () =>
            (await workerCensus(queue))?.contracts.length === 2 ? true : undefined,
          );
          expect(await workerCensus(queue)).toEqual({ contracts: [1, 2] });
        });

        it("adds a shard again when a previous-release worker that joined after the split refused it", async () => {
          const w = current({ WORKER_CONCURRENCY: "2" });
          const dest = "upgrade/split.csv";
          // The shards' reads are held: two sit active on this release's worker, the rest wait.
          stack.s3Server.beforeRequest = (r) =>
            r.method === "GET" &&
            r.url.includes(`/${SOURCE}`) &&
            r.range !== undefined &&
            r.range !== "bytes=0-"
              ? new Promise<void>((resolve) => {
                  held.push(resolve);
                })
              : undefined;
          const id = await enqueueTransform(
            { ...job(SOURCE, dest, peopleSchema), options: { split: 5 * MiB } },
            { queue },
          );
          // The parent has added its shards and sleeps; some shards wait for a worker.
          await eventually(async () => {
            const parked = (await queue.getJobState(id)) === "waiting-children";
            return (
              (parked && ((await queue.getJobCounts("waiting")).waiting ?? 0) > 0) || undefined
            );
          });
          // A worker of the previous release joins now: it takes a waiting shard and fails it.
          const old = previous();
          await eventually(
            () => (/Unrecognized key/.test(old.output()) ? true : undefined),
            60_000,
          ).catch((error) => {
            throw new Error(`${error}; previous worker's log:\n${old.output().slice(-2000)}`);
          });
          await old.kill("SIGTERM");
          stack.s3Server.beforeRequest = undefined;
          for (const release of held.splice(0)) release();
          const result = await waitForResult(queue, id, { timeoutMs: 110_000 }).catch((error) => {
            throw new Error(`${error}; worker's log:\n${w.output().slice(-3000)}`);
          });
          expect(result.shards).toBeGreaterThanOrEqual(2);
          await expectClean(dest, result);
          const data = (await queue.getJob(id))?.data as {
            contract?: number;
            checkpoint?: Checkpoint;
          };
          // The refused child is retired beside the one that replaced it.
          expect(data.checkpoint?.split?.retired.length).toBeGreaterThanOrEqual(1);
          expect(data.contract).toBe(2);
        });

        it("hands a job that needs a newer contract back, unfailed, with a log line and a metric", async () => {
          const port = 20_000 + (process.pid % 10_000);
          const w = current({ WORKER_METRICS_PORT: String(port) });
          const needed = CONTRACT_VERSION + 1;
          const added = await queue.add("transform", {
            ...job(SOURCE, "upgrade/newer.csv", peopleSchema),
            contract: needed,
          });
          const id = added.id ?? "";
          await eventually(() => (w.output().includes(`"needed":${needed}`) ? true : undefined));
          const metrics = await eventually(async () => {
            const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
            return /s3csv_worker_jobs_total\{outcome="needs-newer-worker"\} [1-9]/.test(text)
              ? text
              : undefined;
          });
          expect(metrics).toMatch(/needs-newer-worker/);
          const state = await queue.getJobState(id);
          expect(["delayed", "waiting", "active"]).toContain(state);
          const handedBack = await queue.getJob(id);
          expect(handedBack?.attemptsMade).toBe(0);
          expect(handedBack?.failedReason ?? "").toBe("");
          const { logs } = await queue.getJobLogs(id);
          expect(logs.join("\n")).toMatch(
            new RegExp(
              `needs job contract ${needed} and this worker has contract ${CONTRACT_VERSION}`,
            ),
          );
          await handedBack?.remove().catch(() => {});
        });
      }
    },
  );
}
