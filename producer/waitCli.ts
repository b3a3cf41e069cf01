import type { Queue } from "bullmq";
import { positiveSeconds, SECONDS } from "../shared/commandLine.ts";
import type { JobResult } from "../shared/job.ts";
import { plural } from "../shared/plural.ts";
import { UsageError } from "../shared/usageError.ts";
import { progressWriter } from "./progressBar.ts";
import {
  DEFAULT_REDIS_TIMEOUT_MS,
  JobFailedError,
  JobRemovedError,
  RedisUnavailableError,
  WaitTimeoutError,
  waitForResult,
} from "./waitForResult.ts";

// Waiting for jobs and printing their outcomes, for the commands that can wait (enqueue, retry).

// The exit codes of a wait's outcomes; 2 (an invalid command line or job) is decided before.
const EXIT_FAILED = 1;
const EXIT_TIMED_OUT = 3;
const EXIT_REDIS_UNAVAILABLE = 4;
const EXIT_REMOVED = 5;

export const exitCodesUsage = `Exit codes: 0 done, 1 a job failed, 2 the command or a job is invalid,
3 --timeout passed before every job finished, 4 Redis did not answer for ${DEFAULT_REDIS_TIMEOUT_MS / 1000} s
while waiting, 5 a job was removed before it finished (or does not exist). Waiting never changes
a job. With several jobs, every job is reported and the highest code applies.`;

/** The flags of a command that can wait, for parseArgs. */
export const waitFlags = {
  wait: { type: "boolean", default: false },
  timeout: { type: "string" },
  json: { type: "boolean", default: false },
} as const;

/** What the flags of a command that can wait take, said when a value is wrong. */
export const WAIT_TAKES = { timeout: SECONDS } as const;

/** --timeout SECONDS in milliseconds, checked before anything touches Redis. */
export function timeoutMsOf(flags: {
  wait: boolean;
  timeout?: string | undefined;
}): number | undefined {
  if (flags.timeout === undefined) return undefined;
  if (!flags.wait) throw new UsageError("--timeout needs --wait");
  return positiveSeconds("timeout", flags.timeout) * 1000;
}

function summary(jobId: string, r: JobResult): string {
  const notes = [
    ...r.restarted.map((x) => `  note: the ${x.output} started over (${x.reason})\n`),
    ...(r.checksums === "not-verified"
      ? ["  note: the S3 server returned no checksums; it may not have checked them\n"]
      : []),
  ];
  return (
    `job ${jobId} completed: ${r.rows.valid} valid, ${r.rows.rejected} rejected of ${r.rows.read} rows\n` +
    `  output:  s3://${r.output.bucket}/${r.output.key} (${r.output.bytes} bytes, ${plural(r.parts, "part")})\n` +
    `  rejects: s3://${r.rejects.bucket}/${r.rejects.key} (${plural(r.rejects.rows, "row")})\n` +
    fieldTable(r.rows.fields) +
    notes.join("")
  );
}

/** The errors by field, as a short table: field, errors by code, the first rows. */
function fieldTable(fields: JobResult["rows"]["fields"]): string {
  const lines = Object.entries(fields).map(([field, f]) => [
    field,
    Object.entries(f.errors)
      .map(([code, n]) => `${code} ${n}`)
      .join(", "),
    f.rows.join(", "),
  ]);
  if (lines.length === 0) return "";
  const rows = [["field", "errors", "first rows"], ...lines];
  const width = (i: number) => Math.max(...rows.map((row) => (row[i] as string).length));
  const [w0, w1] = [width(0), width(1)];
  const table = rows.map(([a, b, c]) => `    ${a?.padEnd(w0)}  ${b?.padEnd(w1)}  ${c}`);
  return `  errors by field:\n${table.join("\n")}\n`;
}

interface Unfinished {
  code: number;
  /** What the JSON object says happened, besides the error. */
  flag: "failed" | "timedOut" | "redisUnavailable" | "removed";
  message: string;
}

/** A wait that ended without a result, as the CLI reports it; undefined for anything else. */
function unfinished(error: unknown, timeoutMs: number | undefined): Unfinished | undefined {
  if (error instanceof JobFailedError)
    return {
      code: EXIT_FAILED,
      flag: "failed",
      // Once what made it fail is fixed, the job itself can run again with its full attempts.
      message: `${error.message} (fixed? run: s3csv retry ${error.jobId})`,
    };
  if (error instanceof WaitTimeoutError)
    return {
      code: EXIT_TIMED_OUT,
      flag: "timedOut",
      // The error counts what was left of the timeout for this job; the user gave the total.
      message: `job ${error.jobId}: no result within --timeout ${(timeoutMs ?? 0) / 1000} s; stopped waiting (the job is left as it is)`,
    };
  if (error instanceof RedisUnavailableError)
    return { code: EXIT_REDIS_UNAVAILABLE, flag: "redisUnavailable", message: error.message };
  if (error instanceof JobRemovedError)
    return { code: EXIT_REMOVED, flag: "removed", message: error.message };
  return undefined;
}

function report(jobId: string, outcome: Unfinished, json: boolean): void {
  if (json)
    process.stdout.write(
      `${JSON.stringify({ jobId, [outcome.flag]: true, error: outcome.message })}\n`,
    );
  process.stderr.write(`s3csv: ${outcome.message}\n`);
  process.exitCode = Math.max(Number(process.exitCode ?? 0), outcome.code);
}

/**
 * Waits for each job in turn, all within one timeout, and prints each one's outcome: a summary,
 * or one JSON object per job. Once Redis is unavailable the jobs not yet waited for are
 * reported so, without waiting for Redis again.
 */
export async function waitAndReport(
  queue: Queue<unknown, JobResult>,
  ids: string[],
  { json, timeoutMs }: { json: boolean; timeoutMs: number | undefined },
): Promise<void> {
  const bar = progressWriter(process.stderr);
  const single = ids.length === 1;
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  let redisLost = false;
  // Each wait notices and reports a Redis that went away; unheard, BullMQ prints every
  // reconnect error of this queue's connection.
  const quiet = () => {};
  queue.on("error", quiet);
  try {
    for (const jobId of ids) {
      if (redisLost) {
        const message = `job ${jobId}: not waited for, Redis is unavailable (the job is left as it is)`;
        report(jobId, { code: EXIT_REDIS_UNAVAILABLE, flag: "redisUnavailable", message }, json);
        continue;
      }
      try {
        const result = await waitForResult(queue, jobId, {
          ...(single ? { onProgress: bar.update } : {}),
          // Jobs after the deadline still get a last look: one that finished is reported so.
          ...(deadline === undefined ? {} : { timeoutMs: Math.max(0, deadline - Date.now()) }),
        });
        bar.done();
        process.stdout.write(
          json ? `${JSON.stringify({ jobId, ...result })}\n` : summary(jobId, result),
        );
      } catch (error) {
        bar.done();
        const outcome = unfinished(error, timeoutMs);
        if (!outcome) throw error;
        redisLost ||= error instanceof RedisUnavailableError;
        report(jobId, outcome, json);
      }
    }
  } finally {
    queue.off("error", quiet);
  }
}
