import { isUtf8 } from "node:buffer";
import { randomUUID } from "node:crypto";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import type {
  Checkpoint,
  JobData,
  JobProgress,
  JobResult,
  OutputCheckpoint,
  OutputSide,
  ResumeMark,
  RowCounts,
} from "../../shared/job.ts";
import { CheckpointCoordinator } from "../checkpoint/checkpointCoordinator.ts";
import type { CheckpointStore } from "../checkpoint/checkpointStore.ts";
import { selectColumns } from "../csv/columnSelection.ts";
import { CsvFramer, type FramedRow } from "../csv/csvFramer.ts";
import { formatRow, ndjsonRowFormatter, neutralizeFormula } from "../csv/csvWriter.ts";
import { RowParser } from "../csv/rowParser.ts";
import { HandBackError, PermanentJobError } from "../errors.ts";
import { REJECT_REPORT_HEADER, type RowError } from "../judge/rowErrors.ts";
import { HeaderError, type JudgeFactory, type RowJudge, type Verdict } from "../judge/rowJudge.ts";
import { type OpenedBody, readSource } from "../source/sourceReader.ts";
import type { Utf16Order } from "../source/utf16Source.ts";
import { type PartUploaded, ResumableUpload } from "../upload/resumableUpload.ts";

// One job attempt, source to outputs: source reader -> framer -> parser -> judge -> CSV writer
// -> resumable uploaders -> checkpoint. Everything here is created for this attempt and dropped
// with it; nothing outlives the job.

export interface PipelineInput {
  data: JobData;
  s3: S3Client;
  store: CheckpointStore;
  judges: JudgeFactory;
  partsInFlight: number;
  reportProgress(progress: JobProgress): Promise<void>;
  signal?: AbortSignal;
  /** Aborted when the worker shuts down: stop at a row boundary and hand the job back. */
  shutdown?: AbortSignal;
  /** The first attempt's source read, already open (from offset 0). */
  firstRead?: OpenedBody | undefined;
  onPartUploaded?(part: PartUploaded): void;
}

const PROGRESS_INTERVAL_MS = 1000;
const SMALL_SOURCE = 1024 * 1024;
const YIELD_INTERVAL_MS = 20;

/**
 * Aborts the upload an earlier attempt created for `side` and died before recording, if its
 * creating mark says there may be one; then the mark is cleared.
 */
async function abortStrays(
  store: CheckpointStore,
  side: OutputSide,
  upload: ResumableUpload,
): Promise<void> {
  const creating = await store.creatingSince(side);
  if (!creating) return;
  await upload.abortStrays(creating);
  await store.clearCreating(side);
}

function cloneCounts(counts: RowCounts): RowCounts {
  return { ...counts, errors: { ...counts.errors } };
}

