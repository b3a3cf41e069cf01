import { setTimeout as sleep } from "node:timers/promises";
import { HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { Queue } from "bullmq";
import { DestinationBusyError } from "../../shared/destinationClaims.ts";
import { contractNeeded, type JobResult } from "../../shared/job.ts";
import type { Logger } from "../../shared/logger.ts";
import { httpStatus } from "../../shared/s3Errors.ts";
import { workerCensus, workersBelow } from "../../shared/workerCensus.ts";
import { objectPagesUnder } from "../bulkSources.ts";
import { enqueueTransform, InvalidJobError } from "../enqueue.ts";
import { parseS3EventMessage } from "./s3Events.ts";
import type { WatchMetrics } from "./watchMetrics.ts";
import { outputOf, type PlannedJob, planJob, type WatchPlan } from "./watchPlan.ts";
import type { WatchRecord, WatchState } from "./watchState.ts";

// The watch itself: every object version under the prefix becomes one job. Versions come from
// listing the prefix (every interval) or from S3 event notifications on an SQS queue; both go
// through `offer`. A listing or an event only says that a key may have a new version: what the
// version is, S3 says (HeadObject), so a late event, a duplicate or a stale listing page offers
// the object as it is now, and a version already recorded makes nothing. A version whose
// destination another job still writes (the previous version's) waits: it is offered again on
// the next listing, or its message comes back, until that job is done. It is never dropped.

export interface WatchDeps {
  s3: S3Client;
  queue: Queue<unknown, JobResult>;
  state: WatchState;
  plan: WatchPlan;
  log: Logger;
  metrics: WatchMetrics;
}

/**
 * What became of an object version offered to the watch. `error`: S3 could not say what the
 * object is (it is offered again on the next sighting).
 */
export type Offer =
  | "added"
  | "known"
  | "waiting"
  | "held"
  | "outside"
  | "refused"
  | "gone"
  | "error";

/** What a listing or an event says of a key's version. */
export interface Sighting {
  /** The ETag listed, or "" when nothing is known (an event's removal, a key not listed). */
  etag: string;
  /** A listing's LastModified (ms); undefined for events. */
  listedMs: number | undefined;
}

/** The job contract a watch job needs (it is pinned to its version: source.etag). */
const WATCH_CONTRACT = contractNeeded({ source: { etag: "" } });

/** How long a census of the queue's workers is trusted before it is taken again. */
const CENSUS_MS = 5000;

/** How many keys of a listing page are offered at once (each may ask S3 and add a job). */
const OFFERS_AT_ONCE = 8;

export class Watcher {
  readonly #in: WatchDeps;
  /** Why jobs are held back (older workers serve the queue), and when that was last asked. */
  #held: { reason: string | undefined; at: number } = { reason: undefined, at: -CENSUS_MS };
  #saidOutOfOrder = false;

  constructor(deps: WatchDeps) {
    this.#in = deps;
  }

  /**
   * Makes the job for a key's current version unless it has one. `seen` is what a listing or
   * an event says of it; `known`, the key's record when already read (before asking S3).
   */
  async offer(key: string, seen: Sighting, known?: WatchRecord | null): Promise<Offer> {
    const { plan, state, queue, log, metrics } = this.#in;
    if (!key.startsWith(plan.prefix) || key.endsWith("/")) return "outside";
    metrics.seen.inc();
    const recorded = known === undefined ? ((await state.records([key]))[0] ?? null) : known;
    if (recorded && listedAs(recorded, seen)) return "known";
    if (await this.#heldBack()) return "held";
    let current: { etag: string; modified: number } | undefined;
    try {
      current = await this.#head(key);
    } catch (error) {
      metrics.errors.inc({ kind: "head" });
      log.warn({ key, err: (error as Error).message }, "HeadObject failed: offered again later");
      return "error";
    }
    if (!current) {
      await this.#forgetGone(key, recorded);
      return "gone";
    }
    // The listing's time for this version, kept so that the next listing needs no HeadObject.
    const listed =
      seen.etag === current.etag && seen.listedMs !== undefined ? seconds(seen.listedMs) : -1;
    const version: WatchRecord = { ...current, listed };
    if (recorded && sameObjectVersion(recorded, current)) {
      if (recorded.modified < 0 || (listed >= 0 && listed !== recorded.listed)) {
        const listedNow = listed >= 0 ? listed : recorded.listed;
        await state.record(key, { ...version, listed: listedNow }, recorded);
      }
      return "known";
    }
    let output = "";
    let invalid: string | undefined;
    try {
      output = outputOf(plan, key);
    } catch (error) {
      if (!(error instanceof InvalidJobError)) throw error;
      invalid = error.message;
    }
    const owner = output === "" ? undefined : await this.#ownOutput(key, output, version, recorded);
    if (owner !== undefined) {
      // Recorded as refused by the same step that found the owner (see WatchState.ownOutput).
      metrics.errors.inc({ kind: "output-clash" });
      log.warn(
        { key, etag: current.etag, output, owner },
        `s3://${output} is already the output of ${owner}: this object is left alone (use {path} or {key} in --dest-template to keep their outputs apart)`,
      );
      return "refused";
    }
    let planned: PlannedJob | undefined;
    try {
      if (invalid !== undefined) throw new InvalidJobError(invalid);
      planned = planJob(plan, key, current);
      await enqueueTransform(planned.job, { queue, jobId: planned.jobId });
    } catch (error) {
      if (error instanceof DestinationBusyError) return "waiting";
      if (!(error instanceof InvalidJobError)) throw error;
      // A key no job can be made of (too long for the template, say): said once, then left.
      metrics.errors.inc({ kind: "invalid-job" });
      log.warn(
        { key, etag: current.etag, err: error.message },
        "no job can be made of this object",
      );
      await this.#record(key, version, recorded);
      return "refused";
    }
    await this.#record(key, version, recorded);
    metrics.added.inc();
    log.info({ jobId: planned.jobId, key, etag: current.etag }, "job added");
    return "added";
  }

  /**
   * Records the version whose job was made (or refused), against the record read before
   * asking S3. Another watcher may have written the key's record since: read it again, and
   * if it is not this version, ask S3 again; record this version while S3 still says it is
   * the object's (a newer one is the next sighting's to make).
   */
  async #record(key: string, version: WatchRecord, read: WatchRecord | null): Promise<void> {
    const { state } = this.#in;
    let last = read;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await state.record(key, version, last)) return;
      last = (await state.records([key]))[0] ?? null;
      if (last && isVersion(last, version)) return;
      // S3 unsure (an error) leaves it to the next sighting, which makes the same job id.
      const now = await this.#head(key).catch(() => undefined);
      if (!now || !isVersion(now, version)) return;
    }
  }

  /**
   * Takes the output for the key, or names the key that holds it. A holder whose object is
   * gone (a file moved from one key to another, its removal not yet seen) is forgotten first.
   */
  async #ownOutput(
    key: string,
    output: string,
    version: WatchRecord,
    read: WatchRecord | null,
  ): Promise<string | undefined> {
    const { state } = this.#in;
    const owner = await state.ownOutput(key, output, version, read);
    if (owner === undefined) return undefined;
    // The holder's record is read before S3 is asked, so that forgetting it cannot drop a
    // version recorded after its object was made again. An owner S3 cannot say anything of
    // (an error) is taken to be there.
    const held = (await state.records([owner]))[0] ?? null;
    if (await this.#head(owner).catch(() => true)) return owner;
    await this.#forgetGone(owner, held);
    // Forgetting the holder dropped this key's refusal with the other waiting keys' records.
    return state.ownOutput(key, output, version, null);
  }

  /** The object's version now, or undefined when there is none (deleted). */
  async #head(key: string): Promise<{ etag: string; modified: number } | undefined> {
    const { s3, plan } = this.#in;
    try {
      const head = await s3.send(new HeadObjectCommand({ Bucket: plan.bucket, Key: key }));
      return { etag: head.ETag ?? "", modified: seconds(head.LastModified?.getTime() ?? 0) };
    } catch (error) {
      if (httpStatus(error) === 404) return undefined;
      throw error;
    }
  }

  /** Forgets a key whose object is gone, unless a version was recorded since `read`. */
  async #forgetGone(key: string, read: WatchRecord | null): Promise<void> {
    const { plan, state, metrics } = this.#in;
    let output = "";
    try {
      output = outputOf(plan, key);
    } catch {
      // No output: none to let go of.
    }
    if (await state.forget(key, read, output)) metrics.forgotten.inc();
  }

  /**
   * One pass over the prefix: a page of keys is checked against the state in one round trip,
   * and keys the watch knows but no longer listed are looked up in S3 (gone: forgotten).
   */
  async scan(signal?: AbortSignal): Promise<{ listed: number; added: number; waiting: number }> {
    const { s3, plan, state, metrics } = this.#in;
    let listed = 0;
    let added = 0;
    let waiting = 0;
    let oldest: number | undefined;
    // Keys not listed are found by ranges of keys, so that needs the listing in the byte order
    // Redis keeps keys in (S3's order); out of that order, none are looked for.
    let previous: string | undefined;
    let ordered = true;
    for await (const page of objectPagesUnder(s3, plan.bucket, plan.prefix, signal)) {
      listed += page.length;
      const records = await state.records(page.map((o) => o.key));
      // Listed keys the key order holds after their offers: those with a record, and those
      // whose offer recorded one or took an output.
      let inOrder = 0;
      const upgrades: Array<[string, WatchRecord, WatchRecord]> = [];
      const offers = page.flatMap((object, i) => {
        const record = records[i] ?? null;
        const seen = { etag: object.etag, listedMs: object.lastModified?.getTime() };
        if (record && listedAs(record, seen)) {
          inOrder++;
          // A record of 0.3.0 (its ETag alone) takes the listed time, so that an identical
          // upload later (another time) is seen.
          if (record.listed < 0 && seen.listedMs !== undefined)
            upgrades.push([object.key, { ...record, listed: seconds(seen.listedMs) }, record]);
          return [];
        }
        return [{ object, record, seen }];
      });
      for (const [key, version, read] of upgrades) await state.record(key, version, read);
      await eachAtOnce(offers, OFFERS_AT_ONCE, async ({ object, record, seen }) => {
        const offer = await this.offer(object.key, seen, record);
        if (offer === "added") added++;
        const kept = record !== null && offer !== "gone";
        if (kept || offer === "added" || offer === "refused" || offer === "waiting") inOrder++;
        if (offer === "waiting" || offer === "held" || offer === "error") {
          waiting++;
          const at = seen.listedMs ?? Date.now();
          oldest = Math.min(oldest ?? at, at);
        }
      });
      const keys = page.map((o) => o.key);
      ordered &&= this.#inByteOrder(previous, keys);
      if (ordered && keys.length > 0) {
        const last = keys[keys.length - 1];
        await this.#checkUnlisted(previous, last, keys, inOrder);
        previous = last;
      }
    }
    if (ordered) await this.#checkUnlisted(previous, undefined, [], 0);
    metrics.oldestWaiting.set(oldest === undefined ? 0 : (Date.now() - oldest) / 1000);
    return { listed, added, waiting };
  }

  /**
   * Offers the keys the watch knows in (after, upTo] that the listing did not show, `inOrder`
   * of the listed ones being known: S3 says whether each is gone (forgotten) or made again.
   */
  async #checkUnlisted(
    after: string | undefined,
    upTo: string | undefined,
    listed: readonly string[],
    inOrder: number,
  ): Promise<void> {
    const { state } = this.#in;
    if ((await state.countBetween(after, upTo)) <= inOrder) return;
    const shown = new Set(listed);
    for await (const batch of state.keysBetween(after, upTo)) {
      const unlisted = batch.filter((key) => !shown.has(key));
      const records = await state.records(unlisted);
      await eachAtOnce([...unlisted.entries()], OFFERS_AT_ONCE, async ([i, key]) => {
        await this.offer(key, { etag: "", listedMs: undefined }, records[i] ?? null);
      });
    }
  }

  /** Whether keys follow `previous` and each other in byte order; said once when not. */
  #inByteOrder(previous: string | undefined, keys: readonly string[]): boolean {
    if (inByteOrder(previous, keys)) return true;
    if (!this.#saidOutOfOrder) {
      this.#saidOutOfOrder = true;
      this.#in.metrics.errors.inc({ kind: "listing-order" });
      this.#in.log.warn(
        "this S3 lists keys out of byte order: records of deleted objects are not looked for, and stay in Redis",
      );
    }
    return false;
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
        // Known by the listing alone: S3 is asked only if the listing shows it otherwise.
        page.map((o) => ({
          key: o.key,
          etag: o.etag,
          modified: -1,
          listed: o.lastModified ? seconds(o.lastModified.getTime()) : -1,
        })),
      );
      recorded += page.length;
    }
    return recorded;
  }

  /** One listing round; an error is counted and logged (the next sighting tries again). */
  async scanOnce(signal: AbortSignal): Promise<void> {
    await this.#safely("listing", () => this.scan(signal));
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
   * once every object it names has its job (or had one, or is gone); one naming a version that
   * waits is left to come back; a malformed one is counted, logged and deleted. While older
   * workers hold jobs back, no message is taken (they would come back until they expire), and
   * once they are gone, the prefix is listed for what arrived meanwhile.
   */
  async consumeQueue(sqs: SQSClient, queueUrl: string, signal: AbortSignal): Promise<void> {
    const { log, metrics, plan } = this.#in;
    let wasHeld = false;
    while (!signal.aborted) {
      await this.#safely("sqs", async () => {
        if (await this.#heldBack()) {
          wasHeld = true;
          await sleep(CENSUS_MS, undefined, { signal });
          return;
        }
        if (wasHeld) {
          await this.scan(signal);
          wasHeld = false;
        }
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
            // A removal is offered too: the object may be gone (its record is forgotten) or
            // made again since (a new version).
            const named = parsed.objects.filter((o) => o.bucket === plan.bucket);
            for (const object of named) {
              const offer = await this.offer(object.key, { etag: "", listedMs: undefined });
              if (offer === "waiting" || offer === "held" || offer === "error") done = false;
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

/** Seconds since the epoch, as S3's LastModified is compared: whole seconds. */
function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/**
 * Whether a listing shows the recorded version, without asking S3: the same ETag with the
 * listed time recorded for it (a record of 0.3.0 has no time: its ETag alone). Anything else
 * is asked of S3, which decides.
 */
function listedAs(record: WatchRecord, seen: Sighting): boolean {
  if (record.etag !== seen.etag || seen.etag === "") return false;
  if (record.modified < 0 && record.listed < 0) return true;
  return seen.listedMs !== undefined && seconds(seen.listedMs) === record.listed;
}

/**
 * Whether a record is of the object's version as S3 gives it: the same ETag and LastModified.
 * A record known by its listing alone (--since now) is when its listed time is within a second
 * of it (listings and HeadObject may round differently); a record of 0.3.0, by its ETag alone.
 */
function sameObjectVersion(record: WatchRecord, current: { etag: string; modified: number }) {
  if (record.etag !== current.etag) return false;
  if (record.modified >= 0) return record.modified === current.modified;
  return record.listed < 0 || Math.abs(record.listed - current.modified) <= 1;
}

/** Exactly the same version: ETag and LastModified. */
function isVersion(a: { etag: string; modified: number }, b: { etag: string; modified: number }) {
  return a.etag === b.etag && a.modified === b.modified;
}

/** Runs `work` on every item, at most `limit` at a time. */
async function eachAtOnce<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
