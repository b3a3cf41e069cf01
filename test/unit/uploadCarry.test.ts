import { CreateMultipartUploadCommand, type S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import type { OutputCheckpoint } from "../../shared/job.ts";
import { PartBudget } from "../../worker/upload/partBudget.ts";
import { ResumableUpload } from "../../worker/upload/resumableUpload.ts";
import { markAt } from "../support/checkpointFixture.ts";

// The carry rules of one output, with an in-memory S3 that answers the two requests a part
// needs: what the checkpoint coordinator relies on when it writes the other output's state.

const PART = 5 * 1024 * 1024;

function fakeS3(): S3Client {
  let etag = 0;
  return {
    send: async (command: unknown) => {
      if (command instanceof CreateMultipartUploadCommand) return { UploadId: "u1" };
      if (command instanceof UploadPartCommand) return { ETag: `"e${++etag}"` };
      throw new Error(`unexpected ${String(command)}`);
    },
  } as unknown as S3Client;
}

function uploader(state: Partial<OutputCheckpoint> = {}, carried = new Map<string, Buffer>()) {
  const persisted: OutputCheckpoint[] = [];
  const upload = new ResumableUpload({
    s3: fakeS3(),
    state: { bucket: "out-bucket", key: "out.csv", parts: [], bytes: 0, mark: markAt(0), ...state },
    partSize: PART,
    budget: new PartBudget(2),
    checksums: false,
    contentType: "text/csv",
    gzip: false,
    persist: async (s) => {
      persisted.push(s);
    },
    assertOwner: async () => {},
    carryKey: (parts) => `job:carry:attempt-b:${parts}`,
    readCarry: async (key, bytes) => (carried.get(key) as Buffer).subarray(0, bytes),
    uploads: { creating: async () => {}, created: async () => {} },
  });
  return { upload, persisted };
}

describe("ResumableUpload carries", () => {
  it("appends only what the key lacks, and becomes parts plus carry up to the mark", () => {
    const { upload } = uploader();
    upload.write("a,b\r\n");
    const first = upload.carrySnapshot();
    if (first === "busy") throw new Error("busy");
    expect(first.delta.toString()).toBe("a,b\r\n");
    upload.adoptCarry(first, markAt(10));
    upload.write("c,d\r\n");
    const second = upload.carrySnapshot();
    if (second === "busy") throw new Error("busy");
    expect(second.key).toBe(first.key);
    expect(second.delta.toString()).toBe("c,d\r\n");
    upload.adoptCarry(second, markAt(20));
    expect(upload.state.carry).toEqual({ key: first.key, bytes: 10 });
    expect(upload.state.mark.offset).toBe(20);
  });

  it("never carries a part's worth: a part is due, so the snapshot is busy", () => {
    const { upload } = uploader();
    upload.write("x".repeat(PART));
    expect(upload.carrySnapshot()).toBe("busy");
  });

  it("keeps a restored carry in its durable state until a part covers it", async () => {
    const restoredKey = "job:carry:attempt-a:0";
    const { upload, persisted } = uploader(
      { mark: markAt(500), carry: { key: restoredKey, bytes: 6 } },
      new Map([[restoredKey, Buffer.from("r1,x\r\n")]]),
    );
    await upload.restore();
    expect(upload.state.carry?.key).toBe(restoredKey);
    expect(upload.retireCarryKeys(upload.state.carry?.key)).toEqual([]);
    upload.write("y".repeat(PART));
    await upload.endRow(() => markAt(900));
    await upload.settle();
    const afterPart = persisted.find((s) => s.parts.length === 1);
    expect(afterPart?.carry).toBeUndefined();
    expect(afterPart?.mark.offset).toBe(900);
    expect(upload.retireCarryKeys(afterPart?.carry?.key)).toEqual([restoredKey]);
  });

  it("keeps the durable state when a part became durable while its carry was stored", async () => {
    const { upload } = uploader();
    upload.write("z".repeat(100));
    const snapshot = upload.carrySnapshot();
    if (snapshot === "busy") throw new Error("busy");
    upload.write("y".repeat(PART));
    await upload.endRow(() => markAt(900));
    await upload.settle();
    upload.adoptCarry(snapshot, markAt(50));
    expect(upload.state.parts).toHaveLength(1);
    expect(upload.state.carry).toBeUndefined();
    expect(upload.state.mark.offset).toBe(900);
    expect(upload.retireCarryKeys(upload.state.carry?.key)).toEqual([snapshot.key]);
  });
});
