import type { S3Client } from "@aws-sdk/client-s3";
import { type Job, type Queue, WaitingChildrenError } from "bullmq";
import type { Cluster, Redis } from "ioredis";
import {
  contractNeeded,
  type JobData,
  JobResult,
  type RowCounts,
  rejectsLocation,
  type ShardChild,
  type ShardSpec,
  type SplitState,
} from "../../shared/job.ts";
import type { Logger } from "../../shared/logger.ts";
import type { QueueKeys } from "../../shared/queueKeys.ts";
import type { ScriptClient } from "../../shared/redisScripts.ts";
import type { CheckpointStore } from "../checkpoint/checkpointStore.ts";
import { PermanentJobError } from "../errors.ts";
import { outputContentType } from "../pipeline/attempt.ts";
import { countOf } from "../pipeline/invalidRowPolicy.ts";
import { copiedOutputs, renumberedReports } from "./composedSources.ts";
import { compose } from "./composedUpload.ts";
import type { NumberShift } from "./rejectRenumber.ts";
import { checkSeams, type Redo } from "./seamCheck.ts";
import { childJobId, deleteShardObjects, shardObjects } from "./shardObjects.ts";
import { dropShardProgress, shardProgressKeys } from "./shardProgress.ts";
import { mergedCounts, type ShardRows } from "./shardTotals.ts";

// The parent of a split job. Its first run adds one child job per shard and waits for them
// (BullMQ parent/child: the parent sleeps in waiting-children). When they are done it checks
// every seam: a shard must start exactly where the one before it ended. A shard that guessed
// its first row boundary wrong is redone from the right offset, and the parent waits again.
// Then it composes the destination from the shards' outputs (server-side copies), writes one
// reject report with the whole file's row and line numbers, and deletes the shards' objects.

export interface SplitParentInput {
  job: Job<unknown, unknown>;
  token: string;
  data: JobData;
  store: CheckpointStore;
  s3: S3Client;
  /** The queue the parent is in: its children go there too. */
  queue: Queue;
  keys: QueueKeys;
  log: Logger;
  /** Where the shards' progress is summed (see shardProgress.ts). */
  redis: Redis | Cluster;
  /** The worker's scripts, the shard progress ones defined (defineShardProgressScript). */
  scripts: ScriptClient;
}

/** A shard's result as the parent reads it, with the child it came from. */
interface ShardDone {
  index: number;
  child: ShardChild;
  result: JobResult & { shard: NonNullable<JobResult["shard"]> };
}

export class SplitParent {
  readonly #in: SplitParentInput;

  constructor(input: SplitParentInput) {
    this.#in = input;
  }