/** The earlier of the two outputs' resume marks: reading restarts there. */
function resumePoint(cp: Checkpoint): ResumeMark {
  return cp.output.mark.offset <= cp.rejects.mark.offset ? cp.output.mark : cp.rejects.mark;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export async function runPipeline(input: PipelineInput): Promise<Omit<JobResult, "restarted">> {
  const { data, s3, store } = input;
  const start = store.current;
  // "auto" was resolved on the first attempt and pinned in the checkpoint.
  const delimiter =
    start.delimiter ?? (data.options.delimiter === "auto" ? "," : data.options.delimiter);
  const options = { ...data.options, delimiter };
  const attempt = randomUUID();
  const coordinator = new CheckpointCoordinator(store, start);
  const uploader = (which: OutputSide) =>
    new ResumableUpload({
      s3,
      state: start[which],
      partSize: start.partSize,
      partsInFlight: input.partsInFlight,
      checksums: start.checksums,
      contentType:
        which === "rejects"
          ? "text/csv; charset=utf-8"
          : options.outputCompression === "gzip"
            ? "application/gzip"
            : options.format === "ndjson"
              ? "application/x-ndjson; charset=utf-8"
              : "text/csv; charset=utf-8",
      gzip: which === "output" && options.outputCompression === "gzip",
      persist: () => coordinator.persist(which),
      assertOwner: () => store.assertOwner(),
      // Unique to this attempt: an attempt that dies before its first checkpoint leaves keys
      // that a retry, which may count the same resumes, must never append to.
      carryKey: (parts) => store.carryKey(`${which}:${attempt}:${parts}`),
      readCarry: (key, bytes) => store.readCarry(key, bytes),
      uploads: {
        creating: () => store.markCreating(which),
        created: (uploadId) => store.recordUpload(which, uploadId),
      },
      ...(input.onPartUploaded ? { onPartUploaded: input.onPartUploaded } : {}),
    });
  const output = uploader("output");
  const rejects = uploader("rejects");
  coordinator.attach({ output, rejects });

  try {
    await Promise.all([output.verify(), rejects.verify(), output.restore(), rejects.restore()]);
    await Promise.all([
      abortStrays(store, "output", output),
      abortStrays(store, "rejects", rejects),
    ]);
    const from = resumePoint(start);
    // Rows before an output's own mark are already in its uploaded parts.
    const outputFrom = start.output.mark.offset;
    const rejectsFrom = start.rejects.mark.offset;
    const position = { ...from, counts: cloneCounts(from.counts) };
    const snapshot = (): ResumeMark => ({ ...position, counts: cloneCounts(position.counts) });
    // Moves the position past a row (judged, skipped or read as the header).
    const pass = (row: FramedRow) => {
      position.offset = row.end;
      position.lineNumber = row.nextLine;
    };
    const parser = new RowParser(options);
    const framerAt = (at: { offset: number; lineNumber: number }) =>
      new CsvFramer({
        delimiter: options.delimiter,
        quote: options.quote,
        escape: options.escape,
        maxRowBytes: options.maxRowBytes,
        startOffset: at.offset,
        startLine: at.lineNumber,
      });
    const newline = options.newline;

    let judge: RowJudge | undefined;
    const csvRow = options.neutralizeFormulas
      ? (cells: readonly string[]) => formatRow(cells.map(neutralizeFormula), newline)
      : (cells: readonly string[]) => formatRow(cells, newline);
    let outputRow = csvRow;
    // An unquoted, comma-separated row whose cells all came out unchanged (and all of them
    // written, in order) is written as it came.
    let passThrough = false;
    const bind = (header: readonly string[] | null) => {
      try {
        judge = input.judges.bind(header);
      } catch (error) {
        if (error instanceof HeaderError) throw new PermanentJobError(error.message);
        throw error;
      }
      const columns = selectColumns(judge.outputHeader, judge.outputTypes, options);
      const format =
        options.format === "ndjson" ? ndjsonRowFormatter(columns.header, columns.types) : csvRow;
      outputRow = columns.all ? format : (cells) => format(columns.pick(cells));
      // The source's quoting must be the output's: with another quote or escape character, a
      // row without them may still hold a `"` that RFC 4180 output has to quote.
      passThrough =
        columns.all &&
        options.delimiter === "," &&
        options.quote === '"' &&
        (options.escape === undefined || options.escape === '"') &&
        options.format === "csv" &&
        !options.neutralizeFormulas;
      if (options.format === "csv" && output.empty)
        output.write(formatRow(columns.header, newline));
      if (rejects.empty) rejects.write(formatRow(REJECT_REPORT_HEADER, newline));
    };
    // Reading from the start means reading the header row again, even if a checkpoint has it.
    if (!options.header) bind(null);
    else if (from.offset > 0) {
      if (!start.header) throw new Error("checkpoint has a resume offset but no header");
      bind(start.header);
    }

    // UTF-8 rows are checked (invalid bytes are an encoding-error); windows-1252 has no invalid bytes.
    const latin = options.encoding === "windows-1252" ? new TextDecoder("windows-1252") : undefined;
    const decode = (bytes: Buffer): string | undefined => {
      if (latin) return latin.decode(bytes);
      const text = bytes.toString("utf8");
      // Invalid bytes decode to U+FFFD: only a row that has one (rare) is checked byte by byte.
      return text.includes("\uFFFD") && !isUtf8(bytes) ? undefined : text;
    };
    const comment = options.commentChar?.charCodeAt(0);

    const readHeader = (row: FramedRow) => {
      const text = row.oversize ? undefined : decode(asBuffer(row.bytes));
      const problem = row.oversize
        ? `it is longer than maxRowBytes (${options.maxRowBytes} bytes)`
        : text === undefined
          ? "it is not valid UTF-8"
          : undefined;
      const parsed = text === undefined ? undefined : parser.parse(text, row.quoted);
      if (!parsed?.ok) {
        throw new PermanentJobError(
          `the header row (line ${row.line}) cannot be read: ${problem ?? (parsed && !parsed.ok ? parsed.message : "")}`,
        );
      }
      if (parsed.fields.length > options.maxColumns) {
        throw new PermanentJobError(
          `the header row has ${parsed.fields.length} columns, more than options.maxColumns (${options.maxColumns})`,
        );
      }
      pass(row);
      // Needed only once a part is checkpointed (a resume from offset 0 reads the header again),
      // so it rides with that write instead of costing one of its own.
      store.stage({ ...store.current, header: parsed.fields });
      bind(parsed.fields);
    };

    const judgeRow = (row: FramedRow, raw: string | undefined): RowVerdict => {
      if (row.oversize) {
        return rowError(
          "format-error",
          `the row is longer than maxRowBytes (${options.maxRowBytes} bytes)`,
        );
      }
      if (raw === undefined) return rowError("encoding-error", "the row is not valid UTF-8");
      if (row.unterminated) {
        return rowError("format-error", "a quoted field is not closed before the end of the file");
      }
      const parsed = parser.parse(raw, row.quoted);
      if (!parsed.ok) return rowError("format-error", parsed.message);
      const verdict = (judge as RowJudge).judge(parsed.fields);
      if (verdict.ok && passThrough && !row.quoted && sameCells(verdict.cells, parsed.fields)) {
        return { ok: true, cells: verdict.cells, line: raw + newline };
      }
      return verdict;
    };

    // Returns a promise only when a part was sealed: most rows cost no promise and no microtask.
    const handleRow = (row: FramedRow): Promise<void> | undefined => {
      if (comment !== undefined && row.bytes[0] === comment) {
        pass(row);
        return undefined;
      }
      if (!judge) {
        readHeader(row);
        return undefined;
      }
      const counts = position.counts;
      position.rowNumber++;
      counts.read++;
      const bytes = asBuffer(row.bytes);
      const raw = decode(bytes);
      const verdict = judgeRow(row, raw);
      if (verdict.ok) {
        counts.valid++;
        if (row.start >= outputFrom) output.write(verdict.line ?? outputRow(verdict.cells));
      } else {
        counts.rejected++;
        for (const error of verdict.errors) {
          counts.errors[error.code] = (counts.errors[error.code] ?? 0) + 1;
        }
        if (row.start >= rejectsFrom) {
          const text = raw ?? bytes.toString("utf8");
          const rowNumber = String(position.rowNumber);
          const line = String(row.line);
          let report = "";
          for (const e of verdict.errors) {
            report += csvRow([rowNumber, line, e.field, e.code, e.message, text]);
          }
          rejects.write(report);
        }
        enforcePolicy(data, position.rowNumber, row.line, verdict.errors, counts);
      }
      pass(row);
      const sealing = output.endRow(snapshot);
      return sealing ? sealing.then(() => rejects.endRow(snapshot)) : rejects.endRow(snapshot);
    };

    const progress = (done = false): JobProgress => {
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
    };

    // Unique and primary-key verdicts depend on every earlier row: replay them into the judge.
    if (judge?.stateful && from.offset > 0) {
      const replay = framerAt({ offset: 0, lineNumber: 1 });
      let skipHeader = options.header;
      const remember = (row: FramedRow) => {
        if (row.oversize || row.unterminated || (comment !== undefined && row.bytes[0] === comment))
          return;
        if (skipHeader) {
          skipHeader = false;
          return;
        }
        const text = decode(asBuffer(row.bytes));
        const parsed = text === undefined ? undefined : parser.parse(text, row.quoted);
        if (parsed?.ok) (judge as RowJudge).judge(parsed.fields);
      };
      for await (const chunk of readSource(s3, data.source, start.source, 0, {
        signal: input.signal,
        until: from.offset,
      })) {
        for (const row of replay.push(chunk)) remember(row);
      }
      for (const row of replay.end()) remember(row);
    }

    coordinator.follow(snapshot);
    const framer = framerAt(from);
    // Report after the first chunk (then every PROGRESS_INTERVAL_MS), except for small sources,
    // where the final report is the only one worth a Redis write.
    let lastProgress = start.source.size > SMALL_SOURCE ? 0 : Date.now();
    let lastYield = Date.now();
    const detectUtf16 =
      options.encoding === "windows-1252"
        ? undefined
        : {
            required: options.encoding === "utf-16",
            // Rides with the next checkpoint: a resume must know to transcode from the start.
            found: (utf16: Utf16Order) =>
              store.stage({ ...store.current, source: { ...store.current.source, utf16 } }),
          };
    for await (const chunk of readSource(s3, data.source, start.source, from.offset, {
      signal: input.signal,
      opened: input.firstRead,
      ...(detectUtf16 ? { detectUtf16 } : {}),
    })) {
      for (const row of framer.push(chunk)) {
        const sealing = handleRow(row);
        if (sealing) await sealing;
      }
      if (input.shutdown?.aborted) throw new HandBackError();
      const now = Date.now();
      if (now - lastYield > YIELD_INTERVAL_MS) {
        // Lock renewal and other timers must run even when the source streams faster than we parse.
        await yieldToEventLoop();
        lastYield = Date.now();
      }
      if (now - lastProgress > PROGRESS_INTERVAL_MS) {
        lastProgress = now;
        await input.reportProgress(progress());
      }
    }
    for (const row of framer.end()) {
      const sealing = handleRow(row);
      if (sealing) await sealing;
    }
    // A gzip or UTF-16 source's offsets count the text read, not the object's bytes.
    const transformed = start.source.gzip || store.current.source.utf16;
    if (!transformed && position.offset !== start.source.size) {
      throw new Error(
        `source stream ended at byte ${position.offset} of ${start.source.size}; retrying`,
      );
    }
    if (!judge) {
      throw new PermanentJobError(
        "the source is empty: expected a header row (set options.header to false for files without one)",
      );
    }

    const ratio = ratioExceeded(data, position.counts, true);
    if (ratio) throw new PermanentJobError(ratio);
    const end = snapshot();
    // The output first: a job whose destination cannot be written leaves no report behind.
    const out = await output.finish(end);
    const rej = await rejects.finish(end);
    await coordinator.retireAll();
    await input.reportProgress(progress(true));
    return {
      output: {
        bucket: data.destination.bucket,
        key: data.destination.key,
        etag: out.etag,
        bytes: out.bytes,
      },
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
    };
  } finally {
    // Never leave a part upload running past the attempt: an abort must see every part.
    await Promise.all([output.settle(), rejects.settle()]);
  }
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

/** A verdict, with the output line already made when the row passes through unchanged. */
type RowVerdict =
  | { ok: true; cells: string[]; line?: string }
  | { ok: false; errors: readonly RowError[] };

function sameCells(cells: readonly string[], fields: readonly string[]): boolean {
  if (cells.length !== fields.length) return false;
  for (let i = 0; i < cells.length; i++) if (cells[i] !== fields[i]) return false;
  return true;
}

function rowError(code: RowError["code"], message: string): Verdict {
  return { ok: false, errors: [{ field: "", code, message }] };
}

/** The invalid-row ratio is judged only once this many rows are read (or at the end). */
const RATIO_SAMPLE = 1000;

function ratioExceeded(data: JobData, counts: RowCounts, atEnd: boolean): string | undefined {
  const { maxInvalidRatio } = data.options;
  if (maxInvalidRatio === undefined || counts.read === 0 || (!atEnd && counts.read < RATIO_SAMPLE))
    return undefined;
  const ratio = counts.rejected / counts.read;
  if (ratio <= maxInvalidRatio) return undefined;
  return `${counts.rejected} of ${counts.read} rows are invalid (${(ratio * 100).toFixed(2)}%), more than options.maxInvalidRatio (${maxInvalidRatio})`;
}

function enforcePolicy(
  data: JobData,
  rowNumber: number,
  line: number,
  errors: readonly RowError[],
  counts: RowCounts,
): void {
  const { onInvalid, maxInvalidRows } = data.options;
  const first = errors[0] as RowError;
  if (onInvalid === "fail") {
    throw new PermanentJobError(
      `row ${rowNumber} (line ${line}) is invalid and options.onInvalid is "fail": ${first.code}${first.field ? ` in "${first.field}"` : ""}: ${first.message}`,
    );
  }
  if (maxInvalidRows !== undefined && counts.rejected > maxInvalidRows) {
    throw new PermanentJobError(
      `${counts.rejected} invalid rows after ${counts.read} rows read, more than options.maxInvalidRows (${maxInvalidRows}); last at row ${rowNumber} (line ${line})`,
    );
  }
  const ratio = ratioExceeded(data, counts, false);
  if (ratio) throw new PermanentJobError(`${ratio}; last invalid row ${rowNumber} (line ${line})`);
}
