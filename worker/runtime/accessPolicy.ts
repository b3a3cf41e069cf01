import type { Config } from "../../shared/config.ts";
import { type JobData, rejectsLocation } from "../../shared/job.ts";
import { formatS3Url, type S3Location } from "../../shared/s3Url.ts";
import { PermanentJobError } from "../errors.ts";

// Least privilege inside the worker: a job may read and write only where the worker's
// configuration allows, checked before any S3 call, so a producer cannot use the worker's role
// to reach every bucket that role can.

function entries(list: string | undefined): string[] {
  return (list ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
}

function allowed(location: S3Location, list: string[]): boolean {
  if (list.length === 0) return true;
  const path = `${location.bucket}/${location.key}`;
  return list.some((entry) => {
    const prefix = entry.includes("/") ? entry : `${entry}/`;
    return path.startsWith(prefix);
  });
}

export function checkAccess(
  data: JobData,
  config: Pick<Config, "ALLOWED_SOURCES" | "ALLOWED_DESTINATIONS">,
): void {
  const sources = entries(config.ALLOWED_SOURCES);
  const destinations = entries(config.ALLOWED_DESTINATIONS);
  if (!allowed(data.source, sources)) {
    throw new PermanentJobError(
      `source ${formatS3Url(data.source)} is outside this worker's ALLOWED_SOURCES (${sources.join(", ")})`,
    );
  }
  for (const target of [data.destination, rejectsLocation(data)]) {
    if (!allowed(target, destinations)) {
      throw new PermanentJobError(
        `output ${formatS3Url(target)} is outside this worker's ALLOWED_DESTINATIONS (${destinations.join(", ")})`,
      );
    }
  }
}