  get #split(): SplitState {
    return this.#in.store.current.split as SplitState;
  }

  /** Adds the shards not yet added and waits for them, or goes on when all are done. */
  async run(): Promise<JobResult> {
    await this.#addChildren(await this.#missingChildren());
    for (;;) {
      await this.#waitForChildren();
      const done = await this.#verifiedShards();
      if (done) return this.#compose(done);
    }
  }

  /**
   * The shards whose child job was never added: all of them on the first run, some after a
   * crash while adding them. (Adding a child that exists again would make a failed one a
   * pending dependency once more; a finished child may be gone from Redis already, removed by
   * removeOnComplete, but its parent keeps its result or failure.)
   */
  async #missingChildren(): Promise<Array<{ child: ShardChild; index: number }>> {
    const { redis, keys, job } = this.#in;
    const all = this.#split.shards.map((child, index) => ({ child, index }));
    // Existence first: a child that finishes between the two reads is then in the parent's
    // results (finishing writes its result before it removes the job).
    const exists = await Promise.all(all.map(({ child }) => redis.exists(keys.job(child.jobId))));
    const values = (await job.getChildrenValues()) as Record<string, unknown>;
    const failures = await job.getIgnoredChildrenFailures();
    return all.filter(({ child }, i) => {
      const key = keys.job(child.jobId);
      return exists[i] === 0 && !(key in values) && !(key in failures);
    });
  }

  async #addChildren(children: Array<{ child: ShardChild; index: number }>): Promise<void> {
    if (children.length === 0) return;
    const { queue, job, store, data } = this.#in;
    // Named in the queue's registry before any child may write one: s3csv sweep can delete
    // the shard objects of a parent that is gone without cleaning up.
    const split = this.#split;
    await store.registerShards(data.destination, [
      ...split.shards.map((s) => s.jobId),
      ...split.retired,
    ]);
    await queue.addBulk(
      children.map(({ child, index }) => ({
        name: "shard",
        data: this.#childData(child, index),
        opts: {
          jobId: child.jobId,
          parent: { id: job.id ?? "", queue: job.queueQualifiedName },
          // A failed shard does not leave the parent waiting: the parent fails the job.
          ignoreDependencyOnFailure: true,
          // Retried as their parent is; a finished shard is removed (its parent keeps its
          // result), so a large job does not crowd other jobs out of the completed set.
          ...pick(job.opts, ["attempts", "backoff", "removeOnFail"]),
          removeOnComplete: true,
        },
      })),
    );
  }

  #childData(child: ShardChild, index: number) {
    const { data, store } = this.#in;
    const checkpoint = store.current;
    const split = this.#split;
    // A shard whose first row is a guess may read rows that are not the file's (the inside of
    // a quoted field), and a later shard's rows are not the file's first: only the first shard
    // fails the job for its invalid rows (its numbers are the file's); the parent judges the
    // others' once their seams are checked.
    const { maxInvalidRatio: _ratio, maxInvalidRows, onInvalid, ...rest } = data.options;
    const options =
      index === 0
        ? { ...rest, onInvalid, ...(maxInvalidRows !== undefined ? { maxInvalidRows } : {}) }
        : { ...rest, onInvalid: "reject" as const };
    const objects = shardObjects(data, child.jobId);
    const shard: ShardSpec = {
      parent: this.#in.job.id ?? "",
      index,
      start: child.start,
      end: child.end,
      pinned: child.pinned,
      source: checkpoint.source,
      delimiter: checkpoint.delimiter ?? ",",
      header: split.header,
      columns: split.columns,
      partSize: checkpoint.partSize,
    };
    return {
      // A worker of a release without split jobs must hand a shard back, not fail it.
      contract: contractNeeded({ shard }),
      source: data.source,
      destination: objects.output,
      ...(data.schema ? { schema: data.schema } : { transform: data.transform }),
      options: { ...options, delimiter: shard.delimiter, rejects: objects.rejects, split: "off" },
      shard,
    };
  }

  async #waitForChildren(): Promise<void> {
    const { job, token } = this.#in;
    if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();
  }

  /**
   * The shards that cover the file, seam by seam, or undefined when one had to be redone (it
   * has been added, and the parent must wait for it). A failed shard fails the job.
   */
  async #verifiedShards(): Promise<ShardDone[] | undefined> {
    const { job, keys, store } = this.#in;
    const values = (await job.getChildrenValues()) as Record<string, unknown>;
    const failures = await job.getIgnoredChildrenFailures();
    const { shards } = this.#split;
    const results = shards.map((child) => {
      const parsed = JobResult.safeParse(values[keys.job(child.jobId)]);
      return parsed.success && parsed.data.shard ? (parsed.data as ShardDone["result"]) : undefined;
    });
    const outcome = (index: number) => {
      const key = keys.job((shards[index] as ShardChild).jobId);
      return failures[key] !== undefined ? "failed" : results[index]?.shard;
    };
    const size = store.current.source.size;
    const check = checkSeams(shards, outcome, size);
    if (check.kind === "checked" || check.kind === "redo") await this.#dropProgress(check.skipped);
    const child = (index: number) => shards[index] as ShardChild;
    switch (check.kind) {
      case "failed": {
        const failed = child(check.index);
        const reason = failures[keys.job(failed.jobId)] ?? "";
        // A worker of a release without split jobs (joined after the split was decided)
        // refused the shard without reading a row: it is added again, for another worker.
        if (REFUSED_BY_OLDER_WORKER.test(reason) && this.#tries(check.index) < MAX_SHARD_TRIES) {
          await this.#redo([{ index: check.index, start: failed.start }], failed.pinned);
          return undefined;
        }
        throw this.#shardFailed(check.index, failed, reason);
      }
      case "missing":
        throw new Error(
          `shard ${check.index + 1} (job ${child(check.index).jobId}) has no result yet; retrying`,
        );
      case "redo":
        await this.#redo(check.redos);
        return undefined;
      default:
        if (check.end < size) {
          throw new Error(`the shards end at byte ${check.end} of ${size}; retrying`);
        }
        return check.used.map((index) => ({
          index,
          child: child(index),
          result: results[index] as ShardDone["result"],
        }));
    }
  }

  /** Shards inside a longer row (or past the end) leave the live totals: they read no row. */
  async #dropProgress(skipped: readonly number[]): Promise<void> {
    const { scripts, queue, keys, job, log, store } = this.#in;
    const id = job.id ?? "";
    const size = store.current.source.size;
    // The parent's progress is for people watching: the job does not fail for it.
    await dropShardProgress(scripts, queue, id, keys.job(id), skipped, size).catch((err: unknown) =>
      log.debug({ err }, "could not update the progress"),
    );
  }

  #shardFailed(index: number, child: ShardChild, reason: string): PermanentJobError {
    const of = this.#split.shards.length;
    return new PermanentJobError(
      `shard ${index + 1} of ${of} (source bytes from ${child.start}) failed: ${reason} (row and line numbers there count from the shard's first row)`,
    );
  }

  /** Shards that guessed their first row boundary wrong: each is read again from its `start`. */
  /** How many children shard `index` has had. */
  #tries(index: number): number {
    const mark = `-shard-${index}-`;
    return 1 + this.#split.retired.filter((id) => id.includes(mark)).length;
  }

  /**
   * Shards to read again, each from its `start`: pinned there (a redone seam), or, for a shard
   * added again as it was, guessing from there as before.
   */
  async #redo(redos: readonly Redo[], pinned = true): Promise<void> {
    const { store, log, job } = this.#in;
    const split = this.#split;
    const shards = [...split.shards];
    const retired = [...split.retired];
    const added: Array<{ child: ShardChild; index: number }> = [];
    for (const { index, start } of redos) {
      const wrong = shards[index] as ShardChild;
      const child: ShardChild = {
        jobId: childJobId(job.id ?? "", index),
        start,
        end: wrong.end,
        pinned,
      };
      log.info(
        { shard: index + 1, guessed: wrong.start, start },
        pinned
          ? "a shard's first row boundary was guessed wrong: redoing it"
          : "a worker of an earlier release refused a shard: adding it again",
      );
      shards[index] = child;
      retired.push(wrong.jobId);
      added.push({ child, index });
    }
    // Saved before the children are added: a parent that dies between adds the ones missing.
    await store.save({
      ...store.current,
      split: { ...split, shards, retired, redone: split.redone + redos.length },
    });
    await this.#addChildren(added);
  }

  async #compose(done: ShardDone[]): Promise<JobResult> {
    const { data, store, s3 } = this.#in;
    const shifts = numberShifts(done);
    const counts = mergedCounts(
      done.map((d, i): ShardRows => ({ counts: d.result.rows, rowShift: shifts[i]?.rows ?? 0 })),
    );
    policyBroken(data.options, counts);
    const outputs = done.map((d) => d.result.output);
    const output = await compose(
      { s3, store, side: "output", contentType: outputContentType(data.options) },
      copiedOutputs(s3, outputs),
    );
    const rejects = await compose(
      { s3, store, side: "rejects", contentType: "text/csv; charset=utf-8" },
      renumberedReports(
        s3,
        done.map((d) => d.result.rejects),
        shifts,
        store.current.partSize,
      ),
    );
    await deleteShardObjects(s3, data, this.#split);
    const { job, redis, keys } = this.#in;
    const size = store.current.source.size;
    await job.updateProgress({
      bytesRead: size,
      bytesTotal: size,
      rows: counts,
      parts: output.parts,
      progress: 100,
    });
    await redis.del(...shardProgressKeys(keys.job(job.id ?? "")));
    const location = rejectsLocation(data);
    // The composed objects' parts are the server's own copies, or bytes sent without a CRC32.
    const checksums = done.some((d) => d.result.checksums === "off") ? "off" : "not-verified";
    return {
      output: { ...data.destination, etag: output.etag, bytes: output.bytes },
      rejects: { ...location, etag: rejects.etag, bytes: rejects.bytes, rows: counts.rejected },
      rows: counts,
      parts: output.parts,
      // The shards' resumes, and the parent's own while composing.
      resumes: done.reduce((sum, d) => sum + d.result.resumes, store.current.resumes),
      restarted: done.flatMap((d) => d.result.restarted),
      checksums,
      shards: done.length,
    };
  }
}

