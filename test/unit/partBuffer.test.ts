import { describe, expect, it } from "vitest";
import { PartBuffer } from "../../worker/upload/partBuffer.ts";

describe("PartBuffer", () => {
  it("encodes appended text exactly, multi-byte characters and surrogate pairs included", () => {
    const buffer = new PartBuffer(1024, 2);
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

  it("counts UTF-16 units since the part began, and gives copies for carries", () => {
    const buffer = new PartBuffer(1024, 2);
    buffer.append("x".repeat(8));
    buffer.append("é😀");
    expect(buffer.units).toBe(11);
    expect(buffer.bytes).toBe(14);
    buffer.take();
    expect(buffer.units).toBe(0);
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
    const buffer = new PartBuffer(partSize, 1);
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

  it("holds a part of 3-byte characters, three times partSize in bytes, exactly", () => {
    const partSize = 64 * 1024;
    const buffer = new PartBuffer(partSize, 1);
    const row = "日本語のテキスト,東京\n";
    let expected = "";
    while (buffer.units < partSize) {
      buffer.append(row);
      expected += row;
    }
    expect(buffer.bytes).toBeGreaterThan(2.5 * partSize);
    expect(buffer.take().toString("utf8")).toBe(expected);
  });
});
