import type { OutputSide } from "../../shared/job.ts";
import type { AttemptStore, UploadRecords } from "../checkpoint/checkpointStore.ts";

// Before an output goes on, the uploads of it that an earlier run created and the checkpoint
// does not name are aborted (nothing left to bill), and the job's records of them dropped: an
// attempt's outputs and a split job's composed outputs alike.

export async function abortStrayUploads(
  store: Pick<AttemptStore, "forgetUploads" | "clearCreating">,
  side: OutputSide,
  /** The job's records (store.uploadRecords()). */
  records: UploadRecords,
  /** The upload the checkpoint names for this output, which stays. */
  kept: string | undefined,
  upload: { abortStrays(strays: readonly string[], creating: Date | undefined): Promise<void> },
): Promise<void> {
  const strays = [...records.uploads]
    .filter(([id, of]) => of === side && id !== kept)
    .map(([id]) => id);
  const creating = records.creating[side];
  await upload.abortStrays(strays, creating);
  await store.forgetUploads(strays);
  if (creating) await store.clearCreating(side);
}
