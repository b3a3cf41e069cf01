import { describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/config.ts";
import { type Checkpoint, JobData, type JobResult, type OutputSide } from "../../shared/job.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { isS3Error } from "../../shared/s3Errors.ts";
import { recordKeys } from "../../worker/checkpoint/checkpointStore.ts";
import { runJobAttempt } from "../support/jobAttempt.ts";
import { type Failure, MemoryS3 } from "../support/memoryS3.ts";
import { MemoryRedis } from "../support/memoryStore.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { type Crash, Steps } from "../support/steps.ts";

// The checkpoint protocol under every interleaving this model can make: a job's attempts run
// against an S3 and a Redis in memory, and the first attempt's process dies at each of its
// steps in turn (each S3 request and each Redis command: before it takes effect, or after, its
// answer lost), then again at a step of the next attempt; parts answer after a few ticks drawn
// from a seed, so they finish in varied orders and carries are taken with parts in flight.
// Likewise a first attempt whose every part in turn fails (S3's 500, its process alive), and
// one whose output's upload is aborted after it died. Attempts run as the worker's processor
// runs them, with the real checkpoint store (test/support/jobAttempt.ts). Whatever befalls
// them, the job's next attempts must finish it with both outputs exactly as a run that never
// crashed, no upload left open and no record left in Redis; and along the way the protocol
// must hold: every attempt reads from its checkpoint's resume point, resume marks only move
// forward, re-uploads are bounded, and no output starts over unless what it named was lost. Parts are 64 KiB (S3 would want 5 MiB; this S3 does not),
// so a few hundred rows make several parts of each output.

const PART = 64 * 1024;
const config = loadConfig({});
const SIDES: readonly OutputSide[] = ["output", "rejects"];
const queue = queueKeys(config.QUEUE_PREFIX, config.QUEUE_NAME);
const JOB_ID = "42";
const jobKey = queue.job(JOB_ID);
const lockKey = queue.lock(JOB_ID);
const REGISTRY = queue.registry;
const records = recordKeys(jobKey);
/** What a crash may cost each output: "re-uploaded bytes are at most the parts that were in
 * flight" (README, "What a crash costs"). */
const LOST_PARTS = config.PARTS_IN_FLIGHT;

interface Case {
  name: string;
  options?: Record<string, unknown>;
  schema?: unknown;
  listParts: boolean;
  /** Every how many rows one is invalid: 3 gives the report parts of its own. */
  invalidEvery: number;
  /** The reject report is shorter than a part. */
  shortReport?: boolean;
}

function jobOf(c: Case): JobData {
  const data = JobData.parse({
    source: { bucket: "in-bucket", key: "in.csv" },
    destination: { bucket: "out-bucket", key: "out.csv" },
    schema: c.schema ?? peopleSchema,
    options: c.options ?? {},
  });
  // Below S3's minimum, which only the job contract enforces.
  return { ...data, options: { ...data.options, partSize: PART } };
}

function sourceOf(c: Case): Buffer {
  const base = peopleData({ rows: 2400, invalidEvery: c.invalidEvery, pad: 200 });
  // Ids from the start again at the end: duplicates that only a replayed index catches.
  const firstRows = base.csv.toString("utf8").split("\n").slice(1, 41).join("\n");
  return Buffer.concat([base.csv, Buffer.from(`${firstRows}\n`)]);
}

/** A read of the source: its byte range, and the resume point of the checkpoint saved then. */
interface Read {
  from: number;
  /** Where the read ends (exclusive). */
  to: number;
  /** The saved checkpoint's resume point (the earlier of its marks), 0 with none. */
  resumePoint: number;
}

/** The S3 and Redis one job runs against, and what its attempts asked of them. */
class World {
  readonly redis = new MemoryRedis();
  readonly s3: MemoryS3;
  readonly reads: Read[] = [];
  readonly sourceSize: number;
  /** UploadPart requests that reached S3, over every attempt. */
  partsSent = 0;
  /** CreateMultipartUpload requests for the reject report. */
  reportUploads = 0;
  /** Outputs whose upload was lost between attempts: they must start over. */
  lost: OutputSide[] = [];
  /** The output's upload is aborted as its part with this number is sent (in any attempt). */
  abortOutputAtPart: number | undefined;
  /** Parts of the output sent (each try counts). */
  outputParts = 0;

  constructor(c: Case, csv: Buffer, data: JobData) {
    this.sourceSize = csv.length;
    const observe = (command: string, input: Readonly<Record<string, unknown>>) =>
      this.#observe(command, input);
    this.s3 = new MemoryS3({ listParts: c.listParts, observe });
    this.s3.objects.set("in.csv", { body: csv, etag: '"source-v1"' });
    this.redis.addJob(jobKey, data);
  }

  #observe(command: string, input: Readonly<Record<string, unknown>>): void {
    if (command === "UploadPartCommand") this.partsSent++;
    if (command === "UploadPartCommand" && input.Key === "out.csv") {
      // Aborted under the running attempt (a lifecycle rule, by hand): this part finds it gone.
      if (++this.outputParts === this.abortOutputAtPart) {
        this.s3.uploads.delete(String(input.UploadId));
        this.lost = ["output"];
      }
    }
    if (command === "CreateMultipartUploadCommand" && input.Key === "out.rejects.csv")
      this.reportUploads++;
    if (command !== "GetObjectCommand") return;
    const [, from = "0", last] = /^bytes=(\d+)-(\d+)$/.exec(String(input.Range ?? "")) ?? [];
    const saved = this.redis.checkpoint(jobKey);
    this.reads.push({
      from: Number(from),
      to: last === undefined ? this.sourceSize : Number(last) + 1,
      resumePoint: saved ? resumePoint(saved) : 0,
    });
  }
}

