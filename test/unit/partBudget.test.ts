import { CreateMultipartUploadCommand, type S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { describe, expect, it, vi } from "vitest";
import type { OutputCheckpoint } from "../../shared/job.ts";
import { PartBudget } from "../../worker/upload/partBudget.ts";
import { partBufferCapacity } from "../../worker/upload/partBuffer.ts";
import { PartPool } from "../../worker/upload/partPool.ts";
import { ResumableUpload } from "../../worker/upload/resumableUpload.ts";
import { markAt } from "../support/checkpointFixture.ts";

// A job's two outputs share one window of parts in flight and one set of part buffers: counted
// here with an S3 whose UploadPart answers only when the test lets it.

const PART = 1024 * 1024;

/**
 * An S3 that holds every UploadPart until the test answers or fails it, counting the most held
 * at once, the parts sent, the buffers parts were cut from, and the bodies whose
 * bytes changed before S3 answered (a buffer handed out again while still being uploaded).
 */
function heldS3() {
  const held: { resolve: () => void; reject: (error: Error) => void }[] = [];
  const buffers = new Set<ArrayBufferLike>();
  let most = 0;
  let sent = 0;
  let changed = 0;
  let etag = 0;
  const s3 = {
    send: async (command: unknown) => {
      if (command instanceof CreateMultipartUploadCommand) return { UploadId: "u" };
      if (command instanceof UploadPartCommand) {
        sent++;
        const body = command.input.Body as Buffer;
        const copy = Buffer.from(body);
        // A first part is cut from a buffer on its way from its small start: left out.
        if ((command.input.PartNumber ?? 0) > 1) buffers.add(body.buffer);
        await new Promise<void>((resolve, reject) => {
          held.push({ resolve, reject });
          most = Math.max(most, held.length);
        });
        if (!body.equals(copy)) changed++;
        return { ETag: `"e${++etag}"` };
      }
      throw new Error(`unexpected ${String(command)}`);
    },
  } as unknown as S3Client;
  return {
    s3,
    /** Answers the oldest held UploadPart, if any. */
    answer: () => held.shift()?.resolve(),
    /** Fails the oldest held UploadPart. */
    fail: (error: Error) => held.shift()?.reject(error),
    get held() {
      return held.length;
    },
    get most() {
      return most;
    },
    get sent() {
      return sent;
    },
    get changed() {
      return changed;
    },
    /** The distinct buffers the parts after the first were cut from. */
    get buffers() {
      return buffers.size;
    },
  };
}

/** Waits for a sealed part's slot, answering held parts while it is stuck (as S3 would). */
async function sealedAnswering(sealed: Promise<void>, s3: ReturnType<typeof heldS3>) {
  let done = false;
  void sealed.then(() => {
    done = true;
  });
  for (await tick(); !done; await tick()) s3.answer();
  await sealed;
}

async function answerAll(s3: ReturnType<typeof heldS3>) {
  while (s3.held > 0) {
    s3.answer();
    await tick();
  }
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

/**
 * Row `i` of an output, 1,024 bytes: rows differ, so a part buffer handed out again while its
 * part uploads changes the part's bytes (identical rows would write the same bytes over it).
 */
const rowOf = (name: string, i: number, length = 1024) =>
  `${`${name} ${i} `.padEnd(length - 1, "x")}\n`;

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

  it("refuses a release without a slot acquired", async () => {
    const budget = new PartBudget(1);
    expect(() => budget.release()).toThrow("without a slot acquired");
    await budget.acquire();
    budget.release();
    expect(() => budget.release()).toThrow("without a slot acquired");
  });

  it("gives the slot back when the upload cannot even be created", async () => {
    const budget = new PartBudget(2);
    const failing = {
      send: async () => {
        throw new Error("CreateMultipartUpload failed");
      },
    } as unknown as S3Client;
    const output = uploader(failing, "out.csv", budget);
    let sealed: Promise<void> | undefined;
    for (let i = 0; !sealed; i++) {
      output.write(rowOf("output", i));
      sealed = output.endRow(() => markAt(i));
    }
    await expect(sealed).rejects.toThrow("CreateMultipartUpload failed");
    // Both slots are free: a third acquire waits, the first two do not.
    await budget.acquire();
    await budget.acquire();
    let third = false;
    void budget.acquire().then(() => {
      third = true;
    });
    await tick();
    expect(third).toBe(false);
  });

  it("keeps at most as many spare buffers as a job uses at once, and only gives one big enough", () => {
    // One slot: a part in flight and one filling per output, three buffers.
    const budget = new PartBudget(1);
    const buffers = [1, 2, 3, 4].map(() => Buffer.alloc(100));
    for (const b of buffers) budget.keepSpare(b);
    expect(budget.takeSpare(101)).toBeUndefined();
    expect(budget.takeSpare(100)).toBe(buffers[2]);
    expect(budget.takeSpare(100)).toBe(buffers[1]);
    expect(budget.takeSpare(100)).toBe(buffers[0]);
    expect(budget.takeSpare(1)).toBeUndefined();
  });

  it("bounds a job's two outputs together: parts in flight and part buffers", async () => {
    const s3 = heldS3();
    const budget = new PartBudget(2);
    const outputs = [uploader(s3.s3, "out.csv", budget), uploader(s3.s3, "rejects.csv", budget)];
    // Rows go to both outputs in turn, as the row loop writes them; a part is sealed every 1,024
    // rows of each. The row loop waits while a seal waits for a slot.
    for (let i = 0; i < 1024 * 12; i++) {
      for (const [k, output] of outputs.entries()) {
        output.write(rowOf(`output${k}`, i));
        const sealed = output.endRow(() => markAt(i));
        if (sealed) await sealedAnswering(sealed, s3);
      }
    }
    expect(s3.most).toBe(2);
    await answerAll(s3);
    // Per output, a window of its own held up to three buffers (six a job); shared, one
    // filling per output and the two in flight.
    expect(s3.buffers).toBeLessThanOrEqual(4);
    expect(s3.changed).toBe(0);
    expect(outputs.map((o) => o.state.parts.length)).toEqual([12, 12]);
  });

  it("lets a small reject report grow in buffers of its own, not the output's part buffers", async () => {
    // Every part-sized buffer made, new or grown into (a part and the room past it).
    const made: number[] = [];
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    const transfer = vi.spyOn(ArrayBuffer.prototype, "transfer");
    try {
      const s3 = heldS3();
      const budget = new PartBudget(2);
      const output = uploader(s3.s3, "out.csv", budget);
      const rejects = uploader(s3.s3, "rejects.csv", budget);
      // Each part is answered once the output fills the next, and then a long reject is
      // written: the report outgrows its first buffer (at its second) while the answered part's
      // buffer waits for the output's next part. The report never makes a part, so a part
      // buffer it took would cost the output a fresh one.
      for (let i = 0; i < 1024 * 12; i++) {
        output.write(rowOf("output", i));
        const sealed = output.endRow(() => markAt(i));
        if (sealed) await sealedAnswering(sealed, s3);
        if (i % 1024 === 100) {
          await answerAll(s3);
          rejects.write(rowOf("rejected", i, 17_000));
          rejects.endRow(() => markAt(i));
        }
      }
      await answerAll(s3);
      expect(rejects.state.parts).toEqual([]);
      for (const call of [...allocUnsafe.mock.calls, ...transfer.mock.calls]) {
        if ((call[0] ?? 0) > PART + 64 * 1024) made.push(call[0] as number);
      }
      // The output's first part grown into one, and the one it fills while that uploads.
      expect(made).toHaveLength(2);
      expect(s3.changed).toBe(0);
    } finally {
      allocUnsafe.mockRestore();
      transfer.mockRestore();
    }
  });

  it("gives a worker's next job the part buffers of the one before it: it makes none", async () => {
    const pool = new PartPool(partBufferCapacity(PART), 8, 30_000);
    const s3 = heldS3();
    /** One job of 6 parts, each answered once the next is filling; the part-sized buffers made. */
    const job = async (name: string) => {
      const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
      try {
        const budget = new PartBudget(2, pool);
        const output = uploader(s3.s3, `${name}.csv`, budget);
        for (let i = 0; i < 1024 * 6; i++) {
          output.write(rowOf(name, i));
          const sealed = output.endRow(() => markAt(i));
          if (sealed) await sealedAnswering(sealed, s3);
        }
        await answerAll(s3);
        budget.close();
        return allocUnsafe.mock.calls.filter(([size]) => size >= partBufferCapacity(PART)).length;
      } finally {
        allocUnsafe.mockRestore();
      }
    };
    expect(await job("first")).toBeGreaterThan(0);
    expect(pool.size).toBeGreaterThan(0);
    expect(await job("second")).toBe(0);
    // No buffer was handed out again while its part was in flight.
    expect(s3.changed).toBe(0);
    pool.clear();
  });

  it("fails the row loop, sending nothing more, when a part fails while the next waits for its slot", async () => {
    const s3 = heldS3();
    const output = uploader(s3.s3, "out.csv", new PartBudget(1));
    const seal = () => {
      for (let i = 0; i < 1024; i++) {
        output.write(rowOf("output", i));
        const sealed = output.endRow(() => markAt(i));
        if (sealed) return sealed;
      }
      throw new Error("no part sealed");
    };
    await seal();
    const second = seal();
    let failed: unknown;
    second.catch((error: unknown) => {
      failed = error;
    });
    await tick();
    expect(failed).toBeUndefined();
    s3.fail(new Error("part 1 failed"));
    await tick();
    await expect(second).rejects.toThrow("part 1 failed");
    expect(s3.sent).toBe(1);
  });
});
