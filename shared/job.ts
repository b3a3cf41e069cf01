import { z } from "zod";
import { roundedIntegers } from "../worker/judge/schemaCheck.ts";
import {
  BucketName,
  ObjectKey,
  OUTPUT_KEY,
  OUTPUT_KEY_MESSAGE,
  OutputLocation,
  S3Location,
} from "./s3Url.ts";
import { TableSchema } from "./tableSchema.ts";

// The job contract. Plain JSON, so any BullMQ client can enqueue a job; `job.schema.json` is
// generated from these schemas (npm run schema:write) and a test keeps it in sync.

const MiB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
/** options.split "auto" splits a source of at least this many bytes... */
export const SPLIT_AUTO_BYTES = 256 * MiB;
/** ...into shards of this many bytes. */
export const SPLIT_AUTO_SHARD_BYTES = 64 * MiB;
/** The most shards one job splits into (shards grow to fit): its output stays in 10,000 parts. */
export const SPLIT_MAX_SHARDS = 2000;

const SingleChar = z
  .string()
  .length(1, "must be exactly one character")
  .refine((c) => c !== "\r" && c !== "\n", "must not be a line break")
  .refine((c) => c.charCodeAt(0) < 128, "must be an ASCII character");

export const JobOptions = z
  .strictObject({
    /** One character, or "auto" to guess it from the file's first lines (`,` `;` tab `|`). */
    delimiter: z.union([SingleChar, z.literal("auto")]).default(","),
    quote: SingleChar.default('"'),
    /**
     * Inside a quoted field, this character makes the next one literal (`\"` with `\\`).
     * Unset: a quote is escaped by doubling it (RFC 4180). Output is always RFC 4180.
     */
    escape: SingleChar.optional(),
    header: z.boolean().default(true),
    /**
     * The source's text encoding. "utf-16" needs a byte order mark; a UTF-8 job whose source
     * starts with one is read as UTF-16 too. Output is always UTF-8.
     */
    encoding: z.enum(["utf-8", "utf-16", "windows-1252"]).default("utf-8"),
    /** gzip sources are read through gunzip; `auto`: a `.gz` key or `Content-Encoding: gzip`. */
    compression: z.enum(["auto", "gzip", "none"]).default("auto"),
    /** Rows whose first character is this are comments: skipped, their lines still counted. */
    commentChar: SingleChar.optional(),
    onInvalid: z.enum(["reject", "fail"]).default("reject"),
    maxInvalidRows: z.number().int().nonnegative().optional(),
    /** Fails the job once more than this share of rows is invalid (checked from 1,000 rows on, and at the end). */
    maxInvalidRatio: z.number().min(0).max(1).optional(),
    rejects: S3Location.optional(),
    partSize: z.number().int().min(MIN_PART_SIZE).max(MAX_PART_SIZE).optional(),
    newline: z.enum(["\n", "\r\n"]).default("\r\n"),
    /**
     * Prefix cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR,
     * and not a number) with a single quote, in the CSV output and the reject report.
     */
    neutralizeFormulas: z.boolean().default(false),
    /** The output's columns, by schema field (or transform column) name, in this order. */
    select: z
      .array(z.string().min(1))
      .min(1)
      .refine((names) => new Set(names).size === names.length, "names a column twice")
      .optional(),
    /** New labels for output columns: `{ "email": "Email address" }`. */
    rename: z.record(z.string().min(1), z.string().min(1)).optional(),
    /**
     * gzip: the output object (not the reject report) is a gzip file of several members (each
     * part holds whole ones), which every gunzip reads as one stream. Name its key `.gz`.
     */
    outputCompression: z.enum(["none", "gzip"]).default("none"),
    /** The output's format: CSV (RFC 4180) or NDJSON, one JSON object per valid row. */
    format: z.enum(["csv", "ndjson"]).default("csv"),
    /**
     * How a Table Schema job writes a valid row's values: `canonical` in each type's canonical
     * form (`+05` → `5`, `.5` → `0.5`, `False` → `false`, datetimes with an offset in UTC),
     * `as-read` exactly as the source had them (CSV output only). A transform writes the cells
     * it makes.
     */
    values: z.enum(["canonical", "as-read"]).default("canonical"),
    /** The most distinct unique/primaryKey values a job may hold in memory. */
    maxUniqueValues: z.number().int().min(1).default(5_000_000),
    /** A header with more columns fails the job (the header rides in every checkpoint). */
    maxColumns: z.number().int().min(1).max(100_000).default(4096),
    maxRowBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * MiB)
      .default(MiB),
    /**
     * One large source across many workers: `auto` splits a source of at least SPLIT_AUTO_BYTES
     * into shards of SPLIT_AUTO_SHARD_BYTES when two or more worker processes serve the queue,
     * `off` never splits, a number is the shard size in bytes. A source that cannot be split
     * (gzip, UTF-16, unique or primaryKey, gzip output) runs whole, and its result says why.
     */
    split: z.union([z.enum(["auto", "off"]), z.number().int().min(MIN_PART_SIZE)]).default("auto"),
  })
  .refine((o) => o.delimiter !== o.quote, {
    message: "delimiter and quote must differ",
    path: ["quote"],
  })
  .refine((o) => o.escape === undefined || o.escape !== o.delimiter, {
    message: "escape and delimiter must differ",
    path: ["escape"],
  })
  .refine((o) => o.values === "canonical" || o.format === "csv", {
    message: 'values "as-read" needs CSV output: NDJSON writes each type\'s JSON value',
    path: ["values"],
  });
