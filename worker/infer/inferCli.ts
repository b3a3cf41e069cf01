import type { S3Client } from "@aws-sdk/client-s3";
import { objectsUnder } from "../../producer/bulkSources.ts";
import { parseCommandLine, takesError } from "../../shared/commandLine.ts";
import { loadConfig } from "../../shared/config.ts";
import { describeZodError, JobOptions } from "../../shared/job.ts";
import { optionsJson } from "../../shared/jsonText.ts";
import { createS3Client } from "../../shared/s3Client.ts";
import { isS3Error } from "../../shared/s3Errors.ts";
import { formatS3Url, parseS3Url, type S3Location } from "../../shared/s3Url.ts";
import { UsageError } from "../../shared/usageError.ts";
import { type HeadSample, HeadSampler, NotCsvError } from "./headSample.ts";
import { HEAD_BYTES, type HeadRead, readHead } from "./objectHead.ts";
import { INFERENCE_RULES, type InferenceNote, inferSchema } from "./schemaInference.ts";

const MiB = 1024 * 1024;
const DEFAULT_ROWS = 10_000;
/** Objects a --source-prefix inference reads, the first by key. */
const MAX_OBJECTS = 20;

export const usage = `s3csv infer s3://BUCKET/KEY [--rows N] [--delimiter C] [--options JSON] [--json]
s3csv infer --source-prefix s3://BUCKET/PREFIX [same options]

Drafts a Table Schema from the head of an object: one ranged GET of at most ${HEAD_BYTES / MiB} MiB, its
first N rows (default ${DEFAULT_ROWS}) read as a job reads them, with the dialect of --delimiter
(a character, tab, or auto) and --options (the JSON enqueue takes: quote, escape, header,
encoding, commentChar, compression). Each column gets the narrowest type every sampled value
fits (integer, number, boolean, date, datetime, time, year, else string), "required" when no
value is missing, NA-like missingValues where they keep a narrower type, and an "enum" for a
string of few distinct values: every sampled row passes the schema. The schema goes to stdout,
notes to stderr (the sample, fields decided on few values, what to review); --json prints
{schema, notes, rows, objects} instead. --source-prefix reads the first ${MAX_OBJECTS} objects under
the prefix, N rows each; their headers must have the same labels. An object that is not CSV
(binary, empty, one column where the lines hold several values), or is missing, exits 2.`;

interface Sampled {
  source: string;
  sample: HeadSample;
  head: HeadRead;
}

const ROWS_TAKE = "a whole number of rows, 1 or more";

function parse(argv: string[]) {
  return parseCommandLine(
    {
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        "source-prefix": { type: "string" },
        rows: { type: "string" },
        delimiter: { type: "string" },
        options: { type: "string" },
        json: { type: "boolean", default: false },
      },
    },
    { rows: ROWS_TAKE },
  );
}