/** Where a resumed attempt reads from: the earlier of the two outputs' marks. */
function resumePoint(checkpoint: Checkpoint): number {
  return Math.min(checkpoint.output.mark.offset, checkpoint.rejects.mark.offset);
}

type Outcome = JobResult | "crashed" | "failed";

/** One attempt, by a new worker process; "crashed" when it died, "failed" when S3 failed it. */
async function attempt(world: World, steps: Steps, failure: Failure | undefined, n: number) {
  const token = `worker-${n}`;
  world.redis.lock(lockKey, token);
  try {
    const result = await runJobAttempt({
      s3: world.s3.client(steps, failure),
      redis: world.redis.client(steps),
      config,
      keys: { jobId: JOB_ID, jobKey, lockKey, token, registry: REGISTRY },
      data: world.redis.jobData(jobKey),
    });
    // Its process may die after the job's work, while it drops the job's records.
    return steps.dead ? "crashed" : result;
  } catch (error) {
    // A dead process's other requests fail too, each its own way: its death is what counts.
    if (steps.dead) return "crashed";
    if (failure && isS3Error(error, "InternalError")) return "failed";
    throw error;
  }
}

/** What befalls each attempt of a job; after five, it must have finished. */
interface Scenario {
  where: string;
  faults: Array<{ crash?: Crash; failure?: Failure }>;
  seed: number;
  /** After the first attempt, before the next. */
  between?(world: World): void;
  /** The output's upload is aborted as its part with this number is sent. */
  abortOutputAtPart?: number;
}

/** A job the attempts finished, and how many attempts before the last were cut short. */
interface Done {
  world: World;
  result: JobResult;
  interrupted: number;
}

async function run(c: Case, csv: Buffer, data: JobData, scenario: Scenario): Promise<Done> {
  const world = new World(c, csv, data);
  world.abortOutputAtPart = scenario.abortOutputAtPart;
  for (let n = 0; n < 5; n++) {
    if (n === 1) scenario.between?.(world);
    const fault = scenario.faults[n];
    const steps = new Steps(fault?.crash, scenario.seed + n);
    const outcome: Outcome = await attempt(world, steps, fault?.failure, n);
    if (outcome !== "crashed" && outcome !== "failed") {
      return { world, result: outcome, interrupted: n };
    }
    expectCarriesAccounted(world, `${scenario.where}, attempt ${n + 1}`);
  }
  throw new Error(`${scenario.where}: five attempts did not finish the job`);
}

/**
 * Every carry key in Redis is one the saved checkpoint names or one listed for the job, which
 * completion (or a final failure) deletes: none can outlive the job.
 */
function expectCarriesAccounted(world: World, where: string): void {
  const listed = world.redis.members(records.carries);
  const saved = world.redis.checkpoint(jobKey);
  const named = SIDES.map((side) => saved?.[side].carry?.key);
  const carries = [...world.redis.values.keys()].filter((k) => k.startsWith(records.carryPrefix));
  const leaked = carries.filter((key) => !named.includes(key) && !listed.has(key));
  expect(leaked, `${where}: carry keys neither named nor listed`).toEqual([]);
}

