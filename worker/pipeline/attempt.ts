import { randomUUID } from "node:crypto";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import {
  type Checkpoint,
  type JobData,
  type JobProgress,
  type JobResult,
  OUTPUT_SIDES,
  type OutputCheckpoint,
  type OutputSide,
  type ResumeMark,
} from "../../shared/job.ts";
import { CheckpointCoordinator } from "../checkpoint/checkpointCoordinator.ts";
import type { AttemptStore } from "../checkpoint/checkpointStore.ts";
import { CsvFramer } from "../csv/csvFramer.ts";
import { HandBackError, PermanentJobError } from "../errors.ts";
import type { JudgeFactory } from "../judge/rowJudge.ts";
import { type OpenedBody, readSource } from "../source/sourceReader.ts";
import type { Utf16Order } from "../source/utf16Source.ts";
import { PartBudget } from "../upload/partBudget.ts";
import type { PartPool } from "../upload/partPool.ts";
import { type PartUploaded, ResumableUpload } from "../upload/resumableUpload.ts";
import { abortStrayUploads } from "../upload/strayUploads.ts";
import { ratioExceeded } from "./invalidRowPolicy.ts";
import { cloneCounts, RowProcessor } from "./rowProcessor.ts";

// One job attempt, source to outputs: source reader -> framer -> row processor (parser, judge,
// writers) -> resumable uploaders -> checkpoint. Everything here is created for this attempt
// and dropped with it; nothing outlives the job but memory: once every upload has settled, the
// buffers of parts S3 took go to the worker's PartPool, whose next taker writes its own bytes
// over them (a part is only what was written since its buffer was taken).

export interface AttemptInput {
  data: JobData;
  s3: S3Client;
  store: AttemptStore;
  judges: JudgeFactory;
  /** Parts uploading at once, the output and the reject report together. */
  partsInFlight: number;
  /** The worker's idle part buffers: the attempt takes from it and gives back when it ends. */
  partPool?: PartPool | undefined;
  reportProgress(progress: JobProgress): Promise<void>;
  signal?: AbortSignal | undefined;
  /** Aborted when the worker shuts down: stop at a row boundary and hand the job back. */
  shutdown?: AbortSignal;
  /** The first attempt's source read, already open (from offset 0). */
  firstRead?: OpenedBody | undefined;
  onPartUploaded?(part: PartUploaded): void;
}

type Outputs = Record<OutputSide, ResumableUpload>;
/** The job's options, its delimiter resolved ("auto" was guessed on the first attempt). */
type Options = JobData["options"] & { delimiter: string };

const PROGRESS_INTERVAL_MS = 1000;
const SMALL_SOURCE = 1024 * 1024;
const YIELD_INTERVAL_MS = 20;

/** The earlier of the two outputs' resume marks: reading restarts there. */
function resumePoint(cp: Checkpoint): ResumeMark {
  return cp.output.mark.offset <= cp.rejects.mark.offset ? cp.output.mark : cp.rejects.mark;
}

export async function runAttempt(input: AttemptInput): Promise<Omit<JobResult, "restarted">> {
  const { data, store } = input;
  const start = store.current;
  // "auto" was resolved on the first attempt and pinned in the checkpoint.
  const delimiter =
    start.delimiter ?? (data.options.delimiter === "auto" ? "," : data.options.delimiter);
  const options: Options = { ...data.options, delimiter };
  const coordinator = new CheckpointCoordinator(store, start);
  // Both outputs upload within one window of parts in flight and refill each other's buffers,
  // and those of the worker's earlier jobs when their parts are the same size.
  const pool = input.partPool?.serves(start.partSize) ? input.partPool : undefined;
  const budget = new PartBudget(input.partsInFlight, pool);
  const outputs = createOutputs(input, coordinator, options, budget);
  coordinator.attach(outputs);
  const { output, rejects } = outputs;
  try {
    await prepareOutputs(store, outputs);
    const from = resumePoint(start);
    const processor = new RowProcessor({
      options,
      judges: input.judges,
      from,
      // Rows before an output's own mark are already in its uploaded parts (or carried text).
      writeFrom: { output: start.output.mark.offset, rejects: start.rejects.mark.offset },
      sinks: outputs,
      header: start.header,
      // Needed only once a part is checkpointed (a resume from offset 0 reads the header
      // again), so it rides with that write instead of costing one of its own.
      onHeader: (header) => store.stage({ ...store.current, header }),
      headers: (data.shard?.index ?? 0) === 0,
    });
    if (processor.stateful && from.offset > 0) {
      await replayEarlierRows(input, options, processor, from);
    }
    coordinator.follow(processor.mark);
    await readRows(input, options, processor, outputs, from);
    const end = processor.mark();
    // The output first: a job whose destination cannot be written leaves no report behind.
    const out = await output.finish(end);
    const rej = await rejects.finish(end);
    await coordinator.retireAll();
    await input.reportProgress(progressOf(start, end, output, true));
    const shardStart = start.shardStart ?? 0;
    return {
      output: { ...data.destination, etag: out.etag, bytes: out.bytes },
      rejects: {
        bucket: rejects.state.bucket,
        key: rejects.state.key,
        etag: rej.etag,
        bytes: rej.bytes,
        rows: end.counts.rejected,
      },
      rows: end.counts,
      parts: out.parts,
      resumes: start.resumes,
      checksums: checksumsOutcome(start.checksums, [output.state, rejects.state]),
      shards: 1,
      ...(data.shard
        ? { shard: { start: shardStart, end: end.offset, lineNumber: end.lineNumber } }
        : {}),
    };
  } finally {
    // Never leave a part upload running past the attempt: an abort must see every part.
    await Promise.all([output.settle(), rejects.settle()]);
    // Only now is every buffer the attempt kept out of S3's hands: the next job may refill it.
    budget.close();
  }
}

