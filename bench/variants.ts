import { isUtf8 } from "node:buffer";
import { closeSync, openSync, readSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import Papa from "papaparse";
import { z } from "zod";
import { loadConfig } from "../shared/config.ts";
import { JobOptions } from "../shared/job.ts";
import { createS3Client } from "../shared/s3Client.ts";
import { TableSchema } from "../shared/tableSchema.ts";
import { CsvFramer } from "../worker/csv/csvFramer.ts";
import { judgeFactoryFor } from "../worker/judge/judgeFactory.ts";
import { RowProcessor } from "../worker/pipeline/rowProcessor.ts";
import { startMark } from "../worker/source/firstAttempt.ts";
import { benchSchema } from "./dataset.ts";
import { MemorySink } from "./memorySink.ts";
import { cpuSeconds, peakRss } from "./procStats.ts";

// The comparison variants, each run as its own process by bench/run.ts:
//   naive      (B) the original story's pipeline: papaparse header mode, a zod object schema,
//                  Papa.unparse, sequential UploadPart of 6 MB buffers, no queue
//   lib-storage (C) @aws-sdk/lib-storage Upload fed by the same parse/validate code
//   raw-copy   (D) GetObject stream -> multipart upload, no parsing: the I/O limit
//   cpu        (E) the worker's own row processor (framer, parser, validator, writers and part
//                  buffers for the output and the reject report) from memory into memory; its
//                  source is a local file and its dest one to write the output to, or "-"
//   cpu-as-read    E with options.values "as-read" (valid rows written as the source had them),
//                  file to file and timed like the peers: the source read and both outputs
//                  written to files on the clock (the peers' output is compared with its own)
//   cpu-as-read-strings
//                  the same with the byte row path off: every row decoded, split into strings
//                  and judged as text, as before the byte row path (issue 22)
//   cpu-as-read-warm
//                  cpu-as-read done twice in one process, the second pass timed: what a
//                  long-lived worker pays for its next job once V8 has compiled the row path
//                  (the peers' --warm runs do the same: their second pass in one process)
// Each prints one JSON line: { seconds, cpu, rows, peakRss } (cpu: CPU seconds while measured).

const [variant, bucket, source, dest] = process.argv.slice(2) as [string, string, string, string];
const config = loadConfig();
const s3 = createS3Client(config);
/** Rows each variant parsed (and, where it judges them, how many were valid and rejected). */
interface Counter {
  rows: number;
  valid?: number;
  rejected?: number;
}

const MB6 = 6 * 1024 * 1024;
const BATCH_ROWS = 10_000;

// The zod object schema a user would write by hand for the benchmark's Table Schema.
const rowSchema = z.object({
  id: z.coerce.number().int().min(1),
  email: z.email(),
  name: z.string().min(1).max(60),
  age: z.coerce.number().int().min(0).max(120),
  status: z.enum(["new", "active", "suspended", "closed"]),
  amount: z.coerce.number().min(0).max(1000000),
  created_at: z.iso.datetime(),
  verified: z.enum(["true", "false"]),
  note: z.string().max(200),
  country: z.string().regex(/^[A-Z]{2}$/),
});

async function sourceStream(): Promise<Readable> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: source }));
  return response.Body as Readable;
}

/** Parses and validates with papaparse + zod, yielding CSV text batches of about 6 MB. */
async function* naiveRows(counter: Counter): AsyncGenerator<string> {
  const input = await sourceStream();
  let valid: Record<string, unknown>[] = [];
  let size = 0;
  const batches: string[] = [];
  let done = false;
  let wake: (() => void) | undefined;
  Papa.parse(input as unknown as File, {
    header: true,
    skipEmptyLines: true,
    step: (result: Papa.ParseStepResult<Record<string, string>>) => {
      counter.rows++;
      const parsed = rowSchema.safeParse(result.data);
      if (parsed.success) {
        valid.push(result.data);
        size++;
        if (size >= BATCH_ROWS) {
          batches.push(Papa.unparse(valid, { header: false }));
          valid = [];
          size = 0;
          wake?.();
        }
      }
    },
    complete: () => {
      if (valid.length) batches.push(Papa.unparse(valid, { header: false }));
      done = true;
      wake?.();
    },
  });
  for (;;) {
    const next = batches.shift();
    if (next !== undefined) yield `${next}\r\n`;
    else if (done) return;
    else
      await new Promise<void>((r) => {
        wake = r;
      });
  }
}

async function naive(counter: Counter): Promise<void> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: dest }),
  );
  const parts: { PartNumber: number; ETag?: string }[] = [];
  let buffer: Buffer[] = [];
  let buffered = 0;
  const flush = async () => {
    const PartNumber = parts.length + 1;
    const { ETag } = await s3.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: dest,
        UploadId,
        PartNumber,
        Body: Buffer.concat(buffer),
      }),
    );
    parts.push({ PartNumber, ETag });
    buffer = [];
    buffered = 0;
  };
  for await (const text of naiveRows(counter)) {
    const bytes = Buffer.from(text);
    buffer.push(bytes);
    buffered += bytes.length;
    if (buffered >= MB6) await flush();
  }
  if (buffered > 0 || parts.length === 0) await flush();
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: dest,
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
}

