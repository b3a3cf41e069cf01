import type { Checkpoint, ResumeMark } from "../../shared/job.ts";
import { startMark } from "../../worker/source/firstAttempt.ts";

/**
 * A first checkpoint of a 10-byte source, both outputs at the start, for tests of what keeps
 * or reads checkpoints: `bucket` and `key` name the output (the report is KEY.rejects.csv).
 */
export function checkpointFixture(
  location: { bucket: string; key: string },
  uploadId?: string,
): Checkpoint {
  const { bucket, key } = location;
  const rejectsKey = key.replace(/\.csv$/, ".rejects.csv");
  return {
    version: 1,
    source: { etag: '"x"', size: 10 },
    partSize: 5 * 1024 * 1024,
    checksums: false,
    header: null,
    output: {
      bucket,
      key,
      ...(uploadId ? { uploadId } : {}),
      parts: [],
      bytes: 0,
      mark: startMark(),
    },
    rejects: { bucket, key: rejectsKey, parts: [], bytes: 0, mark: startMark() },
    resumes: 0,
  };
}

/** A resume mark at `offset`, its row and line numbers following it, no rows counted. */
export function markAt(offset: number): ResumeMark {
  return {
    offset,
    rowNumber: offset,
    lineNumber: offset + 1,
    counts: { read: 0, valid: 0, rejected: 0, errors: {}, fields: {} },
  };
}
