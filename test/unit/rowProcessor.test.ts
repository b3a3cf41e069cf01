import { describe, expect, it } from "vitest";
import { MemorySink } from "../../bench/memorySink.ts";
import { JobOptions, SUMMARY_FIELDS, SUMMARY_ROWS } from "../../shared/job.ts";
import { TableSchema } from "../../shared/tableSchema.ts";
import { CsvFramer } from "../../worker/csv/csvFramer.ts";
import { compileTableSchema } from "../../worker/judge/validatorCompiler.ts";
import { RowProcessor } from "../../worker/pipeline/rowProcessor.ts";
import { startMark } from "../../worker/source/firstAttempt.ts";

// The row processor on its own: rows from memory, outputs into memory.

function process(csv: string, schema: unknown) {
  const options = { ...JobOptions.parse({}), delimiter: "," };
  const sinks = { output: new MemorySink(1 << 20), rejects: new MemorySink(1 << 20) };
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