/** The job options the head is read with: --options, and --delimiter over it. */
function dialectOf(options: string | undefined, delimiter: string | undefined): JobOptions {
  const given = options === undefined ? {} : optionsJson(options);
  const tab = delimiter === "tab" || delimiter === "\\t";
  const parsed = JobOptions.safeParse({
    ...given,
    ...(delimiter === undefined ? {} : { delimiter: tab ? "\t" : delimiter }),
  });
  if (!parsed.success) throw new UsageError(`invalid options: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

function rowsOf(value: string | undefined): number {
  if (value === undefined) return DEFAULT_ROWS;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw takesError("rows", ROWS_TAKE, value);
  return n;
}

async function sampleObject(
  s3: S3Client,
  location: S3Location,
  options: JobOptions,
  rows: number,
): Promise<Sampled> {
  const source = formatS3Url(location);
  const sampler = new HeadSampler(options, rows);
  try {
    const head = await readHead(s3, location, options.compression, (chunk) => sampler.push(chunk));
    return { source, sample: sampler.finish(head.complete), head };
  } catch (error) {
    if (error instanceof NotCsvError) throw new UsageError(`${source} ${error.message}`);
    throw error;
  }
}

/** The objects under a prefix, the first MAX_OBJECTS by key, and whether there were more. */
async function objectsToSample(
  s3: S3Client,
  prefixUrl: string,
): Promise<{ locations: S3Location[]; more: boolean }> {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(prefixUrl);
  if (!match)
    throw new UsageError(`--source-prefix: "${prefixUrl}" is not of the form s3://BUCKET/PREFIX`);
  const [, bucket, prefix] = match as unknown as [string, string, string];
  const locations: S3Location[] = [];
  try {
    for await (const object of objectsUnder(s3, bucket, prefix)) {
      if (locations.length === MAX_OBJECTS) return { locations, more: true };
      locations.push({ bucket, key: object.key });
    }
  } catch (error) {
    if (isS3Error(error, "NoSuchBucket")) throw new UsageError(`bucket "${bucket}" does not exist`);
    throw error;
  }
  if (locations.length === 0) throw new UsageError(`no objects under ${prefixUrl}`);
  return { locations, more: false };
}

/**
 * The rows of several objects as one sample, in the first object's column order. A job reads
 * each object's header by label, so their labels must be the same, in any order.
 */
function combine(sampled: readonly Sampled[]): {
  header: string[];
  rows: string[][];
  unusable: Record<string, number>;
} {
  const first = sampled[0] as Sampled;
  const header = first.sample.header;
  const rows: string[][] = [];
  const unusable: Record<string, number> = {};
  for (const { source, sample } of sampled) {
    const missing = header.filter((label) => !sample.header.includes(label));
    const extra = sample.header.filter((label) => !header.includes(label));
    if (missing.length || extra.length) {
      const list = (labels: string[]) => labels.map((l) => JSON.stringify(l)).join(", ");
      throw new UsageError(
        `${source} has other columns than ${first.source} (${[
          missing.length ? `it lacks ${list(missing)}` : "",
          extra.length ? `it has ${list(extra)} besides` : "",
        ]
          .filter(Boolean)
          .join("; ")}): one schema cannot fit both; infer them apart`,
      );
    }
    const columns = header.map((label) => sample.header.indexOf(label));
    for (const row of sample.rows) rows.push(columns.map((c) => row[c] as string));
    for (const [code, n] of Object.entries(sample.unusable)) {
      unusable[code] = (unusable[code] ?? 0) + (n ?? 0);
    }
  }
  return { header, rows, unusable };
}

function sampleNote({ source, sample, head }: Sampled, rows: number): InferenceNote {
  const whole = head.complete && sample.read < rows;
  const text = head.gzip ? "decompressed bytes" : "bytes";
  const extent = whole
    ? "the whole object"
    : `its first ${sample.bytes} ${text}${head.gzip ? "" : ` of ${head.size}`}`;
  return {
    code: "sample",
    message: `${source}: ${sample.read} row${sample.read === 1 ? "" : "s"} sampled, ${extent}`,
  };
}

function delimiterNotes(sampled: readonly Sampled[], options: JobOptions): InferenceNote[] {
  const found = [...new Set(sampled.map((s) => s.sample.delimiter))];
  if (found.length === 1 && found[0] === ",") return [];
  const flag = (d: string) => (d === "\t" ? "tab" : `'${d}'`);
  const how = options.delimiter === "auto" ? "found" : "given";
  return [
    {
      code: "delimiter",
      message:
        found.length === 1
          ? `delimiter ${JSON.stringify(found[0])} (${how}): enqueue with --delimiter ${flag(found[0] as string)}`
          : `the objects use different delimiters (${found.map((d) => JSON.stringify(d)).join(", ")}): enqueue them with --delimiter auto`,
    },
  ];
}

/** The notes for a reader: the sample's first, then the fields decided on few values on one line. */
function humanNotes(notes: readonly InferenceNote[]): string {
  const few = notes.filter((n) => n.code === "few-values");
  const lines = [
    ...notes.filter((n) => n.field === undefined).map((n) => n.message),
    ...(few.length
      ? [
          `decided on fewer than ${INFERENCE_RULES.fewValues} values: ${few.map((n) => `${n.field} (${n.values})`).join(", ")}`,
        ]
      : []),
    ...notes
      .filter((n) => n.field !== undefined && n.code !== "few-values")
      .map((n) => `${n.field}: ${n.message}`),
  ];
  return lines.map((line) => `${line}\n`).join("");
}

export async function inferCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv);
  const prefix = values["source-prefix"];
  if ((positionals.length === 1) === (prefix !== undefined) || positionals.length > 1)
    throw new UsageError("give one s3://BUCKET/KEY, or --source-prefix s3://BUCKET/PREFIX");
  const options = dialectOf(values.options, values.delimiter);
  const rows = rowsOf(values.rows);
  let single: S3Location | undefined;
  if (positionals[0] !== undefined) {
    try {
      single = parseS3Url(positionals[0]);
    } catch (error) {
      throw new UsageError((error as Error).message.split("\n")[0]);
    }
  }
  const s3 = createS3Client(loadConfig());
  try {
    const listed = single
      ? { locations: [single], more: false }
      : await objectsToSample(s3, prefix as string);
    const sampled: Sampled[] = [];
    for (const location of listed.locations) {
      sampled.push(await sampleObject(s3, location, options, rows));
    }
    const { schema, notes: fieldNotes } = inferSchema(combine(sampled));
    const notes: InferenceNote[] = [
      ...sampled.map((s) => sampleNote(s, rows)),
      ...(listed.more
        ? [
            {
              code: "sample" as const,
              message: `more than ${MAX_OBJECTS} objects under ${prefix}: the first ${MAX_OBJECTS} by key were read`,
            },
          ]
        : []),
      ...delimiterNotes(sampled, options),
      ...fieldNotes,
    ];
    const read = sampled.reduce((sum, s) => sum + s.sample.read, 0);
    if (values.json) {
      const objects = sampled.map(({ source, sample, head }) => ({
        source,
        rows: sample.read,
        bytes: sample.bytes,
        size: head.size,
        delimiter: sample.delimiter,
      }));
      process.stdout.write(`${JSON.stringify({ schema, notes, rows: read, objects })}\n`);
      return;
    }
    process.stdout.write(`${JSON.stringify(schema, null, 2)}\n`);
    process.stderr.write(humanNotes(notes));
  } finally {
    s3.destroy();
  }
}