export type JobOptions = z.infer<typeof JobOptions>;

export const SourceLocation = z.strictObject({
  bucket: BucketName,
  key: ObjectKey,
  versionId: z.string().min(1).optional(),
  /**
   * The ETag of the version the job is for (s3csv watch sets it): the first read is conditional
   * on it, and a source that changed since the job was enqueued fails it, naming both.
   */
  etag: z.string().min(1).optional(),
});

/**
 * The job contract's version. Contract 1 is s3csv 0.2, whose workers refuse any key they do not
 * know; a job that uses nothing newer carries no `contract` key, so those workers run it. A job
 * that needs more says so in `contract` (the producer sets it), and a worker whose contract is
 * older hands such a job back for a newer worker instead of failing it (from 0.3 on).
 */
export const CONTRACT_VERSION = 2;

/**
 * The contract a job needs, from what was set (not the defaults a parse fills in): 2 when it
 * sets options.split or source.etag, or is a shard of a split job, else 1.
 */
export function contractNeeded(payload: {
  options?: { split?: unknown } | undefined;
  shard?: unknown;
  source?: { etag?: unknown } | undefined;
}): number {
  const newer =
    payload.options?.split !== undefined ||
    payload.shard !== undefined ||
    payload.source?.etag !== undefined;
  return newer ? 2 : 1;
}

const jobFields = {
  /** The job contract the job needs, when more than the first (see CONTRACT_VERSION). */
  contract: z.number().int().min(1).optional(),
  source: SourceLocation,
  destination: S3Location,
  schema: TableSchema.optional(),
  transform: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]*$/, "must be the name of a registered transform")
    .optional(),
  options: JobOptions.default(JobOptions.parse({})),
};

function exactlyOneRule(input: { schema?: unknown; transform?: unknown }): boolean {
  return (input.schema === undefined) !== (input.transform === undefined);
}
const exactlyOne = {
  message: "give exactly one of `schema` (a Table Schema) or `transform` (a registered name)",
  path: ["schema"],
};

function distinctOutputsRule(input: {
  source: S3Location;
  destination: S3Location;
  options: JobOptions;
}): boolean {
  const same = (a: S3Location, b: S3Location) => a.bucket === b.bucket && a.key === b.key;
  if (same(input.source, input.destination)) return false;
  const rejects = input.options.rejects;
  return !rejects || (!same(rejects, input.destination) && !same(rejects, input.source));
}
const distinctOutputs = {
  message: "source, destination and reject report must be three different objects",
  path: ["destination"],
};

