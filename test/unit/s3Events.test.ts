import { describe, expect, it } from "vitest";
import { parseS3EventMessage } from "../../producer/watch/s3Events.ts";

// S3 event notifications as an SQS queue delivers them: the keys that creations and removals
// name (decoded); S3's test event and other kinds of event name none; anything else is
// malformed, saying why.

const record = (eventName: string, key: string, extra: Record<string, unknown> = {}) => ({
  eventName,
  eventTime: "2026-12-06T10:00:00.250Z",
  s3: { bucket: { name: "intake" }, object: { key, ...extra } },
});

describe("S3 event messages", () => {
  it("names the keys of creations (decoded) and removals, and no other kind of event", () => {
    const body = JSON.stringify({
      Records: [
        record("ObjectCreated:Put", "orders/new+file%C3%A9.csv", { eTag: "abc" }),
        record("ObjectRemoved:Delete", "orders/old.csv"),
        record("ObjectRestore:Completed", "orders/cold.csv"),
      ],
    });
    expect(parseS3EventMessage(body)).toEqual({
      kind: "events",
      objects: [
        { bucket: "intake", key: "orders/new fileé.csv" },
        { bucket: "intake", key: "orders/old.csv" },
      ],
    });
  });

  it("finds nothing to do in S3's test event or other kinds of event, and names what is malformed", () => {
    expect(parseS3EventMessage(JSON.stringify({ Event: "s3:TestEvent" }))).toEqual({
      kind: "nothing",
    });
    expect(
      parseS3EventMessage(JSON.stringify({ Records: [record("ObjectTagging:Put", "a.csv")] })),
    ).toEqual({ kind: "nothing" });
    expect(parseS3EventMessage("not json")).toEqual({
      kind: "malformed",
      reason: "the body is not JSON",
    });
    expect(parseS3EventMessage(JSON.stringify({ Records: [{}] }))).toMatchObject({
      kind: "malformed",
    });
    expect(
      parseS3EventMessage(JSON.stringify({ Records: [record("ObjectCreated:Put", "a.csv")] })),
    ).toEqual({ kind: "malformed", reason: "an ObjectCreated record without an eTag" });
    expect(
      parseS3EventMessage(
        JSON.stringify({ Records: [record("ObjectCreated:Put", "%E0%A4%A", { eTag: "x" })] }),
      ),
    ).toEqual({ kind: "malformed", reason: "an object key that is not URL-encoded" });
  });
});
