import { z } from "zod";

// S3 event notifications as S3 delivers them to an SQS queue: a JSON body of Records, each
// naming a bucket, an object key (URL-encoded, spaces as "+") and its ETag. A queue also gets
// S3's test event when a notification is configured, and may get anything else someone sent.

const S3EventRecord = z.object({
  eventName: z.string(),
  s3: z.object({
    bucket: z.object({ name: z.string() }),
    object: z.object({
      key: z.string(),
      eTag: z.string().optional(),
      versionId: z.string().optional(),
    }),
  }),
});
const S3Event = z.object({ Records: z.array(S3EventRecord) });

export interface CreatedObject {
  bucket: string;
  key: string;
  /** As a listing gives it: in quotes. */
  etag: string;
}

export type ParsedMessage =
  | { kind: "created"; objects: CreatedObject[] }
  /** S3's test event, or events that create nothing (a removal): nothing to do. */
  | { kind: "nothing" }
  | { kind: "malformed"; reason: string };

export function parseS3EventMessage(body: string | undefined): ParsedMessage {
  let json: unknown;
  try {
    json = JSON.parse(body ?? "");
  } catch {
    return { kind: "malformed", reason: "the body is not JSON" };
  }
  if ((json as { Event?: unknown } | null)?.Event === "s3:TestEvent") return { kind: "nothing" };
  const parsed = S3Event.safeParse(json);
  if (!parsed.success) return { kind: "malformed", reason: "not an S3 event notification" };
  const objects: CreatedObject[] = [];
  for (const record of parsed.data.Records) {
    if (!record.eventName.startsWith("ObjectCreated:")) continue;
    const { eTag } = record.s3.object;
    if (!eTag) return { kind: "malformed", reason: "an ObjectCreated record without an eTag" };
    let key: string;
    try {
      key = decodeURIComponent(record.s3.object.key.replaceAll("+", " "));
    } catch {
      return { kind: "malformed", reason: "an object key that is not URL-encoded" };
    }
    objects.push({ bucket: record.s3.bucket.name, key, etag: quoted(eTag) });
  }
  return objects.length > 0 ? { kind: "created", objects } : { kind: "nothing" };
}

/** An ETag in quotes, as listings and HeadObject give it (events give it bare). */
export function quoted(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}
