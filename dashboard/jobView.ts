import type { JobResult } from "../shared/job.ts";
import { plural } from "../shared/plural.ts";

// How Bull Board shows an s3csv job (its formatters): a title that says what the job
// transforms, and a result whose summary and errors by field come first (the JSON viewer keeps
// the order of keys), the locations and counts after.

type Location = { bucket?: string; key?: string };
interface JobView {
  name?: string;
  data?: { source?: Location; destination?: Location; shard?: { index?: number; parent?: string } };
  returnvalue?: unknown;
}

const url = (l: Location | undefined) => (l?.bucket && l.key ? `s3://${l.bucket}/${l.key}` : "?");

/**
 * "s3://in/orders.csv → s3://out/orders.csv", and once done, how its rows went (the first thing
 * a reader looks for); a shard says whose shard it is.
 */
export function jobTitle(job: JobView): string {
  const data = job.data;
  if (!data?.source) return job.name ?? "";
  const shard = data.shard;
  const what = `${url(data.source)} → ${url(data.destination)}`;
  const rows = (job.returnvalue as Partial<JobResult> | undefined)?.rows;
  const done = rows ? `: ${counts(rows)}` : "";
  return shard
    ? `shard ${(shard.index ?? 0) + 1} of job ${shard.parent}: ${what}${done}`
    : `${what}${done}`;
}

function counts(rows: JobResult["rows"]): string {
  return `${plural(rows.valid, "valid row")}, ${rows.rejected} rejected of ${rows.read}`;
}

/** The result with a one-line summary and the errors by field first. */
export function resultFirst(result: unknown): unknown {
  const r = result as Partial<JobResult> | null | undefined;
  if (!r?.rows || !r.output) return result;
  const { rows, ...rest } = r as JobResult;
  const { fields, ...totals } = rows;
  const summary = `${counts(rows)} → ${url(r.output)} (${plural(r.parts ?? 0, "part")})`;
  return { summary, "errors by field": fields, rows: totals, ...rest };
}
