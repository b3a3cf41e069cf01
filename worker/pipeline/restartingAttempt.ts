import type { JobResult } from "../../shared/job.ts";
import type { CheckpointStore } from "../checkpoint/checkpointStore.ts";
import { type Restart, restartLostOutput, sideOf } from "../checkpoint/outputRestart.ts";
import { OutputLostError } from "../errors.ts";
import { type AttemptInput, runAttempt } from "./attempt.ts";

export interface RestartingAttemptInput extends AttemptInput {
  store: CheckpointStore;
  /** Outputs this attempt already started over before it ran. */
  restarted: readonly Restart[];
  onRestart?(restart: Restart): void;
}

/**
 * Runs the attempt until it completes. An output whose upload (or carried text) is lost starts
 * over, once per attempt: the checkpoint then names no upload for it, and reading restarts where
 * the job's reading starts (the source's first byte, or a shard's first row) while the other
 * output skips what it already holds.
 */
export async function runRestartingLostOutputs(input: RestartingAttemptInput): Promise<JobResult> {
  const { store } = input;
  const restarted = [...input.restarted];
  let { firstRead } = input;
  for (;;) {
    try {
      // Each run binds its judge afresh: rows read again are not taken for duplicates.
      const result = await runAttempt({ ...input, firstRead });
      return { ...result, restarted };
    } catch (error) {
      if (!(error instanceof OutputLostError)) throw error;
      const side = sideOf(store.current, error.location);
      if (restarted.some((r) => r.output === side)) throw error;
      firstRead?.destroy();
      firstRead = undefined;
      const restart = { output: side, reason: error.message };
      restarted.push(restart);
      input.onRestart?.(restart);
      await restartLostOutput(store, side);
    }
  }
}
