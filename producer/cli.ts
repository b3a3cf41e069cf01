import { readFile } from "node:fs/promises";
import { type OptionTakes, parseCommandLine, takesError } from "../shared/commandLine.ts";
import { loadConfig } from "../shared/config.ts";
import { DestinationBusyError } from "../shared/destinationClaims.ts";
import { JsonTextError, optionsJson, parseJsonText } from "../shared/jsonText.ts";
import { assertRedisReachable } from "../shared/redisReachable.ts";
import { createS3Client } from "../shared/s3Client.ts";
import { isS3Error } from "../shared/s3Errors.ts";
import { formatS3Url, parseS3Url } from "../shared/s3Url.ts";
import { UsageError } from "../shared/usageError.ts";
import { fillTemplate, objectsUnder, readManifest } from "./bulkSources.ts";
import {
  dedupeJobId,
  enqueueTransform,
  enqueueTransforms,
  InvalidJobError,
  queueSettings,
  sourceVersion,
  transformQueue,
  validateJobInput,
} from "./enqueue.ts";
import { exitCodesUsage, timeoutMsOf, WAIT_TAKES, waitAndReport, waitFlags } from "./waitCli.ts";

export const usage = `s3csv enqueue --source s3://BUCKET/KEY --dest s3://BUCKET/KEY (--schema FILE | --transform NAME)
              [--rejects s3://BUCKET/KEY] [--on-invalid reject|fail] [--max-invalid N]
              [--delimiter C] [--options JSON] [--job-id ID] [--dedupe] [--priority N] [--delay MS]
              [--wait [--timeout SECONDS]] [--json]
s3csv enqueue --source-prefix s3://BUCKET/PREFIX --dest-template 's3://BUCKET/out/{path}'
              (--schema FILE | --transform NAME) [options as above]
s3csv enqueue --manifest JOBS.ndjson [--priority N] [--delay MS] [--wait [--timeout SECONDS]] [--json]

Validates the job (every job, in bulk) before Redis is touched, adds it and prints its id.
--wait waits for the result (a progress bar on a terminal) and exits 1 with the reason if a job
fails; --timeout SECONDS stops waiting after that long (for all the jobs together); --json
prints the result (or, without --wait, the job id) as one JSON object per job on stdout.
In bulk, every object under --source-prefix becomes a job whose destination is the template
with {key}, {path} (the key after the prefix), {name} or {stem} filled in; a manifest has one
job (the JSON contract) per line. Bulk jobs are deduplicated (--dedupe does that for a single
job): the same work (source version, destination, reject report, schema or transform, options)
is not added again while its job exists; changed work, or a new version of the source, is.
${exitCodesUsage}`;

function delimiterOf(value: string): string {
  if (value === "tab" || value === "\\t") return "\t";
  return value;
}

async function readSchema(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read --schema ${path}: ${(error as Error).message}`);
  }
  try {
    return parseJsonText(text);
  } catch (error) {
    if (!(error instanceof JsonTextError)) throw error;
    throw new UsageError(
      `--schema ${path} is not JSON: ${error.message}; fix the file, or pass a Table Schema file`,
    );
  }
}

function s3Arg(name: string, value: string): { bucket: string; key: string } {
  try {
    return parseS3Url(value);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message.split("\n")[0]}`);
  }
}

/** What the flags that judge rows take (enqueue's and watch's), said when a value is wrong. */
export const JUDGING_TAKES = { "max-invalid": "a whole number of rows, 0 or more" } as const;

const ENQUEUE_TAKES = {
  ...JUDGING_TAKES,
  ...WAIT_TAKES,
  priority: "a whole number, 0 or more",
  delay: "a whole number of milliseconds, 0 or more",
} as const satisfies OptionTakes;

function wholeNumber(
  name: keyof typeof ENQUEUE_TAKES,
  value: string | undefined,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw takesError(name, ENQUEUE_TAKES[name], value);
  return n;
}