/** An output started over: what the processor saves for an output whose upload was lost. */
function startedOver(state: Checkpoint[OutputSide]): boolean {
  return !state.uploadId && state.parts.length === 0 && !state.carry && state.mark.offset === 0;
}

/** Each output's resume mark, checkpoint after checkpoint, moves only forward (or starts over). */
function expectMarksForward(world: World, mayRestart: readonly OutputSide[], where: string) {
  const saved = world.redis.saved;
  for (const side of SIDES) {
    for (let i = 1; i < saved.length; i++) {
      const [before, after] = [saved[i - 1]?.[side], saved[i]?.[side]];
      if (!before || !after || (mayRestart.includes(side) && startedOver(after))) continue;
      expect(
        after.mark.offset,
        `${where}: ${side}'s mark in checkpoint ${i + 1}`,
      ).toBeGreaterThanOrEqual(before.mark.offset);
    }
  }
}

interface Clean {
  output: Buffer;
  rejects: Buffer;
  rows: JobResult["rows"];
  steps: number;
  partsSent: number;
  outputParts: number;
}

function expectJob(clean: Clean, done: Done, where: string): void {
  const { world, result, interrupted } = done;
  expect(world.s3.objects.get("out.csv")?.body.equals(clean.output), where).toBe(true);
  expect(world.s3.objects.get("out.rejects.csv")?.body.equals(clean.rejects), where).toBe(true);
  expect(result.rows, where).toEqual(clean.rows);
  // Without ListMultipartUploads nothing could find an unrecorded upload; here it can.
  expect([...world.s3.uploads.keys()], `${where}: no upload left open`).toEqual([]);
  // Completion drops every record of the job (carried text, its list, the upload record).
  expect([...world.redis.values.keys()].sort(), `${where}: records left`).toEqual(
    [jobKey, lockKey].sort(),
  );
  const restarted = result.restarted.map((r) => r.output);
  expect(restarted, `${where}: outputs started over`).toEqual(world.lost);
  expectMarksForward(world, restarted, where);
  // Reading resumes at the checkpoint's resume point; a unique index first replays what lies
  // before it.
  for (const { from, to, resumePoint: at } of world.reads) {
    const resumed = from === at && to === world.sourceSize;
    const replay = from === 0 && to === at && at > 0;
    expect(resumed || replay, `${where}: read [${from}, ${to}) at resume point ${at}`).toBe(true);
  }
  // Re-uploads are at most the parts on their way at each crash (an output started over
  // uploads all of its parts again).
  if (world.lost.length === 0) {
    const bound = clean.partsSent + interrupted * SIDES.length * LOST_PARTS;
    expect(world.partsSent, `${where}: parts uploaded`).toBeLessThanOrEqual(bound);
  }
}

/** The first attempt dies at `at`, before or after; the second at a step drawn from `at`. */
function crashes(steps: number): Scenario[] {
  return Array.from({ length: steps }, (_, i) => i + 1).flatMap((at) =>
    (["before", "after"] as const).map((when) => ({
      where: `crash ${when} step ${at}`,
      faults: [{ crash: { at, when } }, { crash: { at: 1 + ((at * 7) % 40), when } }],
      seed: at * 31,
    })),
  );
}

/** The first attempt's `nth` part fails (S3's 500, the SDK's retries spent); its process lives. */
function partFailures(parts: number): Scenario[] {
  return Array.from({ length: parts }, (_, i) => ({
    where: `part request ${i + 1} failing`,
    faults: [{ failure: { command: "UploadPartCommand", nth: i + 1 } }],
    seed: (i + 1) * 17,
  }));
}

/**
 * The first attempt dies at `at` (its request taken), and an upload its checkpoint names is
 * aborted before the next (a lifecycle rule, by hand): that output starts over, the other keeps
 * its own resume point. The output's upload and the report's in turn, either when the other has
 * none open (a gzip output here is one PUT, a short report too).
 */
function lostUploads(steps: number): Scenario[] {
  return Array.from({ length: steps }, (_, i) => ({
    where: `crash after step ${i + 1}, then an upload aborted`,
    faults: [{ crash: { at: i + 1, when: "after" as const } }],
    seed: (i + 1) * 13,
    between: (world: World) => {
      const saved = world.redis.checkpoint(jobKey);
      const open = (side: OutputSide) => world.s3.uploads.has(saved?.[side].uploadId ?? "");
      const side = (i % 2 === 0 ? SIDES : [...SIDES].reverse()).find(open);
      if (!side) return;
      world.s3.uploads.delete(saved?.[side].uploadId ?? "");
      world.lost = [side];
    },
  }));
}

