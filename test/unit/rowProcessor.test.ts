import Papa from "papaparse";
import { describe, expect, it, vi } from "vitest";
import { MemorySink } from "../../bench/memorySink.ts";
import { JobOptions, RowCounts, SUMMARY_FIELDS, SUMMARY_ROWS } from "../../shared/job.ts";
import { TableSchema } from "../../shared/tableSchema.ts";
import { CsvFramer } from "../../worker/csv/csvFramer.ts";
import { PermanentJobError } from "../../worker/errors.ts";
import { compileTableSchema } from "../../worker/judge/validatorCompiler.ts";
import {
  ROW_REPORT_MAX,
  RowProcessor,
  type RowSink,
  rowReportRoom,
} from "../../worker/pipeline/rowProcessor.ts";
import { startMark } from "../../worker/source/firstAttempt.ts";
import { renumberedReport } from "../../worker/split/rejectRenumber.ts";
import { CollectSink } from "../support/collectSink.ts";

// The row processor on its own: rows from memory, outputs into memory.

/** `shard`: rows from a byte offset on, the header known, as a split job's shard reads them. */
function process(
  csv: string | Buffer,
  schema: unknown,
  rejects: RowSink = new MemorySink(1 << 20),
  shard?: { offset: number; header: string[] },
) {
  const options = { ...JobOptions.parse({}), delimiter: "," };
  const sinks = { output: new MemorySink(1 << 20), rejects };
  const offset = shard?.offset ?? 0;
  const processor = new RowProcessor({
    options,
    judges: compileTableSchema(TableSchema.parse(schema)),
    from: { ...startMark(), offset },
    writeFrom: { output: 0, rejects: 0 },
    sinks,
    header: shard?.header ?? null,
    onHeader: () => {},
    headers: shard === undefined,
  });
  const framer = new CsvFramer({ ...options, startOffset: offset, startLine: 1 });
  const bytes = (typeof csv === "string" ? Buffer.from(csv) : csv).subarray(offset);
  for (const row of [...framer.push(bytes), ...framer.end()]) processor.process(row);
  return processor.position.counts;
}