function parse(argv: string[]) {
  return parseCommandLine(
    {
      args: argv,
      strict: true,
      options: {
        source: { type: "string" },
        dest: { type: "string" },
        "source-prefix": { type: "string" },
        "dest-template": { type: "string" },
        manifest: { type: "string" },
        schema: { type: "string" },
        transform: { type: "string" },
        rejects: { type: "string" },
        "on-invalid": { type: "string" },
        "max-invalid": { type: "string" },
        delimiter: { type: "string" },
        options: { type: "string" },
        "job-id": { type: "string" },
        dedupe: { type: "boolean", default: false },
        priority: { type: "string" },
        delay: { type: "string" },
        ...waitFlags,
      },
    },
    ENQUEUE_TAKES,
  ).values;
}
type Flags = ReturnType<typeof parse>;

/** The flags that say how rows are judged (enqueue's, and watch's). */
export type JudgingFlags = Pick<
  Flags,
  "schema" | "transform" | "options" | "rejects" | "on-invalid" | "max-invalid" | "delimiter"
>;

/** What every job of a command line shares: how rows are judged and the options. */
export async function jobTemplate(v: JudgingFlags): Promise<Record<string, unknown>> {
  if (!v.schema === !v.transform)
    throw new UsageError("give exactly one of --schema FILE or --transform NAME");
  // The flags below win over --options, which carries every other job option.
  const options: Record<string, unknown> = v.options === undefined ? {} : optionsJson(v.options);
  if (v.rejects) options.rejects = s3Arg("rejects", v.rejects);
  if (v["on-invalid"]) options.onInvalid = v["on-invalid"];
  const maxInvalid = wholeNumber("max-invalid", v["max-invalid"]);
  if (maxInvalid !== undefined) options.maxInvalidRows = maxInvalid;
  if (v.delimiter !== undefined) options.delimiter = delimiterOf(v.delimiter);
  return {
    ...(v.schema ? { schema: await readSchema(v.schema) } : { transform: v.transform }),
    options,
  };
}

/** Builds the single job of a command line; nothing here touches Redis. */
async function singleJob(v: Flags): Promise<unknown> {
  if (!v.source) throw new UsageError("--source s3://BUCKET/KEY is required");
  if (!v.dest) throw new UsageError("--dest s3://BUCKET/KEY is required");
  return {
    source: s3Arg("source", v.source),
    destination: s3Arg("dest", v.dest),
    ...(await jobTemplate(v)),
  };
}

interface Planned {
  jobs: unknown[];
  /** The source version of each job where listing gave it (the ETag); else it is looked up. */
  versions: Array<string | undefined>;
}