type NumberShifts = NumberShift[];

/** A shard's failure that a worker of s3csv 0.2 gives it: it knows no `contract` or `shard`. */
const REFUSED_BY_OLDER_WORKER = /^invalid job data: .*Unrecognized keys?: .*"(contract|shard)"/;
/** Children one shard may have, redos and refusals together, before the job fails. */
const MAX_SHARD_TRIES = 6;

/** Rows and lines before each shard: what its own numbers are shifted by. */
function numberShifts(done: ShardDone[]): NumberShifts {
  const shifts: NumberShifts = [];
  let rows = 0;
  let lines = 0;
  for (const d of done) {
    shifts.push({ rows, lines });
    rows += d.result.rows.read;
    // A shard's lines are counted from 1 at its start: its end line, shifted, is the next start.
    lines += d.result.shard.lineNumber - 1;
  }
  return shifts;
}

/** The options among `names` that are set. */
function pick<T extends object, K extends keyof T>(from: T, names: readonly K[]): Partial<T> {
  const picked: Partial<T> = {};
  for (const name of names) if (from[name] !== undefined) picked[name] = from[name];
  return picked;
}

/** Fails the job when the whole file's invalid rows break its policy (as a whole run would). */
function policyBroken(options: JobData["options"], counts: RowCounts): void {
  if (options.onInvalid === "fail" && counts.rejected > 0) {
    const first = Math.min(...Object.values(counts.fields).flatMap((f) => f.rows.slice(0, 1)));
    const at = Number.isFinite(first) ? `row ${first}` : "a row";
    throw new PermanentJobError(
      `${at} is invalid and options.onInvalid is "fail" (${countOf(counts.rejected, "invalid row")} in all)`,
    );
  }
  if (options.maxInvalidRows !== undefined && counts.rejected > options.maxInvalidRows) {
    throw new PermanentJobError(
      `${countOf(counts.rejected, "invalid row")} in ${countOf(counts.read, "row")}, more than options.maxInvalidRows (${options.maxInvalidRows})`,
    );
  }
}
