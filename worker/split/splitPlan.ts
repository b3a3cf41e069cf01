import {
  type Checkpoint,
  contractNeeded,
  type JobData,
  SPLIT_AUTO_BYTES,
  SPLIT_AUTO_SHARD_BYTES,
  SPLIT_MAX_SHARDS,
  type SplitState,
} from "../../shared/job.ts";
import { MAX_KEY_BYTES } from "../../shared/s3Url.ts";
import { type WorkerCensus, workersBelow } from "../../shared/workerCensus.ts";
import { CsvFramer } from "../csv/csvFramer.ts";
import { asBuffer, rowDecoder } from "../csv/rowDecoder.ts";
import { RowParser } from "../csv/rowParser.ts";
import type { JudgeFactory } from "../judge/rowJudge.ts";
import type { OpenedBody } from "../source/sourceReader.ts";
import { utf16Order } from "../source/utf16Source.ts";
import { childJobId, shardObjects } from "./shardObjects.ts";

// Whether a job splits, and into which byte ranges. Decided once, on the parent's first
// attempt, from the pinned source and its first row; the checkpoint keeps the decision.

/** The first job contract with split jobs: the one a shard needs. */
const SPLIT_CONTRACT = contractNeeded({ shard: true });

/** The shard size options.split asks for on a source of `size` bytes, or undefined: whole. */
export function shardSizeFor(split: JobData["options"]["split"], size: number): number | undefined {
  if (split === "off") return undefined;
  if (split === "auto") return size >= SPLIT_AUTO_BYTES ? SPLIT_AUTO_SHARD_BYTES : undefined;
  return size >= 2 * split ? split : undefined;
}

/** Nominal byte ranges of `shardSize` (grown so that there are at most SPLIT_MAX_SHARDS). */
export function nominalRanges(size: number, shardSize: number): Array<[number, number]> {
  const step = Math.max(shardSize, Math.ceil(size / SPLIT_MAX_SHARDS));
  const ranges: Array<[number, number]> = [];
  for (let start = 0; start < size; start += step)
    ranges.push([start, Math.min(start + step, size)]);
  return ranges;
}

/** Why a job whose source is large enough still runs whole, or undefined when it can split. */
export function unsplittable(data: JobData, checkpoint: Checkpoint): string | undefined {
  if (checkpoint.source.gzip) {
    return "the source is gzip: a shard cannot start reading in the middle of it";
  }
  if (data.options.encoding === "utf-16") {
    return "the source is UTF-16: its offsets are in its UTF-8 transcoding, read from the start";
  }
  if (data.options.maxInvalidRatio !== undefined) {
    return "options.maxInvalidRatio is judged as rows are read (from row 1,000 on), in the file's order";
  }
  if (data.options.outputCompression === "gzip") {
    return "gzip output is compressed part by part: a split job's parts would differ from a whole run's";
  }
  return undefined;
}

export interface SourceHead {
  header: string[] | null;
  /** The number of fields of the first row (the header's, when there is one). */
  columns: number;
}

/**
 * The first row of the source, read from the first attempt's open body. Undefined when it
 * cannot be read here (UTF-16, no row, a row the framer or parser refuses): the job then runs
 * whole, and the whole run says what is wrong.
 */
export async function readHead(
  body: OpenedBody,
  data: JobData,
  delimiter: string,
): Promise<SourceHead | { unsplit: string } | undefined> {
  const { options } = data;
  const framer = new CsvFramer({ ...options, delimiter, startOffset: 0, startLine: 1 });
  const parser = new RowParser({ ...options, delimiter });
  const decode = rowDecoder(options.encoding);
  const comment = options.commentChar?.charCodeAt(0);
  let first = true;
  for await (const chunk of body) {
    if (first && utf16Order(chunk)) {
      return { unsplit: "the source is UTF-16 (it starts with a byte order mark)" };
    }
    first = false;
    for (const row of framer.push(chunk)) {
      if (comment !== undefined && row.bytes[0] === comment) continue;
      if (row.oversize || row.unterminated) return undefined;
      const text = decode(asBuffer(row.bytes));
      const parsed = text === undefined ? undefined : parser.parseRow(row.bytes, text, row.quoted);
      if (!parsed?.ok || parsed.fields.length > options.maxColumns) return undefined;
      return { header: options.header ? parsed.fields : null, columns: parsed.fields.length };
    }
  }
  return undefined;
}

