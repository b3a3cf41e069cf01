import { DeleteObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { isS3Error } from "../../shared/s3Errors.ts";
import { shardObjects } from "../split/shardObjects.ts";
import {
  abortUpload,
  CREATING_SETTLED_MS,
  uploadsStartedNear,
} from "../upload/multipartUploads.ts";
import { type Registered, UploadRegistry } from "./uploadRegistry.ts";

// The sweeper: what s3csv made in S3 for a queue's jobs and no job needs any more (a job
// removed by hand before it could clean up, say) is aborted or deleted. It goes by the queue's
// registry only, never by key names or a listing of the bucket: an upload or object that no
// job of this queue registered (another tool's, another queue's) is not touched. The one guess
// left is the creating mark's: an upload of the job's own output key, started around the
// mark's time, that no job recorded. An entry goes only when its job is gone (or completed),
// judged again in the instant the entry is forgotten, and the entry is older than the cutoff;
// a failed job keeps what it made, for its retry.

/**
 * The least --older-than: over twice the time in which every upload a creating mark stands for
 * is listed (CREATING_SETTLED_MS, the create request with its retries and clock leeway). So an
 * upload found near an old mark was created long enough ago to be recorded by now if any job
 * still wanted it: one that is not recorded is an orphan.
 */
export const MIN_SWEEP_AGE_MS = Math.max(15 * 60_000, 2 * CREATING_SETTLED_MS);

export interface SweepOptions {
  s3: S3Client;
  queue: Queue;
  bucket: string;
  olderThanMs: number;
  dryRun: boolean;
  /** The sweep's "now" (tests look ahead with it). */
  now?: Date;
}

export interface Swept {
  kind: "upload" | "shard-object";
  key: string;
  uploadId?: string;
  job: string;
  /** When the registry says the job made it (or was about to). */
  since: Date;
  action:
    | "aborted"
    | "would-abort"
    | "deleted"
    | "would-delete"
    | (typeof KEPT)[keyof typeof KEPT]
    | "kept: too recent"
    | "kept: its job came back"
    | "kept: the server cannot list uploads";
}

export class SweepAgeError extends Error {
  override name = "SweepAgeError";
}

/** Sweeps one bucket of the queue's registry; resolves to what it did with each thing. */
export async function sweep(options: SweepOptions): Promise<Swept[]> {
  if (!(options.olderThanMs >= MIN_SWEEP_AGE_MS)) {
    throw new SweepAgeError(
      `${options.olderThanMs / 1000} s is less than the minimum of ${MIN_SWEEP_AGE_MS / 60_000} minutes: an upload younger than that may belong to a request still on its way`,
    );
  }
  const registry = await UploadRegistry.of(options.queue);
  const cutoff = (options.now ?? new Date()).getTime() - options.olderThanMs;
  const swept: Swept[] = [];
  for await (const page of registry.pages()) {
    const mine = page.filter((r) => r.entry.bucket === options.bucket);
    const standings = await registry.standings([...new Set(mine.map((r) => r.entry.job))]);
    for (const registered of mine) {
      const standing = standings.get(registered.entry.job) ?? "live";
      if (standing !== "gone") swept.push(...described(registered, KEPT[standing]));
      else if (registered.entry.at > cutoff)
        swept.push(...described(registered, "kept: too recent"));
      else swept.push(...(await sweepEntry({ registry, options, registered })));
    }
  }
  return swept;
}

/** What a job that is not gone keeps. */
const KEPT = {
  live: "kept: owned by a live job",
  failed: "kept: its job failed and may be retried (remove the job to free it)",
} as const;

interface Sweeping {
  registry: UploadRegistry;
  options: SweepOptions;
  registered: Registered;
}

/** What an entry stands for, each with `action`. */
function described(registered: Registered, action: Swept["action"]): Swept[] {
  const { field, entry } = registered;
  const since = new Date(entry.at);
  if (field.startsWith("s:")) {
    return objectsOf(registered).map((key) => ({
      kind: "shard-object",
      key,
      job: entry.job,
      since,
      action,
    }));
  }
  const uploadId = field.startsWith("u:") ? field.slice(2) : undefined;
  return [
    {
      kind: "upload",
      key: entry.key,
      ...(uploadId ? { uploadId } : {}),
      job: entry.job,
      since,
      action,
    },
  ];
}

/** A split job's shard objects, as its registry entry names them. */
function objectsOf({ entry }: Registered): string[] {
  const destination = { bucket: entry.bucket, key: entry.key };
  return (entry.children ?? []).flatMap((child) =>
    Object.values(shardObjects({ destination }, child)).map((o) => o.key),
  );
}

/**
 * Forgets an entry of a gone or completed job (judged again as it is forgotten: a job retried
 * or added again since keeps it), then aborts or deletes what it names; if that fails, the
 * entry is put back for the next sweep.
 */
async function sweepEntry({ registry, options, registered }: Sweeping): Promise<Swept[]> {
  const { dryRun } = options;
  const { entry } = registered;
  const base = { job: entry.job, since: new Date(entry.at) };
  if (!dryRun && !(await registry.forgetIfGone(registered))) {
    return described(registered, "kept: its job came back");
  }
  try {
    return await act(options, registry, registered, base);
  } catch (error) {
    if (!dryRun) await registry.restore(registered);
    throw error;
  }
}

async function act(
  options: SweepOptions,
  registry: UploadRegistry,
  registered: Registered,
  base: { job: string; since: Date },
): Promise<Swept[]> {
  const { s3, dryRun } = options;
  const { field, entry } = registered;
  const out: Swept[] = [];
  if (field.startsWith("u:")) {
    const uploadId = field.slice(2);
    if (!dryRun) await abortUpload(s3, { bucket: entry.bucket, key: entry.key, uploadId });
    out.push({
      kind: "upload",
      key: entry.key,
      uploadId,
      ...base,
      action: dryRun ? "would-abort" : "aborted",
    });
  } else if (field.startsWith("c:")) {
    // The job was about to create an upload and may have died before recording it: the
    // uploads of that very key (the job's claimed output) started then, that no job of the
    // queue recorded, are its own.
    let started: string[];
    try {
      started = await uploadsStartedNear(s3, entry, new Date(entry.at));
    } catch {
      if (!dryRun) await registry.restore(registered);
      return [
        { kind: "upload", key: entry.key, ...base, action: "kept: the server cannot list uploads" },
      ];
    }
    for (const uploadId of started) {
      if (await registry.recorded(uploadId)) continue;
      if (!dryRun) await abortUpload(s3, { bucket: entry.bucket, key: entry.key, uploadId });
      out.push({
        kind: "upload",
        key: entry.key,
        uploadId,
        ...base,
        action: dryRun ? "would-abort" : "aborted",
      });
    }
  } else {
    for (const key of objectsOf(registered)) {
      if (!dryRun) await deleteObject(s3, entry.bucket, key);
      out.push({ kind: "shard-object", key, ...base, action: dryRun ? "would-delete" : "deleted" });
    }
  }
  return out;
}

async function deleteObject(s3: S3Client, bucket: string, key: string): Promise<void> {
  try {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    if (!isS3Error(error, "NoSuchKey")) throw error;
  }
}

/** "90s", "30m", "6h", "2d" (or plain milliseconds) to milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not a duration like 90s, 30m, 6h or 2d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    match[2] ?? "ms"
  ] as number;
  return Number(match[1]) * unit;
}
