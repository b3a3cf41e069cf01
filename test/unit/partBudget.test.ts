import { CreateMultipartUploadCommand, type S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import type { OutputCheckpoint, ResumeMark } from "../../shared/job.ts";
import { PartBudget } from "../../worker/upload/partBudget.ts";
import { ResumableUpload } from "../../worker/upload/resumableUpload.ts";

// A job's two outputs share one window of parts in flight and one set of part buffers: counted
// here with an S3 whose UploadPart answers only when the test lets it.

const PART = 1024 * 1024;

function markAt(offset: number): ResumeMark {
  return {
    offset,
    rowNumber: offset,
    lineNumber: offset + 1,
    counts: { read: 0, valid: 0, rejected: 0, errors: {}, fields: {} },
  };
}

/** An S3 that holds every UploadPart until `answer()`, counting the most held at once. */
function heldS3() {
  const held: (() => void)[] = [];
  const bodies = new Set<ArrayBufferLike>();
  let most = 0;
  let etag = 0;
  const s3 = {
    send: async (command: unknown) => {
      if (command instanceof CreateMultipartUploadCommand) return { UploadId: "u" };
      if (command instanceof UploadPartCommand) {
        // A first part is cut from a buffer still growing from its small start, never kept.
        if ((command.input.PartNumber ?? 0) > 1) bodies.add((command.input.Body as Buffer).buffer);
        await new Promise<void>((resolve) => {
          held.push(resolve);
          most = Math.max(most, held.length);
        });
        return { ETag: `"e${++etag}"` };
      }
      throw new Error(`unexpected ${String(command)}`);
    },
  } as unknown as S3Client;
  return {
    s3,
    /** Answers the oldest held UploadPart, if any. */
    answer: () => held.shift()?.(),
    get held() {
      return held.length;
    },
    get most() {
      return most;
    },
    /** The distinct buffers the bodies of parts after the first were cut from. */
    get buffers() {
      return bodies.size;
    },
  };
}

function uploader(s3: S3Client, key: string, budget: PartBudget): ResumableUpload {
  const state: OutputCheckpoint = { bucket: "b", key, parts: [], bytes: 0, mark: markAt(0) };
  return new ResumableUpload({
    s3,
    state,
    partSize: PART,
    budget,
    checksums: false,
    contentType: "text/csv",
    gzip: false,
    persist: async () => {},
    assertOwner: async () => {},
    carryKey: (parts) => `${key}:${parts}`,
    readCarry: async () => undefined,
    uploads: { creating: async () => {}, created: async () => {} },
  });
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("PartBudget", () => {
  it("hands a released slot to the longest waiter and never lets more than its slots run", async () => {
    const budget = new PartBudget(2);
    const order: string[] = [];
    await budget.acquire();
    await budget.acquire();
    const third = budget.acquire().then(() => order.push("third"));
    const fourth = budget.acquire().then(() => order.push("fourth"));
    await tick();
    expect(order).toEqual([]);
    budget.release();
    await third;
    await tick();
    expect(order).toEqual(["third"]);
    budget.release();
    await fourth;
    expect(order).toEqual(["third", "fourth"]);
  });

  it("keeps at most as many spare buffers as it has slots, and only gives one big enough", () => {
    const budget = new PartBudget(2);
    const buffers = [1, 2, 3].map(() => Buffer.alloc(100));
    for (const b of buffers) budget.keepSpare(b);
    expect(budget.takeSpare(101)).toBeUndefined();
    expect(budget.takeSpare(100)).toBe(buffers[1]);
    expect(budget.takeSpare(100)).toBe(buffers[0]);
    expect(budget.takeSpare(1)).toBeUndefined();
  });

  it("bounds a job's two outputs together: parts in flight and part buffers", async () => {
    const s3 = heldS3();
    const budget = new PartBudget(2);
    const outputs = [uploader(s3.s3, "out.csv", budget), uploader(s3.s3, "rejects.csv", budget)];
    const row = `${"x".repeat(1023)}\n`;
    // Rows go to both outputs in turn, as the row loop writes them; a part is sealed every 1,024
    // rows of each. The row loop waits while a seal waits for a slot; the test answers S3 each
    // time it is stuck.
    for (let i = 0; i < 1024 * 12; i++) {
      for (const output of outputs) {
        output.write(row);
        const sealed = output.endRow(() => markAt(i));
        if (!sealed) continue;
        let done = false;
        void sealed.then(() => {
          done = true;
        });
        for (await tick(); !done; await tick()) s3.answer();
      }
    }
    expect(s3.most).toBe(2);
    while (s3.held > 0) {
      s3.answer();
      await tick();
    }
    // Per output, a window of its own held up to three buffers (six a job); shared, one
    // filling per output and the two in flight.
    expect(s3.buffers).toBeLessThanOrEqual(4);
    expect(outputs.map((o) => o.state.parts.length)).toEqual([12, 12]);
  });
});
