import { readFile } from "node:fs/promises";
import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { JsonTextError, parseJsonText, withoutBom } from "../shared/jsonText.ts";

// Where bulk enqueueing finds its jobs: every object under a source prefix (destinations from a
// template), or a manifest file with one job per line.

export interface ListedObject {
  key: string;
  etag: string;
  lastModified?: Date | undefined;
}

/** The objects under a prefix, a listing page at a time (folders left out). */
export async function* objectPagesUnder(
  s3: S3Client,
  bucket: string,
  prefix: string,
  signal?: AbortSignal,
): AsyncGenerator<ListedObject[]> {
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      { abortSignal: signal },
    );
    yield (page.Contents ?? []).flatMap((o) =>
      o.Key && !o.Key.endsWith("/")
        ? [{ key: o.Key, etag: o.ETag ?? "", lastModified: o.LastModified }]
        : [],
    );
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

export async function* objectsUnder(
  s3: S3Client,
  bucket: string,
  prefix: string,
): AsyncGenerator<ListedObject> {
  for await (const page of objectPagesUnder(s3, bucket, prefix)) yield* page;
}

/**
 * Fills a destination template for one source key: {key} the whole key, {path} the key after
 * the prefix, {name} its file name, {stem} the name without its last extension.
 */
export function fillTemplate(template: string, prefix: string, key: string): string {
  const path = key.startsWith(prefix) ? key.slice(prefix.length) : key;
  const name = key.slice(key.lastIndexOf("/") + 1);
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  return template.replace(/\{(key|path|name|stem)\}/g, (_, field: string) =>
    field === "key" ? key : field === "path" ? path : field === "name" ? name : stem,
  );
}

/**
 * One job per non-blank line; a line that is not JSON is reported by its number and the column
 * (a leading byte order mark, as Windows editors save, is not part of the first line).
 */
export async function readManifest(file: string): Promise<unknown[]> {
  const text = withoutBom(await readFile(file, "utf8"));
  const jobs: unknown[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === "") return;
    try {
      jobs.push(parseJsonText(line));
    } catch (error) {
      if (!(error instanceof JsonTextError)) throw error;
      throw new Error(
        `${file} line ${index + 1} is not JSON: ${error.reason} at column ${error.column}; fix that line (one job, as JSON, a line)`,
      );
    }
  });
  return jobs;
}
