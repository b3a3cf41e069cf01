import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CsvFramer, type FramedRow } from "../../worker/csv/csvFramer.ts";
import { RowParser } from "../../worker/csv/rowParser.ts";

// Property: any CSV document, serialized with any line ending and split into chunks anywhere,
// frames into the same rows, with the same byte offsets and line numbers as one whole read, and
// every row parses back into the fields it was written from.

const unit = fc.constantFrom("a", "b", " ", ",", '"', "\n", "\r", "é", "😀", "日");
const field = fc.array(unit, { maxLength: 6 }).map((chars) => chars.join(""));
const row = fc.array(field, { minLength: 1, maxLength: 5 });

function serialize(fields: string[]): string {
  return fields.map((f) => (/[",\r\n]/.test(f) ? `"${f.replaceAll('"', '""')}"` : f)).join(",");
}

function lineBreaks(text: string): number {
  return text.match(/\r\n|\r|\n/g)?.length ?? 0;
}

function frame(bytes: Buffer, cuts: number[]): FramedRow[] {
  const framer = new CsvFramer({
    delimiter: ",",
    quote: '"',
    maxRowBytes: 1 << 20,
    startOffset: 0,
    startLine: 1,
  });
  const rows: FramedRow[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    rows.push(...framer.push(bytes.subarray(at, cut)));
    at = cut;
  }
  return [...rows, ...framer.end()];
}

describe("CSV framing and parsing (property)", () => {
  it("gives the written rows, exact offsets and lines, wherever the chunks are cut", () => {
    const parser = new RowParser({ delimiter: ",", quote: '"' });
    fc.assert(
      fc.property(
        fc.array(row, { minLength: 1, maxLength: 15 }),
        fc.constantFrom("\n", "\r\n", "\r"),
        fc.array(fc.nat(), { maxLength: 6 }),
        (rows, newline, rawCuts) => {
          const lines = rows.map((r) => serialize(r) + newline);
          const bytes = Buffer.from(lines.join(""));
          const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort(
            (a, b) => a - b,
          );
          const framed = frame(bytes, cuts);
          expect(framed).toHaveLength(rows.length);
          let offset = 0;
          let line = 1;
          framed.forEach((f, k) => {
            const written = lines[k] as string;
            expect(f.start).toBe(offset);
            expect(f.end).toBe(offset + Buffer.byteLength(written));
            expect(f.line).toBe(line);
            expect(f.unterminated || f.oversize).toBe(false);
            const parsed = parser.parseRow(
              f.bytes,
              Buffer.from(f.bytes).toString("utf8"),
              f.quoted,
            );
            expect(parsed).toEqual({ ok: true, fields: rows[k] });
            offset = f.end;
            line += 1 + lineBreaks(serialize(rows[k] as string[]));
          });
          const view = (rs: FramedRow[]) =>
            rs.map((r) => ({
              text: Buffer.from(r.bytes).toString("latin1"),
              start: r.start,
              end: r.end,
              line: r.line,
            }));
          expect(view(frame(bytes, []))).toEqual(view(framed));
        },
      ),
      { numRuns: 500 },
    );
  });
});
