import { z } from "zod";

// S3 event notifications as S3 delivers them to an SQS queue: a JSON body of Records, each
// naming an event (a creation or a removal), its time, a bucket, an object key (URL-encoded,
// spaces as "+") and, for a creation, its ETag. A queue also gets
// S3's test event when a notification is configured, and may get anything else someone sent.

const S3EventRecord = z.object({
  eventName: z.string(),
  eventTime: z.string().optional(),
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

export interface ObjectEvent {
  bucket: string;
  key: string;
  /** When it happened (the event's time), ms; -1 when the event does not say. */
  timeMs: number;
}

export interface CreatedObject extends ObjectEvent {
  /** As a listing gives it: in quotes. */
  etag: string;
}

export type ParsedMessage =
  | { kind: "events"; created: CreatedObject[]; removed: ObjectEvent[] }
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
  const created: CreatedObject[] = [];
  const removed: ObjectEvent[] = [];
  for (const record of parsed.data.Records) {
    const isCreated = record.eventName.startsWith("ObjectCreated:");
    if (!isCreated && !record.eventName.startsWith("ObjectRemoved:")) continue;
    let key: string;
    try {
      key = decodeURIComponent(record.s3.object.key.replaceAll("+", " "));
    } catch {
      return { kind: "malformed", reason: "an object key that is not URL-encoded" };
    }
    const time = record.eventTime === undefined ? Number.NaN : Date.parse(record.eventTime);
    const event = { bucket: record.s3.bucket.name, key, timeMs: Number.isNaN(time) ? -1 : time };
    if (!isCreated) {
      removed.push(event);
      continue;
    }
    const { eTag } = record.s3.object;
    if (!eTag) return { kind: "malformed", reason: "an ObjectCreated record without an eTag" };
    created.push({ ...event, etag: quoted(eTag) });
  }
  return created.length + removed.length > 0
    ? { kind: "events", created, removed }
    : { kind: "nothing" };
}

/** An ETag in quotes, as listings and HeadObject give it (events give it bare). */
export function quoted(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}