function createOutputs(
  input: AttemptInput,
  coordinator: CheckpointCoordinator,
  options: Options,
  budget: PartBudget,
): Outputs {
  const { s3, store } = input;
  const start = store.current;
  // Unique to this attempt: an attempt that dies before its first checkpoint leaves keys that
  // a retry, which may count the same resumes, must never write to.
  const attempt = randomUUID();
  const uploader = (side: OutputSide, contentType: string) =>
    new ResumableUpload({
      s3,
      state: start[side],
      partSize: start.partSize,
      budget,
      checksums: start.checksums,
      contentType,
      gzip: side === "output" && options.outputCompression === "gzip",
      persist: () => coordinator.persist(side),
      assertOwner: () => store.assertOwner(),
      carryKey: (parts) => store.carryKey(`${side}:${attempt}:${parts}`),
      readCarry: (key, bytes) => store.readCarry(key, bytes),
      uploads: {
        creating: () => store.markCreating(side),
        created: (uploadId) => store.recordUpload(side, uploadId),
      },
      ...(input.onPartUploaded ? { onPartUploaded: input.onPartUploaded } : {}),
    });
  return {
    output: uploader("output", outputContentType(options)),
    rejects: uploader("rejects", "text/csv; charset=utf-8"),
  };
}

export function outputContentType(options: JobData["options"]): string {
  if (options.outputCompression === "gzip") return "application/gzip";
  if (options.format === "ndjson") return "application/x-ndjson; charset=utf-8";
  return "text/csv; charset=utf-8";
}

/**
 * Before reading: the uploads cross-checked, carried text put back, and the uploads an earlier
 * attempt created that the checkpoint does not name aborted: those recorded, and those an
 * attempt that died while creating one (its mark says so) may not have lived to record.
 */
async function prepareOutputs(store: AttemptStore, outputs: Outputs): Promise<void> {
  const { output, rejects } = outputs;
  // All settle before any failure counts: a check still running must not save its output's
  // state over the restart that the failure of another leads to.
  const checks = [output.verify(), rejects.verify(), output.restore(), rejects.restore()];
  const failed = (await Promise.allSettled(checks)).find((c) => c.status === "rejected");
  if (failed) throw failed.reason;
  const records = await store.uploadRecords();
  await Promise.all(
    OUTPUT_SIDES.map((side) => {
      const upload = outputs[side];
      return abortStrayUploads(store, side, records, upload.state.uploadId, upload);
    }),
  );
}

/** Unique and primary-key verdicts depend on every earlier row: replays them into the judge. */
async function replayEarlierRows(
  input: AttemptInput,
  options: Options,
  processor: RowProcessor,
  until: ResumeMark,
): Promise<void> {
  const { data, s3, store } = input;
  const framer = framerAt(options, { offset: 0, lineNumber: 1 });
  const source = readSource(s3, data.source, store.current.source, 0, {
    signal: input.signal,
    until: until.offset,
  });
  for await (const chunk of source) for (const row of framer.push(chunk)) processor.remember(row);
  for (const row of framer.end()) processor.remember(row);
}

function framerAt(options: Options, at: { offset: number; lineNumber: number }): CsvFramer {
  return new CsvFramer({
    delimiter: options.delimiter,
    quote: options.quote,
    escape: options.escape,
    maxRowBytes: options.maxRowBytes,
    startOffset: at.offset,
    startLine: at.lineNumber,
  });
}

