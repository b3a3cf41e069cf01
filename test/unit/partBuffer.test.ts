import { describe, expect, it, vi } from "vitest";
import { PartBudget } from "../../worker/upload/partBudget.ts";
import { PartBuffer } from "../../worker/upload/partBuffer.ts";

describe("PartBuffer", () => {
  it("encodes appended text exactly, multi-byte characters and surrogate pairs included", () => {
    const buffer = new PartBuffer(1024, new PartBudget(2));
    const rows = ["a,b\n", "Zoë,Núñez\r\n", "😀,日本\n"];
    let expected = "";
    for (let i = 0; i < 5000; i++) {
      const row = rows[i % rows.length] as string;
      buffer.append(row);
      expected += row;
    }
    expect(buffer.bytes).toBe(Buffer.byteLength(expected));
    expect(buffer.copyFrom(0).toString("utf8")).toBe(expected);
    expect(buffer.take().toString("utf8")).toBe(expected);
    expect(buffer.isEmpty).toBe(true);
  });

  it("says when a part's worth of bytes is in, text and bytes alike, and gives copies for carries", () => {
    const buffer = new PartBuffer(1024, new PartBudget(2));
    buffer.append("x".repeat(8));
    buffer.append("é😀");
    // 8 + 2 + 4 bytes: the two characters are 3 UTF-16 units but 6 bytes.
    expect(buffer.holds(14)).toBe(true);
    expect(buffer.holds(15)).toBe(false);
    buffer.appendBytes(Buffer.from("日本"));
    expect(buffer.holds(20)).toBe(true);
    expect(buffer.holds(21)).toBe(false);
    expect(buffer.bytes).toBe(20);
    expect(buffer.take().toString("utf8")).toBe(`${"x".repeat(8)}é😀日本`);
    expect(buffer.holds(1)).toBe(false);
    buffer.append("x".repeat(10));
    expect(buffer.isEmpty).toBe(false);
    const copy = buffer.copyFrom(4);
    expect(copy.toString()).toBe("xxxxxx");
    buffer.append("y");
    expect(buffer.bytes).toBe(11);
    expect(copy.toString()).toBe("xxxxxx");
  });

  it("refills the buffer of an uploaded part instead of allocating a new one", () => {
    const partSize = 256 * 1024;
    const buffer = new PartBuffer(partSize, new PartBudget(1));
    buffer.append("a".repeat(partSize));
    const first = buffer.take();
    buffer.release(first);
    buffer.append("b".repeat(partSize));
    const second = buffer.take();
    expect(second.buffer === first.buffer).toBe(true);
    expect(second.toString()).toBe("b".repeat(partSize));
    // A body still being uploaded is never handed out again.
    buffer.append("c".repeat(partSize));
    expect(buffer.take().buffer === second.buffer).toBe(false);
  });

  it("grows a refilled buffer past its capacity without touching a part still in flight", () => {
    // A part at least half its buffer: what a real part size (5 MiB or more) always is.
    const partSize = 256 * 1024;
    const buffer = new PartBuffer(partSize, new PartBudget(2));
    buffer.append("a".repeat(partSize));
    const first = buffer.take();
    buffer.append("b".repeat(partSize));
    const inFlight = buffer.take();
    buffer.release(first);
    // Refills first's buffer, then outgrows it: the bytes move to a larger buffer and the one
    // outgrown is freed (detached), while the body still being uploaded is left as it is.
    buffer.append("start,");
    buffer.appendBytes(Buffer.from("c".repeat(3 * partSize)));
    expect((first.buffer as ArrayBuffer).detached).toBe(true);
    expect((inFlight.buffer as ArrayBuffer).detached).toBe(false);
    expect(inFlight.toString()).toBe("b".repeat(partSize));
    expect(buffer.take().toString()).toBe(`start,${"c".repeat(3 * partSize)}`);
  });

  it("reaches a part's size in three steps from its small start, not by doubling", () => {
    // Each step copies the bytes so far into fresh pages; doubling from 64 KiB to 8 MiB took
    // eight and faulted a part's pages twice.
    const transfer = vi.spyOn(ArrayBuffer.prototype, "transfer");
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    try {
      const partSize = 8 * 1024 * 1024;
      const buffer = new PartBuffer(partSize, new PartBudget(1));
      const row = Buffer.from(`${"r".repeat(99)}\n`);
      for (let i = 0; i < partSize / row.length; i++) buffer.appendBytes(row);
      // 64 KiB to 256 KiB, to 1 MiB, to a part's capacity: each unfilled (a zero-filled buffer
      // faults all its pages, written or not), each outgrown one freed at once.
      const sizes = allocUnsafe.mock.calls.map(([size]) => size);
      expect(sizes.slice(0, 3)).toEqual([64 * 1024, 256 * 1024, 1024 * 1024]);
      expect(sizes).toHaveLength(4);
      expect(sizes[3]).toBeGreaterThan(partSize);
      expect(transfer.mock.calls.map(([size]) => size)).toEqual([0, 0, 0]);
      expect(buffer.take().length).toBe(Math.ceil(partSize / row.length) * row.length);
    } finally {
      transfer.mockRestore();
      allocUnsafe.mockRestore();
    }
  });

  it("frees its small buffer at once when it moves into a spare part buffer", () => {
    // A reject report growing past 1 MiB takes the spare the output gave back: the buffer it
    // grew in so far must not wait for the GC.
    const partSize = 2 * 1024 * 1024;
    const budget = new PartBudget(2);
    const output = new PartBuffer(partSize, budget);
    output.append("o".repeat(partSize));
    const uploaded = output.take();
    output.release(uploaded);
    const grown: ArrayBuffer[] = [];
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    const transfer = vi.spyOn(ArrayBuffer.prototype, "transfer");
    try {
      const report = new PartBuffer(partSize, budget);
      const row = Buffer.from(`${"r".repeat(1023)}\n`);
      for (let i = 0; i < 1200; i++) report.appendBytes(row);
      // Every buffer the report grew in: its first, and each a step of growth made (a transfer
      // to length 0 is the freeing, not a step).
      for (const result of allocUnsafe.mock.results)
        grown.push((result.value as Buffer).buffer as ArrayBuffer);
      transfer.mock.calls.forEach(([length], i) => {
        if (length !== 0) grown.push(transfer.mock.results[i]?.value as ArrayBuffer);
      });
      const body = report.take();
      expect(body.buffer === uploaded.buffer).toBe(true);
      expect(body.equals(Buffer.concat(Array.from({ length: 1200 }, () => row)))).toBe(true);
      // 64 KiB, then 256 KiB, then 1 MiB: the spare is taken on the way past 1 MiB.
      expect(grown.map((memory) => memory.detached)).toEqual([true, true, true]);
    } finally {
      allocUnsafe.mockRestore();
      transfer.mockRestore();
    }
  });

  it("holds text of 3-byte characters far past its usual capacity, exactly", () => {
    const partSize = 64 * 1024;
    const buffer = new PartBuffer(partSize, new PartBudget(1));
    const row = "日本語のテキスト,東京\n";
    let expected = "";
    let units = 0;
    while (units < 3 * partSize) {
      buffer.append(row);
      expected += row;
      units += row.length;
    }
    expect(buffer.bytes).toBeGreaterThan(2.5 * 3 * partSize);
    expect(buffer.take().toString("utf8")).toBe(expected);
  });
});

describe("PartBuffer, text and bytes interleaved", () => {
  it("keeps the order of text and bytes, whichever comes first", () => {
    const buffer = new PartBuffer(64 * 1024, new PartBudget(1));
    let expected = "";
    for (let i = 0; i < 20_000; i++) {
      const row = i % 3 === 0 ? `text ${i},Zoë\r\n` : `bytes ${i},東京\r\n`;
      if (i % 3 === 0) buffer.append(row);
      else buffer.appendBytes(Buffer.from(row));
      expected += row;
    }
    expect(buffer.take().toString("utf8")).toBe(expected);
  });
});