async function planBulk(v: Flags, config: ReturnType<typeof loadConfig>): Promise<Planned> {
  if (v.manifest) {
    let jobs: unknown[];
    try {
      jobs = await readManifest(v.manifest);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    return { jobs, versions: jobs.map(() => undefined) };
  }
  if (!v["dest-template"])
    throw new UsageError("--source-prefix needs --dest-template 's3://BUCKET/out/{path}'");
  const prefix = v["source-prefix"] as string;
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(prefix);
  if (!match)
    throw new UsageError(`--source-prefix: "${prefix}" is not of the form s3://BUCKET/PREFIX`);
  const [, bucket, keyPrefix] = match as unknown as [string, string, string];
  const template = await jobTemplate(v);
  const s3 = createS3Client(config);
  const planned: Planned = { jobs: [], versions: [] };
  try {
    for await (const object of objectsUnder(s3, bucket, keyPrefix)) {
      planned.jobs.push({
        source: { bucket, key: object.key },
        destination: s3Arg(
          "dest-template",
          fillTemplate(v["dest-template"], keyPrefix, object.key),
        ),
        ...template,
      });
      planned.versions.push(object.etag);
    }
  } finally {
    s3.destroy();
  }
  if (planned.jobs.length === 0) throw new UsageError(`no objects under ${prefix}`);
  return planned;
}

/**
 * Each job's deduplicating id (dedupeJobId), its source's version from the listing or a
 * HeadObject (16 at a time). A source that is not there is refused, naming it.
 */
async function dedupeIds(planned: Planned, config: ReturnType<typeof loadConfig>) {
  const s3 = createS3Client(config);
  const ids: string[] = [];
  try {
    for (let i = 0; i < planned.jobs.length; i += 16) {
      const batch = planned.jobs.slice(i, i + 16).map(async (job, j) => {
        const source = (job as { source: { bucket: string; key: string; versionId?: string } })
          .source;
        let version = planned.versions[i + j];
        try {
          version ??= await sourceVersion(s3, source);
        } catch (error) {
          if (!isS3Error(error, "NotFound") && !isS3Error(error, "NoSuchKey")) throw error;
          throw new UsageError(
            `source ${formatS3Url(source)} does not exist; upload it or fix the key`,
          );
        }
        return dedupeJobId(job, version);
      });
      ids.push(...(await Promise.all(batch)));
    }
  } finally {
    s3.destroy();
  }
  return ids;
}

/** A job refused at enqueue (invalid, or its output held by another job) exits 2, like bad usage. */
async function refusedAsUsage<T>(add: () => Promise<T>): Promise<T> {
  try {
    return await add();
  } catch (error) {
    if (error instanceof InvalidJobError || error instanceof DestinationBusyError)
      throw new UsageError(error.message);
    throw error;
  }
}

export async function enqueueCommand(argv: string[]): Promise<void> {
  const v = parse(argv);
  const bulk = Boolean(v["source-prefix"] || v.manifest);
  if (bulk && (v.source || v.dest))
    throw new UsageError("use --source/--dest, or --source-prefix, or --manifest");
  const config = loadConfig();
  const priority = wholeNumber("priority", v.priority);
  const delay = wholeNumber("delay", v.delay);
  const timeoutMs = timeoutMsOf(v);
  const planned: Planned = bulk
    ? await planBulk(v, config)
    : { jobs: [await singleJob(v)], versions: [undefined] };
  try {
    planned.jobs.forEach((job, i) => {
      try {
        validateJobInput(job, config.MAX_JOB_BYTES);
      } catch (error) {
        throw new InvalidJobError(
          bulk ? `job ${i + 1}: ${(error as Error).message}` : (error as Error).message,
        );
      }
    });
  } catch (error) {
    if (error instanceof InvalidJobError) throw new UsageError(error.message);
    throw error;
  }
  const jobIds = bulk || v.dedupe ? await dedupeIds(planned, config) : [];
  await assertRedisReachable(config);

  const queue = transformQueue(queueSettings(config));
  try {
    const options = {
      queue,
      maxJobBytes: config.MAX_JOB_BYTES,
      ...(priority ? { priority } : {}),
      ...(delay ? { delay } : {}),
    };
    const single = planned.jobs[0];
    const jobId = v["job-id"] ?? jobIds[0];
    const ids = await refusedAsUsage(async () =>
      bulk
        ? enqueueTransforms(planned.jobs, { ...options, jobIds })
        : [await enqueueTransform(single, { ...options, ...(jobId ? { jobId } : {}) })],
    );
    if (!v.wait) {
      const text = v.json
        ? JSON.stringify(bulk ? { jobIds: ids } : { jobId: ids[0] })
        : ids.join("\n");
      process.stdout.write(`${text}\n`);
      return;
    }
    if (!v.json)
      process.stderr.write(
        `${ids.length === 1 ? `job ${ids[0]}` : `${ids.length} jobs`} enqueued; waiting\n`,
      );
    await waitAndReport(queue, ids, { json: v.json, timeoutMs });
  } finally {
    await queue.close();
  }
}