describe("RowProcessor's error summary by field", () => {
  it("finds each error's entry without counting the entries again once the summary is full", () => {
    // A wide row whose every cell is invalid: an error per column, most of them for fields
    // without an entry. (A short row's missing cells are counted at once: missingCells.test.ts.)
    const names = Array.from({ length: 2000 }, (_, i) => `f${i}`);
    const schema = { fields: names.map((name) => ({ name, type: "integer" })) };
    const row = `${names.map(() => "x").join(",")}\n`;
    const keysCalled = (rows: number) => {
      const keys = vi.spyOn(Object, "keys");
      try {
        const counts = process(`${names.join(",")}\n${row.repeat(rows)}`, schema);
        expect(counts.errors["type-error"]).toBe(rows * 2000);
        const other = counts.fields["(other fields)"]?.errors["type-error"];
        expect(other).toBe(rows * (2000 - SUMMARY_FIELDS));
        return keys.mock.calls.length;
      } finally {
        keys.mockRestore();
      }
    };
    // Twenty rows more, 39,980 errors more, of which 39,000 for fields without an entry: fewer
    // calls than rows added (other code's), where the entries were counted once per error.
    expect(keysCalled(40) - keysCalled(20)).toBeLessThan(20);
  });

  it("summarizes a column named as a property every object has, as any other", () => {
    const names = ["id", "constructor", "toString", "__proto__"];
    const schema = { fields: names.map((name) => ({ name, type: "integer" })) };
    const counts = process(`${names.join(",")}\n1,x,2,y\n3\n`, schema);
    expect(JSON.parse(JSON.stringify(counts.fields))).toEqual(
      JSON.parse(
        '{"constructor":{"errors":{"type-error":1,"missing-cell":1},"rows":[1,2]},"__proto__":{"errors":{"type-error":1,"missing-cell":1},"rows":[1,2]},"toString":{"errors":{"missing-cell":1},"rows":[2]}}',
      ),
    );
    expect(Object.getPrototypeOf(counts.fields)).toBe(Object.prototype);
  });

  it("keeps every summary entry through a checkpoint, one for a column named __proto__ too", () => {
    const names = ["__proto__", "id", "constructor"];
    const schema = { fields: names.map((name) => ({ name, type: "integer" })) };
    const counts = process(`${names.join(",")}\nx,y,z\n1\n`, schema);
    expect(Object.keys(counts.fields)).toEqual(names);
    // What a checkpoint or a shard's result is: JSON in the job's data, read back through zod.
    const read = RowCounts.parse(JSON.parse(JSON.stringify(counts)));
    expect(JSON.stringify(read)).toBe(JSON.stringify(counts));
    expect(Object.getPrototypeOf(read.fields)).toBe(Object.prototype);
    // The name __proto__ crosses zod as another; the names that other could be stay apart.
    const entry = (row: number) => ({ errors: { "type-error": 1 }, rows: [row] });
    const near = { ...counts, fields: {} as RowCounts["fields"] };
    for (const [row, name] of ["\0__proto__", "__proto__", "\0\0__proto__", "_proto__"].entries()) {
      Object.defineProperty(near.fields, name, { value: entry(row + 1), enumerable: true });
    }
    expect(JSON.stringify(RowCounts.parse(JSON.parse(JSON.stringify(near))))).toBe(
      JSON.stringify(near),
    );
  });

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

describe("RowProcessor's header that does not match the schema", () => {
  const schema = {
    fields: [
      { name: "id", type: "integer" },
      { name: "name", type: "string" },
    ],
  };
  const failure = (csv: string | Buffer): string => {
    try {
      process(csv, schema);
    } catch (error) {
      expect(error).toBeInstanceOf(PermanentJobError);
      return (error as Error).message;
    }
    throw new Error("the header was accepted");
  };
  const invisible = /[\p{Cc}\p{Cf}]/u;

  it("shows a label's invisible characters escaped: a BOM or a zero-width space is not the label it looks like", () => {
    // A second BOM (two files joined, say) and a zero-width space read as part of the labels.
    const message = failure("name,\uFEFFid,na\u200Bme\n1,Ada,x\n");
    expect(message).toContain('extra-label: "\\uFEFFid", "na\\u200Bme"');
    expect(message).not.toMatch(invisible);
    expect(message).not.toContain("UTF-16");
  });

  it("names UTF-16 without a byte order mark when the labels hold NUL bytes, escaped", () => {
    for (const encoding of ["utf16le", "utf16be"] as const) {
      const bytes = Buffer.from("id,name\n1,Ada\n", "utf16le");
      if (encoding === "utf16be") bytes.swap16();
      const message = failure(bytes);
      // Big-endian, each character's NUL byte comes first: the comma's ends the label before it.
      const id = encoding === "utf16le" ? "i\\u0000d\\u0000" : "\\u0000i\\u0000d\\u0000";
      expect(message).toContain(`extra-label: "${id}"`);
      expect(message).not.toMatch(invisible);
      expect(message).toMatch(
        /; the header holds NUL bytes: the file looks like UTF-16 without a byte order mark \(save it as UTF-8, or as UTF-16 with one and pass --options '\{"encoding":"utf-16"\}'\)$/,
      );
    }
  });
});

async function* chunks(text: string): AsyncGenerator<Uint8Array> {
  yield Buffer.from(text);
}

describe("RowProcessor's reject report", () => {
  const report = (csv: string, schema: unknown) => {
    const rejects = new CollectSink();
    const counts = process(csv, schema, rejects);
    const lines = Papa.parse<string[]>(rejects.text(), { skipEmptyLines: true }).data.slice(1);
    // The report's physical lines (no cell here holds a newline), the header's first.
    const physical = rejects
      .text()
      .split(/(?<=\n)/)
      .slice(1);
    // What a line takes of its row's room: all of it but the row and line numbers.
    const used = physical.map((text, i) => {
      const [number, line] = lines[i] as string[];
      return text.length - (number as string).length - (line as string).length;
    });
    return { counts, lines, used, chars: rejects.text().length };
  };
  const integers = (width: number) => {
    const names = Array.from({ length: width }, (_, i) => `f${i}`);
    return {
      names,
      header: names.join(","),
      schema: { fields: names.map((name) => ({ name, type: "integer" })) },
    };
  };
  const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);
  const NOTE = / \(and (\d+) more errors? of this row, not listed: [^)]*\)$/;

  it("lists every error of a row, each line with the row's text", () => {
    const { header, schema } = integers(3);
    const { lines } = report(`${header}\nx,y,1\n1\n`, schema);
    expect(lines.map(([number, , field, code, , raw]) => [number, field, code, raw])).toEqual([
      ["1", "f0", "type-error", "x,y,1"],
      ["1", "f1", "type-error", "x,y,1"],
      ["2", "f1", "missing-cell", "1"],
      ["2", "f2", "missing-cell", "1"],
    ]);
    expect(lines.some(([, , , , message]) => NOTE.test(message as string))).toBe(false);
  });

  it("bounds a row's lines by rowReportRoom however long and wide the row, and says what it leaves out", () => {
    const { header, schema } = integers(2000);
    for (const length of [1, 100, 1_000, 10_000, 200_000]) {
      // A short row: a cell missing for each of the 1,999 columns after its first.
      const row = "y".repeat(length);
      const next = `z${",1".repeat(1999)}`;
      const { counts, lines, used, chars } = report(`${header}\n${row}\n${next}\n`, schema);
      const listed = lines.filter(([number]) => number === "1").length;
      expect(lines.slice(0, listed).every(([, , , , , raw]) => raw === row)).toBe(true);
      // Lines are listed up to the first that passes the room (which says what is left out):
      // at least one, never all 1,999.
      expect(listed).toBeGreaterThanOrEqual(1);
      expect(listed).toBeLessThan(1999);
      const left = 1999 - listed;
      const note = NOTE.exec(lines[listed - 1]?.[4] as string);
      expect(note?.[0]).toBe(
        ` (and ${left} more errors of this row, not listed: ${left} missing-cell)`,
      );
      const room = rowReportRoom(row);
      const before = sum(used.slice(0, listed - 1));
      expect(before).toBeLessThanOrEqual(room);
      expect(before + (used[listed - 1] as number) - (note?.[0].length ?? 0)).toBeGreaterThan(room);
      // The row after it is reported as before; the result counts every error.
      expect(lines.slice(listed)).toEqual([
        ["2", "3", "f0", "type-error", expect.any(String), next],
      ]);
      expect(counts.errors).toEqual({ "type-error": 1, "missing-cell": 1999 });
      // What the report holds past the room: a line of the long row, and the next row.
      expect(chars).toBeLessThan(room + row.length + next.length + 2000);
    }
  });

  it("fills the room to the unit: a line that ends exactly at it is not the last", () => {
    const { header, schema } = integers(200);
    let exact = 0;
    for (let length = 100; length < 400; length++) {
      const row = "y".repeat(length);
      const { lines, used } = report(`${header}\n${row}\n`, schema);
      const listed = lines.length;
      const before = sum(used.slice(0, listed - 1));
      if (before === rowReportRoom(row)) exact++;
      expect(before).toBeLessThanOrEqual(rowReportRoom(row));
      expect(NOTE.test(lines.at(-1)?.[4] as string)).toBe(true);
    }
    // Lengths where the lines before the last fill the room exactly (the boundary is tried).
    expect(exact).toBeGreaterThan(0);
  });

  it("writes a row's last error whole, with no note, when it is the line that passes the room", () => {
    const { header, schema } = integers(3);
    const row = "y".repeat(40_000);
    const { lines, used } = report(`${header}\n${row}\n`, schema);
    expect(lines.map(([, , field, code]) => [field, code])).toEqual([
      ["f1", "missing-cell"],
      ["f2", "missing-cell"],
    ]);
    expect(sum(used)).toBeGreaterThan(ROW_REPORT_MAX);
    expect(lines.some(([, , , , message]) => NOTE.test(message as string))).toBe(false);
  });

  it("is the same for a row read by a shard of a split job, once renumbered, as in the whole run", async () => {
    const { names, header, schema } = integers(2000);
    const valid = names.map(() => "1").join(",");
    for (const length of [100, 101, 102, 150, 1_000, 70_000]) {
      const row = "y".repeat(length);
      const csv = `${header}\n${`${valid}\n`.repeat(9)}${row}\n`;
      const whole = new CollectSink();
      process(csv, schema, whole);
      // The shard starts at the long row, the header known, its numbers counted from 1.
      const shard = new CollectSink();
      process(csv, schema, shard, { offset: csv.indexOf(row), header: names });
      const renumbered: Buffer[] = [];
      for await (const chunk of renumberedReport(chunks(shard.text()), {
        rows: 9,
        lines: 10,
      })) {
        renumbered.push(chunk);
      }
      const rows = whole.text().slice(whole.text().indexOf("\n") + 1);
      expect(Buffer.concat(renumbered).toString()).toBe(rows);
      expect(rows).toMatch(/not listed/);
    }
  });
});