/** select and rename name columns the schema has (a transform's are checked by the worker). */
function columnsProblem(input: {
  schema?: TableSchema | undefined;
  options: JobOptions;
}): { path: string[]; message: string } | undefined {
  if (!input.schema) return undefined;
  const names = input.schema.fields.map((f) => f.name);
  const known = new Set(names);
  const { select, rename } = input.options;
  const unknown = (list: string[]) => list.filter((name) => !known.has(name));
  const badSelect = unknown(select ?? []);
  if (badSelect.length) {
    return {
      path: ["options", "select"],
      message: `names no schema field: ${badSelect.map((n) => `"${n}"`).join(", ")}`,
    };
  }
  const badRename = unknown(Object.keys(rename ?? {}));
  if (badRename.length) {
    return {
      path: ["options", "rename"],
      message: `names no schema field: ${badRename.map((n) => `"${n}"`).join(", ")}`,
    };
  }
  // Two fields of one name are the schema's own problem, reported as such.
  if (known.size !== names.length) return undefined;
  const twice = "gives two output columns the same label";
  if (select && new Set(select).size !== select.length) {
    return { path: ["options", "select"], message: twice };
  }
  const labels = (select ?? names).map((name) => rename?.[name] ?? name);
  if (new Set(labels).size !== labels.length)
    return { path: ["options", "rename"], message: twice };
  return undefined;
}

function checkColumns(
  input: { schema?: TableSchema | undefined; options: JobOptions },
  ctx: z.RefinementCtx,
): void {
  const problem = columnsProblem(input);
  if (problem) ctx.addIssue({ code: "custom", ...problem });
}

/**
 * What a producer's check refuses that a worker still runs: a job 0.5.0 accepted, enqueued by
 * an older producer or resumed from an older worker's checkpoint, must not fail on a newer
 * worker. An output key that names a folder (the destination's is its field's pattern), and an
 * integer bound that JSON has already rounded.
 */
function checkInputOnly(
  input: { schema?: TableSchema | undefined; options: JobOptions },
  ctx: z.RefinementCtx,
): void {
  const rejects = input.options.rejects;
  if (rejects && !OUTPUT_KEY.test(rejects.key)) {
    ctx.addIssue({
      code: "custom",
      path: ["options", "rejects", "key"],
      message: OUTPUT_KEY_MESSAGE,
    });
  }
  input.schema?.fields.forEach((field, index) => {
    for (const problem of roundedIntegers(field)) {
      ctx.addIssue({
        code: "custom",
        path: ["schema", "fields", index, ...problem.path],
        message: problem.message,
      });
    }
  });
}

/** What a producer sends. */
export const JobInput = z
  .strictObject({ ...jobFields, destination: OutputLocation })
  .refine(exactlyOneRule, exactlyOne)
  .refine(distinctOutputsRule, distinctOutputs)
  .superRefine(checkColumns)
  .superRefine(checkInputOnly);
export type JobInput = z.input<typeof JobInput>;

export const ErrorCounts = z.record(z.string(), z.number().int().nonnegative());

/** At most this many fields have their own entry in a job's error summary. */
export const SUMMARY_FIELDS = 50;
/** The first rows named for each field in the error summary. */
export const SUMMARY_ROWS = 5;

/** One field's errors: how many of each code, and the first rows that had them. */
export const FieldErrors = z.strictObject({
  errors: ErrorCounts,
  rows: z.array(z.number().int().positive()).max(SUMMARY_ROWS),
});
export type FieldErrors = z.infer<typeof FieldErrors>;

/** Names an entry that zod's record would leave out, and the names that could be mistaken for its escape. */
const PROTO_NAME = /^\0*__proto__$/;

/**
 * The errors by field, each entry the summary's own property whatever its column is called.
 * zod's record leaves out an entry named `__proto__` (assigning one would set a prototype): that
 * entry crosses it under another name, one NUL longer (as does any name of NULs before
 * `__proto__`, so no two names meet), and is put back under its own. (An error in that entry
 * names it one NUL longer.)
 */
const FieldSummaries = z
  .preprocess(
    (input) => renamed(input, (name) => (PROTO_NAME.test(name) ? `\0${name}` : name)),
    z.record(z.string(), FieldErrors),
  )
  .transform((fields) => renamed(fields, (name) => (PROTO_NAME.test(name) ? name.slice(1) : name)));

