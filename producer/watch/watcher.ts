import { setTimeout as sleep } from "node:timers/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import { DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { Queue } from "bullmq";
import { DestinationBusyError } from "../../shared/destinationClaims.ts";
import { contractNeeded, type JobResult } from "../../shared/job.ts";
import type { Logger } from "../../shared/logger.ts";
import { workerCensus, workersBelow } from "../../shared/workerCensus.ts";
import { objectPagesUnder } from "../bulkSources.ts";
import { enqueueTransform, InvalidJobError } from "../enqueue.ts";
import { parseS3EventMessage } from "./s3Events.ts";
import type { WatchMetrics } from "./watchMetrics.ts";
import { outputOf, type PlannedJob, planJob, type WatchPlan } from "./watchPlan.ts";
import type { WatchRecord, WatchState } from "./watchState.ts";

// The watch itself: every object version under the prefix becomes one job. Versions come from
// listing the prefix (every interval) or from S3 event notifications on an SQS queue; both go
// through `offer`, which makes the job unless the version has one. A version whose destination
// another job still writes (the previous version's) waits: it is offered again on the next
// listing, or its message comes back, until that job is done. It is never dropped.

export interface WatchDeps {
  s3: S3Client;
  queue: Queue<unknown, JobResult>;
  state: WatchState;
  plan: WatchPlan;
  log: Logger;
  metrics: WatchMetrics;
}

/** What became of an object version offered to the watch. */
export type Offer = "added" | "known" | "waiting" | "held" | "outside" | "refused";

/** The job contract a watch job needs (it is pinned to its version: source.etag). */
const WATCH_CONTRACT = contractNeeded({ source: { etag: "" } });

/** How long a census of the queue's workers is trusted before it is taken again. */
const CENSUS_MS = 5000;

export class Watcher {
  readonly #in: WatchDeps;
  /** Why jobs are held back (older workers serve the queue), and when that was last asked. */
  #held: { reason: string | undefined; at: number } = { reason: undefined, at: -CENSUS_MS };

  constructor(deps: WatchDeps) {
    this.#in = deps;
  }