/** Why the shards' temporary object keys cannot be made (too long), or undefined. */
function shardKeysProblem(data: JobData, jobId: string, shards: number): string | undefined {
  // The longest: the last shard's report (a child's id only grows with its index).
  const { rejects } = shardObjects(data, childJobId(jobId, shards - 1));
  const bytes = Buffer.byteLength(rejects.key);
  if (bytes <= MAX_KEY_BYTES) return undefined;
  return `the shards' temporary objects would have keys of ${bytes} bytes (the destination key and the job id, plus a suffix), over S3's ${MAX_KEY_BYTES}`;
}

/** Why the job's judge keeps the job whole (it needs the file in one pass, or the header does not fit), or undefined. */
export function judgeProblem(judges: JudgeFactory, header: string[] | null): string | undefined {
  let stateful: boolean | undefined;
  try {
    stateful = judges.bind(header).stateful;
  } catch (error) {
    // The whole run fails on it with the full message, before anything is uploaded.
    return `its header does not fit the job (${(error as Error).message})`;
  }
  if (!stateful) return undefined;
  return "the schema has unique or primaryKey constraints: they are checked across the whole file in one pass";
}

/** A job's split: its shards, or why it runs whole (nothing said when it is simply small). */
export type SplitDecision = { split: SplitState } | { unsplit?: string };

/**
 * Whether a job splits, from options.split, the pinned source and its first row (read only
 * when the rest allows a split).
 */
export async function decideSplit(
  data: JobData,
  checkpoint: Checkpoint,
  judges: JudgeFactory,
  jobId: string,
  source: {
    readFirstRow(): Promise<SourceHead | { unsplit: string } | undefined>;
    /** The worker processes serving the queue (undefined when Redis cannot say). */
    workers(): Promise<WorkerCensus | undefined>;
  },
): Promise<SplitDecision> {
  const size = checkpoint.source.size;
  const shardSize = shardSizeFor(data.options.split, size);
  if (shardSize === undefined) return {};
  const reason = unsplittable(data, checkpoint);
  if (reason) return { unsplit: reason };
  if (data.options.split === "auto") {
    const census = await source.workers();
    const unsplit = autoUnsplit(census);
    if (unsplit) return { unsplit };
  }
  const keys = shardKeysProblem(data, jobId, nominalRanges(size, shardSize).length);
  if (keys) return { unsplit: keys };
  const head = await source.readFirstRow();
  if (!head) return { unsplit: "its first row could not be read ahead of splitting" };
  if ("unsplit" in head) return head;
  const problem = judgeProblem(judges, head.header);
  if (problem) return { unsplit: problem };
  const shards = nominalRanges(size, shardSize).map(([start, end], index) => ({
    jobId: childJobId(jobId, index),
    start,
    end,
    pinned: index === 0,
  }));
  return { split: { shards, retired: [], redone: 0, header: head.header, columns: head.columns } };
}

/** Why "auto" keeps a job whole, given the queue's workers, or undefined: it may split. */
function autoUnsplit(census: WorkerCensus | undefined): string | undefined {
  if (!census) {
    return 'Redis does not list its clients, so "auto" cannot tell whether every worker can run a shard (a shard size in options.split splits anyway)';
  }
  // Shards on one worker run one after another, which only adds the cost of splitting.
  const count = census.contracts.length;
  if (count < 2) {
    return 'one worker process serves the queue, and "auto" splits only for two or more (a shard size in options.split splits anyway)';
  }
  // In a rolling upgrade, a worker of an earlier release would fail every shard it took.
  const older = workersBelow(census, SPLIT_CONTRACT);
  if (older > 0) {
    return `${older} of the queue's ${count} worker processes are of a release without split jobs ("auto" splits once every worker is upgraded)`;
  }
  return undefined;
}
