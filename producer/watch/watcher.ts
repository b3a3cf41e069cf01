import { setTimeout as sleep } from "node:timers/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import { DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { Queue } from "bullmq";
import { DestinationBusyError } from "../../shared/destinationClaims.ts";
import type { JobResult } from "../../shared/job.ts";
import type { Logger } from "../../shared/logger.ts";
import { objectPagesUnder } from "../bulkSources.ts";
import { enqueueTransform, InvalidJobError } from "../enqueue.ts";
import { parseS3EventMessage } from "./s3Events.ts";
import type { WatchMetrics } from "./watchMetrics.ts";
import { planJob, type WatchPlan } from "./watchPlan.ts";
import type { WatchState } from "./watchState.ts";

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
export type Offer = "added" | "known" | "waiting" | "outside" | "refused";

export class Watcher {
  readonly #in: WatchDeps;

  constructor(deps: WatchDeps) {
    this.#in = deps;
  }

  /** Makes the job for a version unless it has one (`known`, from the state, when read). */
  async offer(key: string, etag: string, known?: string | null): Promise<Offer> {
    const { plan, state, queue, log, metrics } = this.#in;
    if (!key.startsWith(plan.prefix) || key.endsWith("/")) return "outside";
    metrics.seen.inc();
    const recorded = known === undefined ? (await state.versions([key]))[0] : known;
    if (recorded === etag) return "known";
    let planned: ReturnType<typeof planJob>;
    try {
      planned = planJob(plan, key, etag);
      await enqueueTransform(planned.job, { queue, jobId: planned.jobId });
    } catch (error) {
      if (error instanceof DestinationBusyError) return "waiting";
      if (error instanceof InvalidJobError) {
        // A key no job can be made of (too long for the template, say): said once, then left.
        metrics.errors.inc({ kind: "invalid-job" });
        log.warn({ key, etag, err: (error as Error).message }, "no job can be made of this object");
        await state.recordEnqueued(key, etag);
        return "refused";
      }
      throw error;
    }
    await state.recordEnqueued(key, etag);
    metrics.added.inc();
    log.info({ jobId: planned.jobId, key, etag }, "job added");
    return "added";
  }

  /**
   * One pass over the prefix: a page of keys is checked against the state in one round trip.
   * Resolves to the versions still waiting, with the oldest one's time.
   */
  async scan(signal?: AbortSignal): Promise<{ listed: number; added: number; waiting: number }> {
    const { s3, plan, state, metrics } = this.#in;
    let listed = 0;
    let added = 0;
    let waiting = 0;
    let oldest: number | undefined;
    for await (const page of objectPagesUnder(s3, plan.bucket, plan.prefix, signal)) {
      listed += page.length;
      const versions = await state.versions(page.map((o) => o.key));
      for (const [i, object] of page.entries()) {
        if (versions[i] === object.etag) continue;
        const offer = await this.offer(object.key, object.etag, versions[i]);
        if (offer === "added") added++;
        if (offer === "waiting") {
          waiting++;
          const at = object.lastModified?.getTime() ?? Date.now();
          oldest = Math.min(oldest ?? at, at);
        }
      }
    }
    metrics.oldestWaiting.set(oldest === undefined ? 0 : (Date.now() - oldest) / 1000);
    return { listed, added, waiting };
  }

  /** --since now, on a watch's first start: what is there now is taken as done, without jobs. */
  async baseline(signal?: AbortSignal): Promise<number> {
    const { s3, plan, state } = this.#in;
    let recorded = 0;
    for await (const page of objectPagesUnder(s3, plan.bucket, plan.prefix, signal)) {
      await state.recordBaseline(page.map((o): [string, string] => [o.key, o.etag]));
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
          } else if (parsed.kind === "created") {
            for (const object of parsed.objects) {
              if (object.bucket !== plan.bucket) continue;
              const offer = await this.offer(object.key, object.etag);
              if (offer === "waiting") done = false;
            }
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
