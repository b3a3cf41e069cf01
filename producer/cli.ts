import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { loadConfig } from "../shared/config.ts";
import { parseS3Url } from "../shared/s3Url.ts";
import {
  enqueueTransform,
  InvalidJobError,
  queueSettings,
  transformQueue,
  validateJobInput,
} from "./enqueue.ts";
import { progressWriter } from "./progressBar.ts";
import { JobFailedError, waitForResult } from "./waitForResult.ts";

export const usage = `s3csv enqueue --source s3://BUCKET/KEY --dest s3://BUCKET/KEY (--schema FILE | --transform NAME)
              [--rejects s3://BUCKET/KEY] [--on-invalid reject|fail] [--max-invalid N]
              [--delimiter C] [--job-id ID] [--wait] [--json]

Validates the job, adds it to the queue and prints its id. --wait waits for the result (a
progress bar on a terminal) and exits 1 with the reason if the job fails; --json prints the
result (or, without --wait, the job id) as one JSON object on stdout.
Exit codes: 0 done, 1 the job failed, 2 the command or the job is invalid.`;

class UsageError extends Error {
  override name = "UsageError";
}

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
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--schema ${path} is not JSON: ${(error as Error).message}`);
  }
}

function s3Arg(name: string, value: string): { bucket: string; key: string } {
  try {
    return parseS3Url(value);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message.split("\n")[0]}`);
  }
}

/** Builds the job from the command line; nothing here touches Redis. */
export async function jobFromArgs(
  argv: string[],
): Promise<{ job: unknown; flags: Record<string, unknown> }> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const v = parsed.values;
  if (!v.source) throw new UsageError("--source s3://BUCKET/KEY is required");
  if (!v.dest) throw new UsageError("--dest s3://BUCKET/KEY is required");
  if (!v.schema === !v.transform)
    throw new UsageError("give exactly one of --schema FILE or --transform NAME");
  const options: Record<string, unknown> = {};
  if (v.rejects) options.rejects = s3Arg("rejects", v.rejects);
  if (v["on-invalid"]) options.onInvalid = v["on-invalid"];
  if (v["max-invalid"] !== undefined) {
    const n = Number(v["max-invalid"]);
    if (!Number.isInteger(n) || n < 0)
      throw new UsageError("--max-invalid must be a whole number ≥ 0");
    options.maxInvalidRows = n;
  }
  if (v.delimiter !== undefined) options.delimiter = delimiterOf(v.delimiter);
  const job = {
    source: s3Arg("source", v.source),
    destination: s3Arg("dest", v.dest),
    ...(v.schema ? { schema: await readSchema(v.schema) } : { transform: v.transform }),
    options,
  };
  return { job, flags: v };
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    options: {
      source: { type: "string" },
      dest: { type: "string" },
      schema: { type: "string" },
      transform: { type: "string" },
      rejects: { type: "string" },
      "on-invalid": { type: "string" },
      "max-invalid": { type: "string" },
      delimiter: { type: "string" },
      "job-id": { type: "string" },
      wait: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
}

export async function enqueueCommand(argv: string[]): Promise<void> {
  const { job, flags } = await jobFromArgs(argv);
  const config = loadConfig();
  try {
    validateJobInput(job, config.MAX_JOB_BYTES);
  } catch (error) {
    if (error instanceof InvalidJobError) throw new UsageError(error.message);
    throw error;
  }
  const queue = transformQueue(queueSettings(config));
  try {
    const jobId = await enqueueTransform(job, {
      queue,
      maxJobBytes: config.MAX_JOB_BYTES,
      ...(typeof flags["job-id"] === "string" ? { jobId: flags["job-id"] } : {}),
    });
    if (!flags.wait) {
      process.stdout.write(flags.json ? `${JSON.stringify({ jobId })}\n` : `${jobId}\n`);
      return;
    }
    if (!flags.json) process.stderr.write(`job ${jobId} enqueued; waiting\n`);
    const bar = progressWriter(process.stderr);
    try {
      const result = await waitForResult(queue, jobId, { onProgress: bar.update });
      bar.done();
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ jobId, ...result })}\n`);
      } else {
        const r = result;
        process.stdout.write(
          `job ${jobId} completed: ${r.rows.valid} valid, ${r.rows.rejected} rejected of ${r.rows.read} rows\n` +
            `  output:  s3://${r.output.bucket}/${r.output.key} (${r.output.bytes} bytes, ${r.parts} parts)\n` +
            `  rejects: s3://${r.rejects.bucket}/${r.rejects.key} (${r.rejects.rows} rows)\n`,
        );
      }
    } catch (error) {
      bar.done();
      if (!(error instanceof JobFailedError)) throw error;
      if (flags.json)
        process.stdout.write(`${JSON.stringify({ jobId, failed: true, error: error.message })}\n`);
      process.stderr.write(`s3csv: ${error.message}\n`);
      process.exitCode = 1;
    }
  } finally {
    await queue.close();
  }
}