/**
 * The output's upload is aborted while an attempt runs, as its part `part` goes up: the attempt
 * starts the output over from the source's start within itself, with judges afresh (a unique
 * index kept from the first run would take every row read again for a duplicate).
 */
function uploadsLostMidRun(parts: number): Scenario[] {
  return Array.from({ length: parts }, (_, i) => ({
    where: `the output's upload aborted at its part ${i + 1}`,
    faults: [],
    seed: (i + 1) * 19,
    abortOutputAtPart: i + 1,
  }));
}

async function cleanRun(c: Case, csv: Buffer, data: JobData): Promise<Clean> {
  const world = new World(c, csv, data);
  const steps = new Steps(undefined, 1);
  const result = await attempt(world, steps, undefined, 0);
  if (result === "crashed" || result === "failed") throw new Error("the uncrashed run failed");
  expect(result.restarted).toEqual([]);
  const output = world.s3.objects.get("out.csv")?.body ?? Buffer.alloc(0);
  const rejects = world.s3.objects.get("out.rejects.csv")?.body ?? Buffer.alloc(0);
  const { partsSent, outputParts } = world;
  return { output, rejects, rows: result.rows, steps: steps.count, partsSent, outputParts };
}

const uniqueSchema = {
  ...peopleSchema,
  fields: peopleSchema.fields.map((f) =>
    f.name === "id" ? { ...f, constraints: { ...f.constraints, unique: true } } : f,
  ),
};

// Every third row invalid: both outputs have parts, and carries of both are taken.
const cases: Case[] = [
  { name: "CSV output, a server with ListParts", listParts: true, invalidEvery: 3 },
  { name: "CSV output, a server without ListParts", listParts: false, invalidEvery: 3 },
  { name: "gzip output", options: { outputCompression: "gzip" }, listParts: true, invalidEvery: 3 },
  {
    name: "unique ids (replayed on resume)",
    schema: uniqueSchema,
    listParts: false,
    invalidEvery: 3,
  },
  // Every 50th: a report shorter than a part, which only ever rides in the checkpoint as carried
  // text and is finished by one PUT, in whichever attempt finishes the job.
  { name: "a short reject report", listParts: true, invalidEvery: 50, shortReport: true },
];

/**
 * A short report never holds the resume point back: from the first checkpoint that names a
 * part of the output on, a resumed attempt reads from past the source's start.
 */
function expectShortReportCarried(world: World, where: string): void {
  expect(world.reportUploads, `${where}: the report's multipart uploads`).toBe(0);
  for (const [i, saved] of world.redis.saved.entries()) {
    if (saved.output.parts.length === 0) continue;
    expect(resumePoint(saved), `${where}: resume point of checkpoint ${i + 1}`).toBeGreaterThan(0);
  }
}

describe("a job's attempts under crashes at every step", () => {
  for (const c of cases) {
    it(c.name, async () => {
      const [csv, data] = [sourceOf(c), jobOf(c)];
      const clean = await cleanRun(c, csv, data);
      // Several parts of each output (gzip makes the output small: its members decide).
      if (!c.options?.outputCompression) expect(clean.output.length).toBeGreaterThan(3 * PART);
      if (c.shortReport) expect(clean.rejects.length).toBeLessThan(PART);
      else expect(clean.rejects.length).toBeGreaterThan(3 * PART);
      const scenarios = [
        ...crashes(clean.steps),
        ...partFailures(clean.partsSent),
        ...lostUploads(clean.steps),
        // Up to the third part, of those the output has (gzip output may have fewer).
        ...uploadsLostMidRun(Math.min(3, clean.outputParts)),
      ];
      let [interrupted, restarts] = [0, 0];
      for (const scenario of scenarios) {
        const done = await run(c, csv, data, scenario);
        expectJob(clean, done, scenario.where);
        if (c.shortReport) expectShortReportCarried(done.world, scenario.where);
        if (scenario.abortOutputAtPart) {
          expect(done.world.lost, `${scenario.where}: the abort struck`).toEqual(["output"]);
        }
        interrupted += done.interrupted;
        restarts += done.result.restarted.length;
      }
      // The faults did strike: most first attempts and many second ones were cut short, and
      // outputs whose upload was lost started over while the other kept its resume point.
      expect(interrupted).toBeGreaterThan(scenarios.length);
      expect(restarts).toBeGreaterThan(0);
    });
  }
});
