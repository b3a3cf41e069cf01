import Papa from "papaparse";
import { describe, expect, it } from "vitest";
import { MemorySink } from "../../bench/memorySink.ts";
import { JobOptions, SUMMARY_FIELDS, SUMMARY_ROWS } from "../../shared/job.ts";
import { TableSchema } from "../../shared/tableSchema.ts";
import { CsvFramer } from "../../worker/csv/csvFramer.ts";
import { compileTableSchema } from "../../worker/judge/validatorCompiler.ts";
import {
  ROW_REPORT_CHARS,
  RowProcessor,
  type RowSink,
} from "../../worker/pipeline/rowProcessor.ts";
import { startMark } from "../../worker/source/firstAttempt.ts";

// The row processor on its own: rows from memory, outputs into memory.

/** A sink that keeps its text, to read the reject report back. */
class TextSink implements RowSink {
  text = "";
  get empty(): boolean {
    return this.text === "";
  }
  write(text: string): void {
    this.text += text;
  }
  writeBytes(bytes: Uint8Array, suffix?: Uint8Array): void {
    this.text += Buffer.from(bytes).toString() + (suffix ? Buffer.from(suffix).toString() : "");
  }
  endRow(): undefined {
    return undefined;
  }
}

function process(csv: string, schema: unknown, rejects: RowSink = new MemorySink(1 << 20)) {
  const options = { ...JobOptions.parse({}), delimiter: "," };
  const sinks = { output: new MemorySink(1 << 20), rejects };
  const processor = new RowProcessor({
    options,
    judges: compileTableSchema(TableSchema.parse(schema)),
    from: startMark(),
    writeFrom: { output: 0, rejects: 0 },
    sinks,
    header: null,
    onHeader: () => {},
  });
  const framer = new CsvFramer({ ...options, startOffset: 0, startLine: 1 });
  for (const row of [...framer.push(Buffer.from(csv)), ...framer.end()]) processor.process(row);
  return processor.position.counts;
}

describe("RowProcessor's error summary by field", () => {
  it("counts each field's errors by code and names its first rows", () => {
    const schema = {
      fields: [
        { name: "id", type: "integer" },
        { name: "email", type: "string", format: "email" },
      ],
    };
    const rows = ["id,email"];
    for (let i = 1; i <= 9; i++) rows.push(i % 2 ? `x${i},bad` : `${i},ok@example.com`);
    rows.push("10", "11,a@example.com,extra");
    const counts = process(`${rows.join("\n")}\n`, schema);
    expect(counts.fields).toEqual({
      id: { errors: { "type-error": 5 }, rows: [1, 3, 5, 7, 9] },
      email: { errors: { "type-error": 5, "missing-cell": 1 }, rows: [1, 3, 5, 7, 9] },
      "(row)": { errors: { "extra-cell": 1 }, rows: [11] },
    });
    expect(counts.errors).toEqual({ "type-error": 10, "missing-cell": 1, "extra-cell": 1 });
  });

  it("stays bounded however many fields and rows fail", () => {
    const names = Array.from({ length: SUMMARY_FIELDS + 10 }, (_, i) => `f${i}`);
    const schema = { fields: names.map((name) => ({ name, type: "integer" })) };
    const bad = names.map(() => "x").join(",");
    const counts = process(`${names.join(",")}\n${`${bad}\n`.repeat(20)}`, schema);
    expect(Object.keys(counts.fields)).toHaveLength(SUMMARY_FIELDS + 1);
    expect(counts.fields["(other fields)"]?.errors["type-error"]).toBe(10 * 20);
    for (const entry of Object.values(counts.fields)) {
      expect(entry.rows).toEqual([1, 2, 3, 4, 5].slice(0, SUMMARY_ROWS));
    }
  });
});

describe("RowProcessor's reject report", () => {
  const report = (csv: string, schema: unknown) => {
    const rejects = new TextSink();
    const counts = process(csv, schema, rejects);
    const lines = Papa.parse<string[]>(rejects.text, { skipEmptyLines: true }).data;
    // The report's physical lines (no cell here holds a newline), the header's first.
    const physical = rejects.text.split(/(?<=\n)/).slice(1);
    return { counts, lines: lines.slice(1), physical, chars: rejects.text.length };
  };
  const integers = (width: number) => {
    const names = Array.from({ length: width }, (_, i) => `f${i}`);
    return {
      header: names.join(","),
      schema: { fields: names.map((name) => ({ name, type: "integer" })) },
    };
  };

  it("lists every error of a row, each line with the row's text", () => {
    const { header, schema } = integers(3);
    const { lines } = report(`${header}\nx,y,1\n1\n`, schema);
    expect(lines.map(([number, , field, code, , raw]) => [number, field, code, raw])).toEqual([
      ["1", "f0", "type-error", "x,y,1"],
      ["1", "f1", "type-error", "x,y,1"],
      ["2", "f1", "missing-cell", "1"],
      ["2", "f2", "missing-cell", "1"],
    ]);
    expect(lines.some(([, , , , message]) => message?.includes("not listed"))).toBe(false);
  });

  it("bounds a row's lines by ROW_REPORT_CHARS however long and wide the row, and says what it leaves out", () => {
    const { header, schema } = integers(2000);
    for (const length of [100, 1_000, 10_000, 200_000]) {
      // A short row: a cell missing for each of the 1,999 columns after its first.
      const row = "y".repeat(length);
      const next = `z${",1".repeat(1999)}`;
      const { counts, lines, physical, chars } = report(`${header}\n${row}\n${next}\n`, schema);
      const listed = lines.filter(([number]) => number === "1").length;
      const long = physical.slice(0, listed);
      expect(lines.slice(0, listed).every(([, , , , , raw]) => raw === row)).toBe(true);
      // Lines are listed up to the first that passes the room (which says what is left out):
      // at least one, never all 1,999.
      expect(listed).toBeGreaterThanOrEqual(1);
      expect(listed).toBeLessThan(1999);
      const left = 1999 - listed;
      const note = ` (and ${left} more errors of this row, not listed: ${left} missing-cell)`;
      expect(lines[listed - 1]?.[4]?.endsWith(note)).toBe(true);
      const before = long.slice(0, -1).join("").length;
      expect(before).toBeLessThanOrEqual(ROW_REPORT_CHARS);
      expect(before + (long.at(-1) as string).length - note.length).toBeGreaterThan(
        ROW_REPORT_CHARS,
      );
      // The row after it is reported as before; the result counts every error.
      expect(lines.slice(listed)).toEqual([
        ["2", "3", "f0", "type-error", expect.any(String), next],
      ]);
      expect(counts.errors).toEqual({ "type-error": 1, "missing-cell": 1999 });
      // What the report holds past the room: about one line of the long row, and the next row.
      expect(chars).toBeLessThan(ROW_REPORT_CHARS + row.length + next.length + 1000);
    }
  });
});
