import type { S3Client } from "@aws-sdk/client-s3";
import type { Redis } from "ioredis";
import type { Config } from "../../shared/config.ts";
import type { Checkpoint, JobData, JobResult } from "../../shared/job.ts";
import { ioredisScripts } from "../../shared/redisScripts.ts";
import {
  CheckpointStore,
  defineStoreScripts,
  type JobKeys,
} from "../../worker/checkpoint/checkpointStore.ts";
import { checkpointProblem } from "../../worker/checkpoint/checkpointTrust.ts";
import { checkpointOwnership } from "../../worker/checkpoint/outputRestart.ts";
import { judgeFactoryFor } from "../../worker/judge/judgeFactory.ts";
import { builtInTransforms } from "../../worker/judge/transforms/builtIns.ts";
import { runRestartingLostOutputs } from "../../worker/pipeline/restartingAttempt.ts";
import { firstCheckpoint } from "../../worker/source/firstAttempt.ts";
import type { OpenedBody } from "../../worker/source/sourceReader.ts";
import type { PartPool } from "../../worker/upload/partPool.ts";

// One attempt at a job as worker/runtime/processor.ts runs it, for tests that cut parts below
// S3's 5 MiB: the processor cannot run those jobs, since the job contract it checks first asks
// for 5 MiB parts. Its #begin and #completed are mirrored here around the run the processor
// itself uses (runRestartingLostOutputs), with the real checkpoint store, trust check and
// ownership rule; BullMQ's side (claims, progress, hand-back, final failure) is left out. A
// change to those steps of the processor belongs here too.

export interface AttemptDeps {
  s3: S3Client;
  redis: Redis;
  config: Config;
  keys: JobKeys;
  /** The job's data as the worker is handed it, its checkpoint included. */
  data: JobData;
  /** The worker's idle part buffers, shared by the jobs it runs. */
  partPool?: PartPool;
}

/** The processor's #begin and #completed around its run to completion. */
export async function runJobAttempt(deps: AttemptDeps): Promise<JobResult> {
  const { s3, redis, config, keys, data } = deps;
  const { checkpoint: saved, ...rest } = data;
  const problem = saved && checkpointProblem(data, saved, keys.jobKey);
  if (problem) throw new Error(`the job's checkpoint is not this job's own (${problem})`);
  const owned = saved
    ? await checkpointOwnership(redis, saved, keys.jobKey)
    : { checkpoint: undefined, restarted: [] };
  if ("foreign" in owned)
    throw new Error(`the job's checkpoint is not this job's own (${owned.foreign})`);
  const { checkpoint, restarted } = owned;
  let start: Checkpoint;
  let firstRead: OpenedBody | undefined;
  if (checkpoint) start = { ...checkpoint, resumes: checkpoint.resumes + 1 };
  else ({ checkpoint: start, body: firstRead } = await firstCheckpoint(s3, data, config));
  try {
    const scripts = ioredisScripts(redis);
    defineStoreScripts(scripts);
    const store = new CheckpointStore(scripts, redis, keys, rest, start);
    if (checkpoint) await store.save(start);
    const result = await runRestartingLostOutputs({
      data,
      s3,
      store,
      judges: judgeFactoryFor(data, builtInTransforms),
      firstRead,
      restarted,
      partsInFlight: config.PARTS_IN_FLIGHT,
      partPool: deps.partPool,
      reportProgress: async () => {},
    });
    await store.dropRecords().catch(() => {});
    return result;
  } finally {
    firstRead?.destroy();
  }
}
