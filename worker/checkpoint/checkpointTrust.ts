import { type Checkpoint, type JobData, rejectsLocation } from "../../shared/job.ts";

// A job's data may come from any BullMQ client, checkpoint included: before a worker resumes
// from one, the checkpoint must describe this job's own outputs, keys and source.

/** The parts lists of two outputs and the header row, JSON-escaped, with room to spare. */
export function maxCheckpointBytes(data: JobData): number {
  return 4 * 1024 * 1024 + 2 * data.options.maxRowBytes;
}

/** What makes `checkpoint` not this job's, or undefined when it is. */
export function checkpointProblem(
  data: JobData,
  checkpoint: Checkpoint,
  jobKey: string,
): string | undefined {
  const size = Buffer.byteLength(JSON.stringify(checkpoint));
  if (size > maxCheckpointBytes(data)) {
    return `it is ${size} bytes, more than a checkpoint can be (${maxCheckpointBytes(data)})`;
  }
  if (data.options.partSize !== undefined && checkpoint.partSize !== data.options.partSize) {
    return `its part size ${checkpoint.partSize} is not the job's options.partSize ${data.options.partSize}`;
  }
  const { versionId } = data.source;
  if (versionId !== undefined && checkpoint.source.versionId !== versionId) {
    return `it is for version ${checkpoint.source.versionId ?? "(none)"} of the source, not ${versionId}`;
  }
  const shardProblem = splitProblem(data, checkpoint);
  if (shardProblem) return shardProblem;
  const outputs = [
    ["output", checkpoint.output, data.destination],
    ["rejects", checkpoint.rejects, rejectsLocation(data)],
  ] as const;
  for (const [name, state, expected] of outputs) {
    if (state.bucket !== expected.bucket || state.key !== expected.key) {
      return `its ${name} is s3://${state.bucket}/${state.key}, not s3://${expected.bucket}/${expected.key}`;
    }
    if (state.carry && !state.carry.key.startsWith(`${jobKey}:carry:`)) {
      return `its ${name} carry key ${state.carry.key} is not one of this job's keys`;
    }
    const numbered = state.parts.every((part, i) => part.PartNumber === i + 1);
    const bytes = state.parts.reduce((sum, part) => sum + part.size, 0);
    // A small output completed by one PUT has bytes and no parts.
    const whole = state.completed !== undefined && state.parts.length === 0;
    if (!numbered || (!whole && bytes !== state.bytes)) {
      return `its ${name} parts are not numbered 1..${state.parts.length} or do not add up to ${state.bytes} bytes`;
    }
    if (state.parts.length > 0 && !state.uploadId) {
      return `its ${name} has parts but no upload`;
    }
    // Offsets count the object's own bytes unless it is read through gunzip or transcoded.
    const { gzip, utf16, size: sourceSize } = checkpoint.source;
    if (!gzip && !utf16 && state.mark.offset > sourceSize) {
      return `its ${name} resumes at byte ${state.mark.offset} of a ${sourceSize}-byte source`;
    }
  }
  return undefined;
}

/**
 * A shard's checkpoint starts within its range and resumes after its start; only a whole job's
 * checkpoint splits it.
 */
function splitProblem(data: JobData, checkpoint: Checkpoint): string | undefined {
  const { shardStart } = checkpoint;
  if (!data.shard) {
    return shardStart === undefined
      ? undefined
      : "it has a shard's first row but the job is no shard";
  }
  if (checkpoint.split) return "it splits the job into shards, but the job is a shard";
  if (shardStart === undefined) return "the job is a shard, but it has no first row";
  const { start, pinned } = data.shard;
  if (pinned ? shardStart !== start : shardStart < start) {
    return `its first row at byte ${shardStart} is not where the shard starts (${start})`;
  }
  const marks = [checkpoint.output.mark.offset, checkpoint.rejects.mark.offset];
  if (marks.some((offset) => offset < shardStart)) {
    return `it resumes before the shard's first row (byte ${shardStart})`;
  }
  return undefined;
}
