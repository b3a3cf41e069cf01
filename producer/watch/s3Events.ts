import { z } from "zod";

// S3 event notifications as S3 delivers them to an SQS queue: a JSON body of Records, each
// naming an event (a creation or a removal), a bucket and an object key (URL-encoded, spaces as
// "+"); a creation also carries the ETag. A queue also gets S3's test event when a notification
// is configured, and may get anything else someone sent. An event only names a key: what the
// object is now, the watch asks S3 (events come late, twice, and in any order).

const S3EventRecord = z.object({
  eventName: z.string(),
  s3: z.object({
    bucket: z.object({ name: z.string() }),
    object: z.object({ key: z.string(), eTag: z.string().optional() }),
  }),
});
const S3Event = z.object({ Records: z.array(S3EventRecord) });

/** An object an event names: created or removed. */
export interface NamedObject {
  bucket: string;
  key: string;
}

export type ParsedMessage =
  | { kind: "events"; objects: NamedObject[] }
  /** S3's test event, or events of other kinds: nothing to do. */
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
  const objects: NamedObject[] = [];
  for (const record of parsed.data.Records) {
    const created = record.eventName.startsWith("ObjectCreated:");
    if (!created && !record.eventName.startsWith("ObjectRemoved:")) continue;
    // S3 always sends a creation's ETag: a creation without one is not S3's.
    if (created && !record.s3.object.eTag) {
      return { kind: "malformed", reason: "an ObjectCreated record without an eTag" };
    }
    let key: string;
    try {
      key = decodeURIComponent(record.s3.object.key.replaceAll("+", " "));
    } catch {
      return { kind: "malformed", reason: "an object key that is not URL-encoded" };
    }
    objects.push({ bucket: record.s3.bucket.name, key });
  }
  return objects.length > 0 ? { kind: "events", objects } : { kind: "nothing" };
}
