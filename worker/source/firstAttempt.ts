import type { S3Client } from "@aws-sdk/client-s3";
import type { Config } from "../../shared/config.ts";
import {
  type Checkpoint,
  type JobData,
  MAX_PART_SIZE,
  type ResumeMark,
  rejectsLocation,
} from "../../shared/job.ts";
import { sniffDelimiter } from "./delimiterSniffer.ts";
import { type OpenedBody, openSource, readSource } from "./sourceReader.ts";

const MiB = 1024 * 1024;
// Output can outgrow its source (quoting, normalization); keep 2x headroom under 10,000 parts.
const PART_BUDGET = 5000;
/** How much of the source the delimiter is guessed from. */
const SNIFF_BYTES = 64 * 1024;

/** A part size that fits the source in S3's 10,000 parts, never below the configured one. */
export function choosePartSize(configured: number, sourceBytes: number): number {
  const needed = Math.ceil(sourceBytes / PART_BUDGET / MiB) * MiB;
  return Math.min(MAX_PART_SIZE, Math.max(configured, needed));
}

/** The beginning of the source: nothing read, line 1 (a new mark each time: marks are moved). */
export function startMark(): ResumeMark {
  return {
    offset: 0,
    rowNumber: 0,
    lineNumber: 1,
    counts: { read: 0, valid: 0, rejected: 0, errors: {}, fields: {} },
  };
}

/**
 * The first attempt's checkpoint: the pinned source and two outputs with nothing uploaded, and
 * the source's read, already open (the caller reads it or destroys it).
 */
export async function firstCheckpoint(
  s3: S3Client,
  data: JobData,
  config: Config,
  signal?: AbortSignal,
): Promise<{ checkpoint: Checkpoint; body: OpenedBody }> {
  const { pinned: source, body } = await openSource(
    s3,
    data.source,
    data.options.compression,
    signal,
  );
  let delimiter = data.options.delimiter;
  if (delimiter === "auto") {
    const head: Buffer[] = [];
    try {
      for await (const chunk of readSource(s3, data.source, source, 0, { until: SNIFF_BYTES }))
        head.push(Buffer.from(chunk));
    } catch (error) {
      body.destroy();
      throw error;
    }
    delimiter = sniffDelimiter(Buffer.concat(head).toString("latin1"), data.options.quote);
  }
  const checkpoint: Checkpoint = {
    version: 1,
    source,
    partSize: data.options.partSize ?? choosePartSize(config.PART_SIZE, source.size),
    checksums: config.S3_CHECKSUMS === "when_supported",
    delimiter,
    header: null,
    output: { ...data.destination, parts: [], bytes: 0, mark: startMark() },
    rejects: { ...rejectsLocation(data), parts: [], bytes: 0, mark: startMark() },
    resumes: 0,
  };
  return { checkpoint, body };
}