/** The read loop: every row of the source from `from`, with yields, progress and hand-back. */
async function readRows(
  input: AttemptInput,
  options: Options,
  processor: RowProcessor,
  outputs: Outputs,
  from: ResumeMark,
): Promise<void> {
  const { data, s3, store } = input;
  const start = store.current;
  const framer = framerAt(options, from);
  // Report after the first chunk (then every PROGRESS_INTERVAL_MS), except for small sources,
  // where the final report is the only one worth a Redis write.
  let lastProgress = start.source.size > SMALL_SOURCE ? 0 : Date.now();
  let lastYield = Date.now();
  // A shard stops before the first row that starts at or past its end: the next shard's.
  const stopAt = data.shard && data.shard.end < start.source.size ? data.shard.end : Infinity;
  const chunks =
    stopAt === Infinity
      ? readSource(s3, data.source, start.source, from.offset, {
          signal: input.signal,
          opened: input.firstRead,
          ...utf16Detection(input),
        })
      : readShard(input, from.offset, stopAt);
  let stopped = false;
  for await (const chunk of chunks) {
    for (const row of framer.push(chunk)) {
      if (row.start >= stopAt) {
        stopped = true;
        break;
      }
      const sealing = processor.process(row);
      if (sealing) await sealing;
    }
    if (stopped) break;
    if (input.shutdown?.aborted) throw new HandBackError();
    const now = Date.now();
    if (now - lastYield > YIELD_INTERVAL_MS) {
      // Lock renewal and other timers must run even when the source streams faster than we parse.
      await yieldToEventLoop();
      lastYield = Date.now();
    }
    if (now - lastProgress > PROGRESS_INTERVAL_MS) {
      lastProgress = now;
      await input.reportProgress(progressOf(start, processor.position, outputs.output, false));
    }
  }
  if (stopped) {
    processor.checkEnd();
    return;
  }
  for (const row of framer.end()) {
    if (row.start >= stopAt) break;
    const sealing = processor.process(row);
    if (sealing) await sealing;
  }
  checkEnd(input, processor, framer.offset);
}

/**
 * A shard's bytes: first up to a little past its end, where its last row and the start of the
 * next almost always lie, then, only if the rows there are longer, the rest of the source.
 * (Reading to the end at once would have the server send every later shard's bytes too.)
 */
async function* readShard(input: AttemptInput, from: number, stopAt: number) {
  const { data, s3, store } = input;
  const pinned = store.current.source;
  const near = stopAt + 2 * data.options.maxRowBytes + 64 * 1024;
  const until = Math.max(from, Math.min(pinned.size, near));
  yield* readSource(s3, data.source, pinned, from, { signal: input.signal, until });
  yield* readSource(s3, data.source, pinned, until, { signal: input.signal });
}

/** A UTF-8 job recognizes a UTF-16 source by its byte order mark; the checkpoint keeps it. */
function utf16Detection(input: AttemptInput) {
  const { options } = input.data;
  const { store } = input;
  if (options.encoding === "windows-1252") return {};
  return {
    detectUtf16: {
      required: options.encoding === "utf-16",
      // Rides with the next checkpoint: a resume must know to transcode from the start.
      found: (utf16: Utf16Order) =>
        store.stage({ ...store.current, source: { ...store.current.source, utf16 } }),
    },
  };
}

/**
 * After the last row: the whole source was read (`framed`: the bytes the framer was given,
 * which past the last row may hold a BOM and nothing else), it had a header, and the policy
 * holds.
 */
function checkEnd(input: AttemptInput, processor: RowProcessor, framed: number): void {
  const { store, data } = input;
  const { source } = store.current;
  // A gzip or UTF-16 source's offsets count the text read, not the object's bytes.
  if (!source.gzip && !source.utf16 && framed !== source.size) {
    throw new Error(`source stream ended at byte ${framed} of ${source.size}; retrying`);
  }
  processor.checkEnd();
  // A shard's share of the rows says nothing of the whole file's ratio: its parent judges that.
  if (data.shard) return;
  const ratio = ratioExceeded(data.options, processor.position.counts, true);
  if (ratio) throw new PermanentJobError(ratio);
}

function progressOf(
  start: Checkpoint,
  position: Readonly<ResumeMark>,
  output: ResumableUpload,
  done: boolean,
): JobProgress {
  const total = start.source.size;
  return {
    bytesRead: position.offset,
    bytesTotal: total,
    rows: cloneCounts(position.counts),
    parts: output.state.parts.length,
    // Reading all of the input is not the end: the last parts and completion still follow.
    progress: done
      ? 100
      : Math.min(99, Math.floor((position.offset / Math.max(1, total)) * 1000) / 10),
  };
}

/** Whether the server returned a checksum for every part (or whole object) it stored. */
function checksumsOutcome(
  sent: boolean,
  outputs: readonly OutputCheckpoint[],
): JobResult["checksums"] {
  if (!sent) return "off";
  const returned = outputs.every((o) =>
    o.parts.length > 0 ? o.parts.every((p) => p.ChecksumCRC32) : o.completed?.checksumCRC32,
  );
  return returned ? "verified" : "not-verified";
}
