import type { S3Client } from "@aws-sdk/client-s3";
import type { Config } from "../../shared/config.ts";
import {
  type Checkpoint,
  type JobData,
  rejectsLocation,
  type ShardSpec,
} from "../../shared/job.ts";
import { startMark } from "../source/firstAttempt.ts";
import { readSource } from "../source/sourceReader.ts";
import { SeamGuess } from "./seamGuess.ts";

// A shard's first attempt: where its rows start (guessed, or pinned by its parent), and the
// checkpoint it starts from: the parent's pinned source, header and delimiter, both outputs
// empty at that boundary, rows and lines counted from 1 there (the parent makes them global).

const MiB = 1024 * 1024;

export type ShardData = JobData & { shard: ShardSpec };

export async function shardCheckpoint(
  s3: S3Client,
  data: ShardData,
  config: Config,
  signal?: AbortSignal,
): Promise<Checkpoint> {
  const spec = data.shard;
  const start = spec.pinned ? spec.start : await guessStart(s3, data, signal);
  const mark = () => ({ ...startMark(), offset: start });
  return {
    version: 1,
    source: spec.source,
    partSize: spec.partSize,
    checksums: config.S3_CHECKSUMS === "when_supported",
    delimiter: spec.delimiter,
    header: spec.header,
    output: { ...data.destination, parts: [], bytes: 0, mark: mark() },
    rejects: { ...rejectsLocation(data), parts: [], bytes: 0, mark: mark() },
    resumes: 0,
    shardStart: start,
  };
}

/**
 * Streams the source from just before the shard's start into a seam guess, until the guess is
 * decided or its budget is read: two rows' worth plus a mebibyte (enough for a reading inside
 * a quoted field that never closes to show its first row oversize), and never more than the
 * shard itself. The guess holds at most a row per reading, so memory stays within twice
 * maxRowBytes. With no row boundary in what was read, the shard starts at its end and covers
 * nothing. Its parent redoes it from where the shard before it really ended if either was wrong.
 */
async function guessStart(s3: S3Client, data: ShardData, signal?: AbortSignal): Promise<number> {
  const spec = data.shard;
  const { options } = data;
  const size = spec.source.size;
  const base = spec.start - 1;
  const budget = Math.min(2 * options.maxRowBytes + MiB, Math.max(spec.end - spec.start, MiB));
  const until = Math.min(base + budget, size);
  const guess = new SeamGuess(spec.start, {
    delimiter: spec.delimiter,
    quote: options.quote,
    escape: options.escape,
    commentChar: options.commentChar,
    maxRowBytes: options.maxRowBytes,
    columns: spec.columns,
  });
  let decided = false;
  for await (const chunk of readSource(s3, data.source, spec.source, base, { until, signal })) {
    decided = guess.push(chunk);
    if (decided) break;
  }
  return guess.start(!decided && until >= size) ?? Math.min(spec.end, size);
}
