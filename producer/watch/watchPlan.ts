import { parseS3Url } from "../../shared/s3Url.ts";
import { UsageError } from "../../shared/usageError.ts";
import { fillTemplate } from "../bulkSources.ts";
import { checkedJob, dedupeJobId, InvalidJobError } from "../enqueue.ts";
import type { WatchRecord } from "./watchState.ts";

// What a watch makes of each new object version: one job, its destination (and reject report)
// from templates, judged by the watch's schema or transform and options, pinned to that version
// (source.etag), under a job id that names the work and the version (ETag and LastModified),
// so that every watcher makes the same id for the same version.

export interface WatchPlan {
  bucket: string;
  prefix: string;
  destTemplate: string;
  rejectsTemplate?: string | undefined;
  /** schema or transform, and options: what every job shares. */
  template: Record<string, unknown>;
}

export interface PlannedJob {
  job: Record<string, unknown>;
  jobId: string;
}

/**
 * The job for one version of one object under the prefix: its ETag and its LastModified (in
 * seconds) name it, so that content coming back after another, or an object made again, is a
 * new job.
 */
export function planJob(
  plan: WatchPlan,
  key: string,
  version: Pick<WatchRecord, "etag" | "modified">,
): PlannedJob {
  const { etag } = version;
  const destination = filled(plan.destTemplate, plan.prefix, key);
  const options = { ...((plan.template.options as Record<string, unknown> | undefined) ?? {}) };
  if (plan.rejectsTemplate) options.rejects = filled(plan.rejectsTemplate, plan.prefix, key);
  const job = {
    ...plan.template,
    source: { bucket: plan.bucket, key, etag },
    destination,
    options,
  };
  return { job, jobId: dedupeJobId(job, `${etag}@${version.modified}`) };
}

/** The object a key's jobs write, as one string; InvalidJobError when the template makes none. */
export function outputOf(plan: WatchPlan, key: string): string {
  const { bucket, key: outputKey } = filled(plan.destTemplate, plan.prefix, key);
  return `${bucket}/${outputKey}`;
}

/** A template filled for a key, as a location; InvalidJobError when it makes none. */
function filled(template: string, prefix: string, key: string): { bucket: string; key: string } {
  try {
    return parseS3Url(fillTemplate(template, prefix, key));
  } catch (error) {
    throw new InvalidJobError(`invalid job: for ${key}, ${(error as Error).message}`);
  }
}

/**
 * Refuses, at start, a watch that could only go wrong: templates that land inside the watched
 * prefix (the watch would ingest its own outputs), a job enqueue would refuse.
 */
export function checkPlan(plan: WatchPlan): void {
  // Where the outputs of objects under the prefix would go, for a flat and a nested key.
  const samples = [`${plan.prefix}example.csv`, `${plan.prefix}sub/example.csv`];
  for (const [flag, template] of [
    ["--dest-template", plan.destTemplate],
    ["--rejects-template", plan.rejectsTemplate],
  ] as const) {
    if (!template) continue;
    for (const sample of samples) {
      let output: { bucket: string; key: string };
      try {
        output = filled(template, plan.prefix, sample);
      } catch (error) {
        throw new UsageError(`${flag}: ${(error as Error).message}`);
      }
      if (output.bucket === plan.bucket && output.key.startsWith(plan.prefix)) {
        throw new UsageError(
          `${flag} ${template} writes under the watched s3://${plan.bucket}/${plan.prefix} (${sample} would go to ${output.key}): the watch would take its own outputs for new files; write them elsewhere`,
        );
      }
    }
  }
  try {
    checkedJob(planJob(plan, samples[0] as string, { etag: '"0"', modified: 0 }).job);
  } catch (error) {
    if (error instanceof InvalidJobError) throw new UsageError(error.message);
    throw error;
  }
}