async function libStorage(counter: Counter): Promise<void> {
  const body = Readable.from(naiveRows(counter));
  await new Upload({
    client: s3,
    params: { Bucket: bucket, Key: dest, Body: body },
    partSize: MB6,
    queueSize: 4,
  }).done();
}

async function rawCopy(): Promise<void> {
  const body = await sourceStream();
  await new Upload({
    client: s3,
    params: { Bucket: bucket, Key: dest, Body: body },
    partSize: config.PART_SIZE,
    queueSize: 4,
  }).done();
}

/** What a worker's source stream hands the framer at a time (the S3 body's chunks are 16-64 KiB). */
const CHUNK = 64 * 1024;

/** The file's bytes in CHUNK-sized pieces, read into one buffer that each read reuses. */
function* fileChunks(path: string): Generator<Uint8Array> {
  const fd = openSync(path, "r");
  const chunk = Buffer.allocUnsafe(CHUNK);
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, CHUNK, null);
      if (n === 0) return;
      yield chunk.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** A file already in memory, in CHUNK-sized pieces. */
function* memoryChunks(csv: Buffer): Generator<Uint8Array> {
  for (let at = 0; at < csv.length; at += CHUNK) yield csv.subarray(at, at + CHUNK);
}

/**
 * The worker's own row processor and writers, from memory into memory, or into files when
 * `files` names them (output and reject report, each written part by part). The source is
 * framed in CHUNK-sized pieces, as a worker frames its stream (the framer copies what it keeps
 * of a chunk, so a reader may reuse the chunk's memory).
 */
function cpu(
  counter: Counter,
  chunks: Iterable<Uint8Array>,
  values: JobOptions["values"],
  files: { output?: number; rejects?: number } = {},
  bytePath = true,
): void {
  const options = { ...JobOptions.parse({ values }), delimiter: "," };
  const framer = new CsvFramer({ ...options, startOffset: 0, startLine: 1 });
  const sinks = {
    output: new MemorySink(config.PART_SIZE, { file: files.output }),
    rejects: new MemorySink(config.PART_SIZE, { file: files.rejects }),
  };
  const processor = new RowProcessor({
    options,
    judges: judgeFactoryFor({ schema: TableSchema.parse(benchSchema), options }, new Map()),
    from: startMark(),
    writeFrom: { output: 0, rejects: 0 },
    sinks,
    header: null,
    onHeader: () => {},
    bytePath,
  });
  for (const chunk of chunks) {
    for (const row of framer.push(chunk)) processor.process(row);
  }
  for (const row of framer.end()) processor.process(row);
  sinks.output.finish();
  sinks.rejects.finish();
  const { read, valid, rejected } = processor.position.counts;
  Object.assign(counter, { rows: read, valid, rejected });
}

const counter: Counter = { rows: 0 };
let seconds: number;
let cpuAtStart: number;
if (variant === "cpu") {
  // `source` is a local file here, read before the clock starts.
  const csv = await readFile(source);
  // The first pass over freshly read memory pays its page faults: done here, off the clock.
  isUtf8(csv);
  cpuAtStart = cpuSeconds();
  const start = performance.now();
  cpu(counter, memoryChunks(csv), "canonical");
  seconds = (performance.now() - start) / 1000;
} else if (["cpu-as-read", "cpu-as-read-strings", "cpu-as-read-warm"].includes(variant)) {
  // Timed like the peers: the source file read (in chunks, as the peers stream it), the output
  // (`dest`) and the reject report (`dest`.rejects.csv) written, all on the clock.
  const asRead = () => {
    const files = { output: openSync(dest, "w"), rejects: openSync(`${dest}.rejects.csv`, "w") };
    cpu(counter, fileChunks(source), "as-read", files, variant !== "cpu-as-read-strings");
    closeSync(files.output);
    closeSync(files.rejects);
  };
  if (variant === "cpu-as-read-warm") asRead();
  cpuAtStart = cpuSeconds();
  const start = performance.now();
  asRead();
  seconds = (performance.now() - start) / 1000;
} else {
  cpuAtStart = cpuSeconds();
  const start = performance.now();
  if (variant === "naive") await naive(counter);
  else if (variant === "lib-storage") await libStorage(counter);
  else if (variant === "raw-copy") await rawCopy();
  else throw new Error(`unknown variant ${variant}`);
  seconds = (performance.now() - start) / 1000;
}
s3.destroy();
const used = { seconds, cpu: cpuSeconds() - cpuAtStart, ...counter, peakRss: peakRss() };
process.stdout.write(`${JSON.stringify(used)}\n`);
