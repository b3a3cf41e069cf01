import { describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/config.ts";
import { type Checkpoint, JobData } from "../../shared/job.ts";
import { judgeFactoryFor } from "../../worker/judge/judgeFactory.ts";
import { builtInTransforms } from "../../worker/judge/transforms/builtIns.ts";
import { runAttempt } from "../../worker/pipeline/attempt.ts";
import { firstCheckpoint } from "../../worker/source/firstAttempt.ts";
import type { OpenedBody } from "../../worker/source/sourceReader.ts";
import { MemoryS3 } from "../support/memoryS3.ts";
import { MemoryRedis, memoryStore } from "../support/memoryStore.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { type Crash, Steps } from "../support/steps.ts";

// The checkpoint protocol under every interleaving this model can make: a job's attempts run
// against an S3 and a Redis in memory, and the first attempt's process dies at each of its
// steps in turn (each S3 request and each Redis write: before it takes effect, or after, its
// answer lost), then again at a step of the next attempt; parts answer after a few ticks drawn
// from a seed, so they finish in varied orders and carries are taken with parts in flight.
// Whatever the crashes, the job's next attempts must finish it with both outputs exactly as a
// run that never crashed, and no upload left open. Parts are 64 KiB (S3 would want 5 MiB; this
// S3 does not), so a few hundred rows make several parts of each output.

const PART = 64 * 1024;
const config = loadConfig({});

interface Case {
  name: string;
  options?: Record<string, unknown>;
  schema?: unknown;
  listParts: boolean;
}

function jobOf(c: Case, source: string): JobData {
  const data = JobData.parse({
    source: { bucket: "in-bucket", key: source },
    destination: { bucket: "out-bucket", key: "out.csv" },
    schema: c.schema ?? peopleSchema,
    options: c.options ?? {},
  });
  // Below S3's minimum, which only the job contract enforces.
  return { ...data, options: { ...data.options, partSize: PART } };
}

interface World {
  s3: MemoryS3;
  redis: MemoryRedis;
}

/** One attempt, as the processor runs it; "crashed" when its process died. */
async function attempt(world: World, data: JobData, steps: Steps) {
  const s3 = world.s3.client(steps);
  let start: Checkpoint;
  let firstRead: OpenedBody | undefined;
  try {
    const saved = world.redis.checkpoint;
    if (saved) start = { ...saved, resumes: saved.resumes + 1 };
    else ({ checkpoint: start, body: firstRead } = await firstCheckpoint(s3, data, config));
    const store = memoryStore(world.redis, steps, start);
    if (saved) await store.save(start);
    return await runAttempt({
      data,
      s3,
      store,
      judges: judgeFactoryFor(data, builtInTransforms),
      partsInFlight: 2,
      reportProgress: async () => {},
      firstRead,
    });
  } catch (error) {
    firstRead?.destroy();
    // A dead process's other requests fail too, each its own way: its death is what counts.
    if (steps.dead) return "crashed" as const;
    throw error;
  }
}

function newWorld(c: Case, csv: Buffer): World {
  const world = { s3: new MemoryS3({ listParts: c.listParts }), redis: new MemoryRedis() };
  world.s3.objects.set("in.csv", { body: csv, etag: '"source-v1"' });
  return world;
}

const uniqueSchema = {
  ...peopleSchema,
  fields: peopleSchema.fields.map((f) =>
    f.name === "id" ? { ...f, constraints: { ...f.constraints, unique: true } } : f,
  ),
};

const cases: Case[] = [
  { name: "CSV output, a server with ListParts", listParts: true },
  { name: "CSV output, a server without ListParts", listParts: false },
  { name: "gzip output", options: { outputCompression: "gzip" }, listParts: true },
  { name: "unique ids (replayed on resume)", schema: uniqueSchema, listParts: false },
];

describe("a job's attempts under crashes at every step", () => {
  // Every third row invalid: both outputs have parts, and carries of both are taken.
  const base = peopleData({ rows: 2400, invalidEvery: 3, pad: 200 });
  // Ids from the start again at the end: duplicates that only a replayed index catches.
  const firstRows = base.csv.toString("utf8").split("\n").slice(1, 41).join("\n");
  const csv = Buffer.concat([base.csv, Buffer.from(`${firstRows}\n`)]);

  for (const c of cases) {
    it(c.name, async () => {
      const data = jobOf(c, "in.csv");
      const clean = newWorld(c, csv);
      const cleanSteps = new Steps(undefined, 1);
      const result = await attempt(clean, data, cleanSteps);
      expect(result).not.toBe("crashed");
      const expected = {
        output: clean.s3.objects.get("out.csv")?.body,
        rejects: clean.s3.objects.get("out.rejects.csv")?.body,
      };
      // Several parts of each output (gzip makes the output small: its members decide).
      if (!c.options?.outputCompression) expect(expected.output?.length).toBeGreaterThan(3 * PART);
      expect(expected.rejects?.length).toBeGreaterThan(3 * PART);
      let crashes = 0;
      for (let at = 1; at <= cleanSteps.count; at++) {
        for (const when of ["before", "after"] as const) {
          const world = newWorld(c, csv);
          // The first attempt dies at `at`; the second at a step drawn from `at`; then done.
          const plan: Array<Crash | undefined> = [
            { at, when },
            { at: 1 + ((at * 7) % 40), when },
          ];
          let outcome: Awaited<ReturnType<typeof attempt>> = "crashed";
          for (let n = 0; outcome === "crashed" && n < 5; n++) {
            const steps = new Steps(plan[n], at * 31 + n);
            outcome = await attempt(world, data, steps);
            if (steps.dead) crashes++;
          }
          const where = `crash ${when} step ${at}`;
          expect(outcome, where).not.toBe("crashed");
          expect(
            world.s3.objects.get("out.csv")?.body.equals(expected.output as Buffer),
            where,
          ).toBe(true);
          expect(
            world.s3.objects.get("out.rejects.csv")?.body.equals(expected.rejects as Buffer),
            where,
          ).toBe(true);
          if (outcome !== "crashed")
            expect(outcome.rows, where).toEqual(result === "crashed" ? undefined : result.rows);
          // Without ListMultipartUploads nothing could find an unrecorded upload; here it can.
          expect([...world.s3.uploads.keys()], `${where}: no upload left open`).toEqual([]);
        }
      }
      expect(crashes).toBeGreaterThan(cleanSteps.count);
    });
  }
});