/** A plain object's entries under new names; anything else as it is, for zod to judge. */
function renamed<T>(input: T, rename: (name: string) => string): T {
  if (typeof input !== "object" || input === null) return input;
  const prototype = Object.getPrototypeOf(input);
  if (prototype !== Object.prototype && prototype !== null) return input;
  if (Object.getOwnPropertySymbols(input).length > 0) return input;
  const output = {};
  for (const [name, value] of Object.entries(input)) {
    Object.defineProperty(output, rename(name), {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return output as T;
}

export const RowCounts = z.strictObject({
  read: z.number().int().nonnegative(),
  valid: z.number().int().nonnegative(),
  rejected: z.number().int().nonnegative(),
  errors: ErrorCounts,
  /**
   * The errors by field ("(row)" for errors about a whole row): bounded however many rows fail,
   * at most SUMMARY_FIELDS fields (the rest together as "(other fields)") and SUMMARY_ROWS rows.
   */
  fields: FieldSummaries.default({}),
});
export type RowCounts = z.infer<typeof RowCounts>;

/** A position in the source right after a row: where reading resumes. */
export const ResumeMark = z.strictObject({
  offset: z.number().int().nonnegative(),
  rowNumber: z.number().int().nonnegative(),
  lineNumber: z.number().int().positive(),
  counts: RowCounts,
});
export type ResumeMark = z.infer<typeof ResumeMark>;

export const UploadedPart = z.strictObject({
  PartNumber: z.number().int().min(1).max(10_000),
  ETag: z.string(),
  ChecksumCRC32: z.string().optional(),
  size: z.number().int().nonnegative(),
});
export type UploadedPart = z.infer<typeof UploadedPart>;

/** One output object's durable progress: the uploaded parts and the input they cover. */
export const OutputCheckpoint = z.strictObject({
  bucket: BucketName,
  key: ObjectKey,
  uploadId: z.string().optional(),
  parts: z.array(UploadedPart).max(10_000),
  bytes: z.number().int().nonnegative(),
  mark: ResumeMark,
  /**
   * Output written after the uploaded parts and not yet in a part, kept in Redis (`key`, its
   * first `bytes`): `mark` is then where that text ends, so an output whose tail is not yet a
   * part (a short reject report) never holds the resume point back.
   */
  carry: z.strictObject({ key: z.string(), bytes: z.number().int().positive() }).optional(),
  completed: z
    .strictObject({
      etag: z.string(),
      bytes: z.number().int().nonnegative(),
      /** A whole-object PUT's CRC32, when the server returned it. */
      checksumCRC32: z.string().optional(),
    })
    .optional(),
});
export type OutputCheckpoint = z.infer<typeof OutputCheckpoint>;

const PinnedSourceState = z.strictObject({
  etag: z.string(),
  size: z.number().int().nonnegative(),
  versionId: z.string().optional(),
  /** The object is gzip: offsets in the checkpoint are in its decompressed bytes. */
  gzip: z.boolean().optional(),
  /** The text is UTF-16 in this byte order: offsets are in its UTF-8 transcoding. */
  utf16: z.enum(["le", "be"]).optional(),
});

/** One shard of a split job as its parent keeps it: the child job, its byte range. */
export const ShardChild = z.strictObject({
  jobId: z.string().min(1),
  start: z.number().int().nonnegative(),
  end: z.number().int().positive(),
  pinned: z.boolean(),
});
export type ShardChild = z.infer<typeof ShardChild>;

/** A split job's parent state: its shards (the current child of each) and the header. */
export const SplitState = z.strictObject({
  shards: z.array(ShardChild).min(2).max(SPLIT_MAX_SHARDS),
  /** Children replaced by a redo: their temporary outputs are deleted with the others. */
  retired: z.array(z.string()),
  /** The source's first row, as the shards are given it. */
  header: z.array(z.string()).nullable(),
  columns: z.number().int().positive(),
  /** The shards redone because their first row boundary was guessed wrong. */
  redone: z.number().int().nonnegative(),
});
export type SplitState = z.infer<typeof SplitState>;

export const Checkpoint = z.strictObject({
  version: z.literal(1),
  source: PinnedSourceState,
  partSize: z.number().int().min(MIN_PART_SIZE).max(MAX_PART_SIZE),
  checksums: z.boolean(),
  /** The delimiter in use: the job's, or the one guessed on the first attempt. */
  delimiter: SingleChar.optional(),
  header: z.array(z.string()).nullable(),
  output: OutputCheckpoint,
  rejects: OutputCheckpoint,
  resumes: z.number().int().nonnegative(),
  /** A shard's first row boundary, chosen on its first attempt. */
  shardStart: z.number().int().nonnegative().optional(),
  /** A split job's parent: its shards; its outputs are then composed from theirs. */
  split: SplitState.optional(),
});
export type Checkpoint = z.infer<typeof Checkpoint>;

/**
 * A shard of a split job: a child job that a parent job adds (never a producer). It reads the
 * parent's pinned source from the first row boundary at or after `start` (or exactly from
 * `start` when `pinned`) up to the first row boundary at or after `end`.
 */
export const ShardSpec = z.strictObject({
  parent: z.string().min(1),
  index: z.number().int().nonnegative(),
  start: z.number().int().nonnegative(),
  end: z.number().int().positive(),
  pinned: z.boolean(),
  source: PinnedSourceState,
  delimiter: SingleChar,
  header: z.array(z.string()).nullable(),
  /** The fields a row has: what a guessed first row boundary is checked against. */
  columns: z.number().int().positive(),
  partSize: z.number().int().min(MIN_PART_SIZE).max(MAX_PART_SIZE),
});
export type ShardSpec = z.infer<typeof ShardSpec>;

/** What a worker reads: the producer's input plus the checkpoint only workers write. */
export const JobData = z
  .strictObject({ ...jobFields, checkpoint: Checkpoint.optional(), shard: ShardSpec.optional() })
  .refine(exactlyOneRule, exactlyOne)
  .refine(distinctOutputsRule, distinctOutputs)
  .superRefine(checkColumns);
export type JobData = z.infer<typeof JobData>;

/** A job's two outputs: the valid rows and the reject report. */
export const OutputSide = z.enum(["output", "rejects"]);
export type OutputSide = z.infer<typeof OutputSide>;
export const OUTPUT_SIDES: readonly OutputSide[] = OutputSide.options;

export const JobResult = z.strictObject({
  output: z.strictObject({
    bucket: z.string(),
    key: z.string(),
    etag: z.string(),
    bytes: z.number().int().nonnegative(),
  }),
  rejects: z.strictObject({
    bucket: z.string(),
    key: z.string(),
    etag: z.string(),
    bytes: z.number().int().nonnegative(),
    rows: z.number().int().nonnegative(),
  }),
  rows: RowCounts,
  parts: z.number().int().nonnegative(),
  resumes: z.number().int().nonnegative(),
  /**
   * Outputs started over from the beginning (of the source, or of a shard's range) because
   * their upload (or carried text) was gone: aborted when the job failed for good, by a
   * lifecycle rule, or expired.
   */
  restarted: z.array(z.strictObject({ output: OutputSide, reason: z.string() })),
  /**
   * `verified`: the server returned every part's CRC32, so it checked what it received;
   * `not-verified`: checksums were sent but the server returned none (it may ignore them);
   * `off`: S3_CHECKSUMS=when_required.
   */
  checksums: z.enum(["verified", "not-verified", "off"]),
  /** How many shards ran the job (1: it ran whole). */
  shards: z.number().int().positive(),
  /** The version of the source the job read: its ETag (and version id, on a versioned bucket). */
  source: z
    .strictObject({ etag: z.string(), versionId: z.string().optional(), size: z.number() })
    .optional(),
  /** Why a job that options.split allowed to split ran whole. */
  unsplit: z.string().optional(),
  /** A shard's range as read: its first row boundary, where it stopped, the line there. */
  shard: z
    .strictObject({
      start: z.number().int().nonnegative(),
      end: z.number().int().nonnegative(),
      lineNumber: z.number().int().positive(),
    })
    .optional(),
});
export type JobResult = z.infer<typeof JobResult>;

export const JobProgress = z.strictObject({
  bytesRead: z.number().int().nonnegative(),
  bytesTotal: z.number().int().nonnegative(),
  rows: RowCounts,
  parts: z.number().int().nonnegative(),
  // Percent done; named `progress` because Bull Board draws its progress ring from that field.
  progress: z.number().min(0).max(100),
});
export type JobProgress = z.infer<typeof JobProgress>;

/** The reject report sits next to the destination unless the job names it. */
export function rejectsLocation(data: Pick<JobData, "destination" | "options">): S3Location {
  if (data.options.rejects) return data.options.rejects;
  const { bucket, key } = data.destination;
  const stem = key.toLowerCase().endsWith(".csv") ? key.slice(0, -4) : key;
  return { bucket, key: `${stem}.rejects.csv` };
}

/** The objects a job writes: its destination and its reject report. */
export function outputLocations(data: Pick<JobData, "destination" | "options">): S3Location[] {
  return [data.destination, rejectsLocation(data)];
}

/** A zod error as one line per problem, each naming the field's path. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length ? issue.path.join(".") : "(root)"}: ${issue.message}`)
    .join("; ");
}