  /**
   * Makes the job for a version unless it has one: the version is claimed, its job added under
   * the claim's id, and the claim settled. `known` is the key's record when already read.
   */
  async offer(
    key: string,
    etag: string,
    modifiedMs: number,
    known?: WatchRecord | null,
  ): Promise<Offer> {
    const { plan, state, queue, log, metrics } = this.#in;
    if (!key.startsWith(plan.prefix) || key.endsWith("/")) return "outside";
    metrics.seen.inc();
    const recorded = known === undefined ? (await state.records([key]))[0] : known;
    if (recorded && settled(recorded, etag)) return "known";
    if (await this.#heldBack()) return "held";
    let output = "";
    let invalid: string | undefined;
    try {
      output = outputOf(plan, key);
    } catch (error) {
      if (!(error instanceof InvalidJobError)) throw error;
      invalid = error.message;
    }
    const claim = await state.claim(key, etag, modifiedMs, output);
    if (claim === "stale") return "known";
    if ("clashesWith" in claim) {
      metrics.errors.inc({ kind: "output-clash" });
      log.warn(
        { key, etag, output, owner: claim.clashesWith },
        `s3://${output} is already the output of ${claim.clashesWith}: this object is left alone (use {path} or {key} in --dest-template to keep their outputs apart)`,
      );
      return "refused";
    }
    if (!claim.pending) return "known";
    let planned: PlannedJob | undefined;
    try {
      if (invalid !== undefined) throw new InvalidJobError(invalid);
      planned = planJob(plan, key, etag, claim.seq);
      await enqueueTransform(planned.job, { queue, jobId: planned.jobId });
    } catch (error) {
      if (error instanceof DestinationBusyError) return "waiting";
      if (!(error instanceof InvalidJobError)) throw error;
      // A key no job can be made of (too long for the template, say): said once, then left.
      metrics.errors.inc({ kind: "invalid-job" });
      log.warn({ key, etag, err: error.message }, "no job can be made of this object");
      await state.settle(key, claim);
      return "refused";
    }
    await state.settle(key, claim);
    metrics.added.inc();
    log.info({ jobId: planned.jobId, key, etag }, "job added");
    return "added";
  }

  /**
   * One pass over the prefix: a page of keys is checked against the state in one round trip,
   * and records of keys the listings no longer show (objects deleted) are forgotten.
   */
  async scan(signal?: AbortSignal): Promise<{ listed: number; added: number; waiting: number }> {
    const { s3, plan, state, metrics } = this.#in;
    const startedMs = Date.now();
    let listed = 0;
    let added = 0;
    let waiting = 0;
    let oldest: number | undefined;
    // Forgetting goes by ranges of keys, so it needs the listing in the byte order Redis keeps
    // keys in (S3's order); a listing out of that order forgets nothing this round.
    let previous: string | undefined;
    let ordered = true;
    const anyMissed = await state.anyMissed();
    for await (const page of objectPagesUnder(s3, plan.bucket, plan.prefix, signal)) {
      listed += page.length;
      if (anyMissed) await state.listedAgain(page.map((o) => o.key));
      const records = await state.records(page.map((o) => o.key));
      for (const [i, object] of page.entries()) {
        const record = records[i];
        if (record && settled(record, object.etag)) continue;
        const modifiedMs = object.lastModified?.getTime() ?? -1;
        const offer = await this.offer(object.key, object.etag, modifiedMs, record);
        if (offer === "added") added++;
        if (offer === "waiting" || offer === "held") {
          waiting++;
          const at = modifiedMs >= 0 ? modifiedMs : Date.now();
          oldest = Math.min(oldest ?? at, at);
        }
      }
      const keys = page.map((o) => o.key);
      ordered &&= inByteOrder(previous, keys);
      if (ordered && keys.length > 0) {
        const last = keys[keys.length - 1];
        await this.#forgetUnlisted(previous, last, keys, startedMs);
        previous = last;
      }
    }
    if (ordered) await this.#forgetUnlisted(previous, undefined, [], startedMs);
    metrics.oldestWaiting.set(oldest === undefined ? 0 : (Date.now() - oldest) / 1000);
    return { listed, added, waiting };
  }

  /** Forgets the keys recorded in (after, upTo] that a listing begun at `listedMs` did not show. */
  async #forgetUnlisted(
    after: string | undefined,
    upTo: string | undefined,
    listed: readonly string[],
    listedMs: number,
  ): Promise<void> {
    const { state } = this.#in;
    // Every listed key has a record by now: more records in the range means some are gone.
    if ((await state.countBetween(after, upTo)) <= listed.length) return;
    const shown = new Set(listed);
    for await (const batch of state.keysBetween(after, upTo)) {
      await this.#forget(
        batch.filter((key) => !shown.has(key)),
        listedMs,
        "listing",
      );
    }
  }

  async #forget(keys: readonly string[], atMs: number, by: "event" | "listing"): Promise<void> {
    const { plan, state, metrics } = this.#in;
    const gone = keys.map((key) => {
      try {
        return { key, output: outputOf(plan, key) };
      } catch {
        return { key, output: "" };
      }
    });
    metrics.forgotten.inc(await state.forget(gone, atMs, by));
  }

  /**
   * Whether jobs are held back because a worker of an older job contract (s3csv 0.2) serves
   * the queue: it would fail a watch job, whose version the watch would then take as done.
   * Said once when it starts and once when it ends.
   */
  async #heldBack(): Promise<boolean> {
    const { queue, log, metrics } = this.#in;
    if (Date.now() - this.#held.at < CENSUS_MS) return this.#held.reason !== undefined;
    const census = await workerCensus(queue);
    const older = census ? workersBelow(census, WATCH_CONTRACT) : 0;
    const reason =
      older > 0
        ? `${older} of the queue's ${census?.contracts.length} worker processes are of s3csv 0.2, which would fail watch jobs: no job is added until they are upgraded`
        : undefined;
    if (reason !== this.#held.reason) {
      if (reason) log.warn({ older }, reason);
      else if (this.#held.reason) log.info("every worker runs watch jobs: adding jobs again");
    }
    this.#held = { reason, at: Date.now() };
    metrics.heldForOlderWorkers.set(reason ? 1 : 0);
    return reason !== undefined;
  }

  /** --since now, on a watch's first start: what is there now is taken as done, without jobs. */
  async baseline(signal?: AbortSignal): Promise<number> {
    const { s3, plan, state } = this.#in;
    let recorded = 0;
    for await (const page of objectPagesUnder(s3, plan.bucket, plan.prefix, signal)) {
      await state.recordBaseline(
        page.map((o) => ({
          key: o.key,
          etag: o.etag,
          modifiedMs: o.lastModified?.getTime() ?? -1,
        })),
      );
      recorded += page.length;
    }
    return recorded;
  }

  /** Lists the prefix every `intervalMs` until `signal` aborts. */
  async pollListing(intervalMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#safely("listing", () => this.scan(signal));
      await sleep(intervalMs, undefined, { signal }).catch(() => {});
    }
  }

  /**
   * Takes S3 event notifications from an SQS queue until `signal` aborts. A message is deleted
   * once every object it names has its job (or had one); one naming a version that waits is
   * left to come back; a malformed one is counted, logged and deleted.
   */
  async consumeQueue(sqs: SQSClient, queueUrl: string, signal: AbortSignal): Promise<void> {
    const { log, metrics, plan } = this.#in;
    while (!signal.aborted) {
      await this.#safely("sqs", async () => {
        const received = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: 10,
            WaitTimeSeconds: 10,
          }),
          { abortSignal: signal },
        );
        for (const message of received.Messages ?? []) {
          const parsed = parseS3EventMessage(message.Body);
          let done = true;
          if (parsed.kind === "malformed") {
            metrics.malformed.inc();
            log.warn(
              { messageId: message.MessageId, reason: parsed.reason },
              "malformed message: deleted",
            );
          } else if (parsed.kind === "events") {
            for (const object of parsed.created) {
              if (object.bucket !== plan.bucket) continue;
              const offer = await this.offer(object.key, object.etag, object.timeMs);
              if (offer === "waiting" || offer === "held") done = false;
            }
            // A removal forgets the key's record unless a version newer than the removal has
            // been recorded since (events come in any order).
            const removed = parsed.removed.filter(
              (o) => o.bucket === plan.bucket && o.key.startsWith(plan.prefix) && o.timeMs >= 0,
            );
            for (const object of removed) await this.#forget([object.key], object.timeMs, "event");
          }
          if (done) {
            await sqs.send(
              new DeleteMessageCommand({
                QueueUrl: queueUrl,
                ReceiptHandle: message.ReceiptHandle,
              }),
            );
          }
        }
      });
    }
  }

  /** Runs one round; an error is counted and logged, and the next round tries again. */
  async #safely(kind: string, round: () => Promise<unknown>): Promise<void> {
    try {
      await round();
    } catch (error) {
      if ((error as Error).name === "AbortError") return;
      this.#in.metrics.errors.inc({ kind });
      this.#in.log.warn({ err: (error as Error).message }, `${kind} failed; trying again`);
      await sleep(1000);
    }
  }
}

/** Whether keys follow `previous` and each other in byte order (S3's and Redis's). */
function inByteOrder(previous: string | undefined, keys: readonly string[]): boolean {
  let last = previous === undefined ? undefined : Buffer.from(previous);
  for (const key of keys) {
    const bytes = Buffer.from(key);
    if (last && Buffer.compare(last, bytes) >= 0) return false;
    last = bytes;
  }
  return true;
}

/** Whether a record says the version is done with (its job added, or none to be made). */
function settled(record: WatchRecord, etag: string): boolean {
  return record.etag === etag && !record.pending && !record.legacy;
}
