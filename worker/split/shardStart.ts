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
import { guessRowStart } from "./seamGuess.ts";

// A shard's first attempt: where its rows start (guessed, or pinned by its parent), and the
// checkpoint it starts from: the parent's pinned source, header and delimiter, both outputs
// empty at that boundary, rows and lines counted from 1 there (the parent makes them global).

const MiB = 1024 * 1024;
const FIRST_WINDOW = MiB;

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
 * Reads a window from just before the shard's start, growing it while the guess cannot be
 * decided (long rows). Memory stays bounded by the row size limit. When no line start reads
 * as a row boundary, the first line start is taken; with no line start at all, the shard
 * starts at its end and covers nothing. Its parent redoes it from where the shard before it
 * really ended if either was wrong.
 */
async function guessStart(s3: S3Client, data: ShardData, signal?: AbortSignal): Promise<number> {
  const spec = data.shard;
  const { options } = data;
  const size = spec.source.size;
  const base = spec.start - 1;
  const largest = 16 * options.maxRowBytes + FIRST_WINDOW;
  const dialect = {
    delimiter: spec.delimiter,
    quote: options.quote,
    escape: options.escape,
    maxRowBytes: options.maxRowBytes,
    columns: spec.columns,
  };
  for (let window = FIRST_WINDOW; ; window *= 4) {
    const until = Math.min(base + Math.min(window, largest), size);
    const chunks: Uint8Array[] = [];
    for await (const chunk of readSource(s3, data.source, spec.source, base, { until, signal }))
      chunks.push(chunk);
    const atEnd = until >= size;
    const guess = guessRowStart(Buffer.concat(chunks), base, spec.start, dialect, atEnd);
    if (guess.found) return guess.start;
    if (atEnd || window >= largest) return guess.fallback ?? Math.min(spec.end, size);
  }
}
