import type { Cluster, Redis } from "ioredis";
import {
  type Checkpoint,
  type JobResult,
  OUTPUT_SIDES,
  type OutputCheckpoint,
  type OutputSide,
} from "../../shared/job.ts";
import { startMark } from "../source/firstAttempt.ts";
import { type CheckpointStore, recordedUploads } from "./checkpointStore.ts";

// When an output cannot go on from its checkpoint (nothing says its upload is the job's own, or
// S3 lost the upload), that output alone starts over where the job's reading starts (the
// source's first byte, or a shard's first row); the other keeps its resume point. The processor
// and the interleaving tests decide it here alike.

export type Restart = JobResult["restarted"][number];

/** What a saved checkpoint allows: go on from it (some outputs started over), or refuse it. */
export type CheckpointOwnership =
  | { checkpoint: Checkpoint; restarted: Restart[] }
  | { foreign: string };

/**
 * An output started over: no upload, no parts, nothing carried, from where the job's reading
 * starts: the source's first byte, or a split job's shard's first row (its rows and lines are
 * counted from there).
 */
export function restartedOutput(state: OutputCheckpoint, checkpoint: Checkpoint): OutputCheckpoint {
  const mark = { ...startMark(), offset: checkpoint.shardStart ?? 0 };
  return { bucket: state.bucket, key: state.key, parts: [], bytes: 0, mark };
}

/**
 * A checkpoint may name only uploads this job's workers recorded creating, each for the output
 * it names it for. With no record at all (the checkpoint is older than records, or its record
 * expired a week after the job's last checkpoint), nothing says whose the uploads are: those
 * outputs start over, and their uploads are left to the bucket's lifecycle rule.
 */
export async function checkpointOwnership(
  redis: Redis | Cluster,
  checkpoint: Checkpoint,
  jobKey: string,
): Promise<CheckpointOwnership> {
  // A completed output's upload is done with: nothing is sent to it again.
  const named = OUTPUT_SIDES.filter(
    (side) => !checkpoint[side].completed && checkpoint[side].uploadId,
  );
  const own = named.length > 0 ? await recordedUploads(redis, jobKey) : new Map();
  if (named.length === 0 || own.size > 0) {
    const foreign = named.find((side) => own.get(checkpoint[side].uploadId ?? "") !== side);
    if (foreign) {
      const upload = checkpoint[foreign].uploadId;
      return {
        foreign: `its ${foreign} names upload ${upload}, which this job did not create for it`,
      };
    }
    return { checkpoint, restarted: [] };
  }
  let started = checkpoint;
  const restarted = named.map((side) => {
    started = { ...started, [side]: restartedOutput(started[side], checkpoint) };
    const reason = `the job keeps no record of upload ${checkpoint[side].uploadId} (an older s3csv wrote the checkpoint, or the record expired): left to the bucket's lifecycle rule`;
    return { output: side, reason };
  });
  return { checkpoint: started, restarted };
}

/** Which output of the checkpoint an S3 location is. */
export function sideOf(
  checkpoint: Checkpoint,
  location: { bucket: string; key: string },
): OutputSide {
  const { bucket, key } = checkpoint.output;
  return location.bucket === bucket && location.key === key ? "output" : "rejects";
}

/** Saves the output whose upload S3 lost as started over, and deletes the text it carried. */
export async function restartLostOutput(store: CheckpointStore, side: OutputSide): Promise<void> {
  const lost = store.current[side];
  await store.save({ ...store.current, [side]: restartedOutput(lost, store.current) });
  if (lost.carry) await store.deleteCarry(lost.carry.key);
}
