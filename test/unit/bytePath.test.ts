import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { JobOptions } from "../../shared/job.ts";
import { TableSchema, type TableSchemaField } from "../../shared/tableSchema.ts";
import { CsvFramer } from "../../worker/csv/csvFramer.ts";
import { FieldIndex } from "../../worker/csv/fieldIndex.ts";
import { type ByteJudge, INVALID } from "../../worker/judge/byteJudge.ts";
import {
  cellRule,
  checkCell,
  checkEscapedCell,
  ScriptLetters,
} from "../../worker/judge/cellBytes.ts";
import type { JudgeFactory } from "../../worker/judge/rowJudge.ts";
import { compileTableSchema } from "../../worker/judge/validatorCompiler.ts";
import { RowProcessor } from "../../worker/pipeline/rowProcessor.ts";
import { startMark } from "../../worker/source/firstAttempt.ts";
import { CollectSink } from "../support/collectSink.ts";

// The byte row path against the string path it stands in for. Cell by cell: a byte check may
// only accept a cell the field's validator accepts and writes as it came (or, values as-read,
// accepts). Row by row: on generated files, dialects, schemas and options, with invalid rows of
// every kind and chunks cut anywhere, both paths give the same output bytes, the same reject
// report and the same counts.

/** Characters that make cells of every type, and break them. */
const CELL_CHARS = [
  ..."0123456789",
  "-",
  "+",
  ".",
  "e",
  "E",
  ":",
  "T",
  " ",
  "Z",
  "@",
  "a",
  "Z",
  "é",
  "日",
  "😀",
  "_",
  "%",
  ",",
  "'",
  "f",
];

/** More missing values than the byte set compares one by one. */
const MANY_MISSING = ["", "NA", "n/a", "-", "?", "none", "null", "0", "é", "x", "true"];
/**
 * Missing values with a quote or an escape in them: an escaped cell's value can be one (`"`
 * alone is the shortest: its escaped cell is twice as long as its value).
 */
const QUOTED_MISSING = ["", 'N"A', "N'A", "\\N", "a,b", '"'];

const cellText = fc.oneof(
  fc.array(fc.constantFrom(...CELL_CHARS), { maxLength: 12 }).map((c) => c.join("")),
  fc.constantFrom(
    "\uFFFD",
    'N"A',
    "N'A",
    "\\N",
    "0",
    "-0",
    "+0",
    "00",
    "5.",
    ".5",
    "-.5",
    "1e3",
    "1E-3",
    "1e400",
    "999999999999999",
    "1000000000000000",
    "9007199254740993",
    "0.1",
    "-120",
    "120",
    "121",
    "true",
    "false",
    "True",
    "FALSE",
    "1",
    "NaN",
    "INF",
    "-INF",
    "2024-02-29",
    "2023-02-29",
    "0000-01-01",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:00:00-02:00",
    "2026-01-02T03:04:05Z",
    "2026-01-02 03:04:05",
    "2026-01-02T03:04:05.120Z",
    "2026-01-02T03:04:05+0530",
    "2026-01-02T03:04:05+24:00",
    "2026-01-02T24:00:00Z",
    "23:59:59.5",
    "ada@example.com",
    "a..b@example.com",
    "a@b",
    "a@example.123",
    "a@-x.com",
    "josé@example.com",
    "123e4567-e89b-12d3-a456-426614174000",
    "123E4567-E89B-12D3-A456-42661417400G",
    "",
    "NA",
  ),
);

const FIELDS: TableSchemaField[] = [
  { name: "i", type: "integer" },
  { name: "i", type: "integer", constraints: { minimum: -5, maximum: 120 } },
  { name: "i", type: "integer", constraints: { minimum: "3" } },
  { name: "n", type: "number" },
  { name: "n", type: "number", constraints: { minimum: 0, maximum: 1000000 } },
  { name: "n", type: "number", constraints: { maximum: 0.5 } },
  { name: "y", type: "year", constraints: { minimum: 1 } },
  { name: "b", type: "boolean" },
  { name: "b", type: "boolean", trueValues: ["yes", "false"], falseValues: ["no", "false"] },
  { name: "d", type: "date" },
  { name: "t", type: "time" },
  { name: "dt", type: "datetime" },
  { name: "a", type: "any" },
  { name: "s", type: "string" },
  { name: "s", type: "string", constraints: { minLength: 2, maxLength: 4 } },
  { name: "s", type: "string", constraints: { enum: ["a", "é", "true", ""] } },
  // Past eight values the byte set looks cells up by key; a lone surrogate matches no cell.
  {
    name: "s",
    type: "string",
    constraints: {
      enum: ["b", "c", "d", "e", "f", "g", "h", "1", "0", "é", "true", "\ud800", "NA"],
    },
  },
  // The validator runs this pattern on the same automaton as the byte check: here the two are
  // compared for how they read a cell (bytes, escapes, missing values), and the automaton with
  // V8's RegExp in patternBytes.test.ts. (The next pattern, past ASCII, is the validator's RegExp.)
  { name: "s", type: "string", constraints: { pattern: "[a-e]{1,3}|NA|\\d+(\\.\\d+)?" } },
  { name: "s", type: "string", constraints: { pattern: ".*[^é]", maxLength: 3 } },
  { name: "e", type: "string", format: "email" },
  { name: "u", type: "string", format: "uuid" },
];

function validatorVerdict(field: TableSchemaField, text: string, asRead: boolean) {
  const judges = compileTableSchema(TableSchema.parse({ fields: [field] }), {
    maxUniqueValues: 10,
    values: asRead ? "as-read" : "canonical",
  });
  return judges.bind(null).judge([text]);
}

describe("byte cell checks (differential)", () => {
  for (const asRead of [false, true]) {
    it(`accept only cells the validator writes as they came (values ${asRead ? "as-read" : "canonical"})`, () => {
      let accepted = 0;
      fc.assert(
        fc.property(fc.constantFrom(...FIELDS), cellText, (field, text) => {
          const rule = cellRule(field, asRead);
          if (!rule || text === "") return;
          const bytes = Buffer.from(text);
          if (!checkCell(rule, bytes, 0, bytes.length)) return;
          accepted++;
          expect(validatorVerdict(field, text, asRead), `${field.type} ${text}`).toEqual({
            ok: true,
            cells: [text],
          });
        }),
        { numRuns: 20_000 },
      );
      // The checks decide a good share of these cells: the test compares something.
      expect(accepted).toBeGreaterThan(2_000);
    });
  }

  it("read an email of any script as the validator does, leaving it only what is past the plane", () => {
    const field: TableSchemaField = { name: "e", type: "string", format: "email" };
    const rule = cellRule(field) as NonNullable<ReturnType<typeof cellRule>>;
    // Letters, marks and digits of other scripts (and of none: symbols, punctuation, spaces),
    // at the lengths where the address's bounds are, in UTF-8 of two and three bytes and four.
    const good = [
      ..."a Z 0 9 - _ + ' ! # ~ ` { | } é ü ß Ж 中 日 ١ ² ́ ½".split(" "),
      "\u0301",
      "\u0661",
      "ex",
      "josé",
      "a".repeat(62),
      "é".repeat(31),
      "x".repeat(63),
      "0".repeat(3),
    ];
    const bad = [..."€ © ¿ · ‐ ‑ . @ ..".split(" "), "\u00a0", "\u2028", "\ufeff", "𝒜", "😀", " "];
    const piece = fc.oneof(
      { weight: 12, arbitrary: fc.constantFrom(...good) },
      { weight: 1, arbitrary: fc.constantFrom(...bad) },
    );
    const run = (max: number) =>
      fc.array(piece, { minLength: 1, maxLength: max }).map((p) => p.join(""));
    // Mostly address-shaped: a local part, "@", labels and dots; some of it left to chance.
    const address = fc.oneof(
      run(12),
      fc
        .tuple(run(4), fc.array(run(3), { minLength: 1, maxLength: 4 }))
        .map(([local, labels]) => `${local}@${labels.join(".")}`),
      fc.tuple(run(3), run(3)).map(([local, label]) => `${local}@${label}.com`),
    );
    // The bounds in characters, where UTF-8 takes two or three bytes for one.
    const long = (n: number, c = "x") => c.repeat(n);
    const edges = [
      `${long(64)}@ex.com`,
      `${long(65)}@ex.com`,
      `${long(64, "é")}@ex.com`,
      `${long(65, "中")}@ex.com`,
      `a@${long(63, "ü")}.com`,
      `a@${long(64, "ü")}.com`,
      `a@${long(63)}.${long(63)}.${long(63)}.${long(61, "é")}`,
      `a@${long(63)}.${long(63, "日")}.${long(63)}.${long(62)}`,
      "a@-x.com",
      "a@x-.com",
      "a@x.-com",
      "a@x.com-",
      "a@x.123",
      "a@x.١٢٣",
      "a@x.1é",
    ];
    let decided = 0;
    for (const text of edges) {
      const bytes = Buffer.from(text);
      const onBytes = checkCell(rule, bytes, 0, bytes.length);
      expect(onBytes, text).toBe(validatorVerdict(field, text, false).ok);
      if (onBytes) decided++;
    }
    // Some of them are addresses: both sides of each bound are compared.
    expect(decided).toBeGreaterThanOrEqual(5);
    // A long cell is read up to the bound it passes, not to its end.
    const width = vi.spyOn(ScriptLetters.prototype, "width");
    try {
      for (const text of [`a@${long(500_000, "é")}.com`, `${long(500_000, "é")}@ex.com`]) {
        const bytes = Buffer.from(text);
        expect(checkCell(rule, bytes, 0, bytes.length)).toBe(false);
      }
      expect(width.mock.calls.length).toBeLessThanOrEqual(64 + 65);
    } finally {
      width.mockRestore();
    }
    fc.assert(
      fc.property(address, (text) => {
        const bytes = Buffer.from(text);
        const onBytes = checkCell(rule, bytes, 0, bytes.length);
        const verdict = validatorVerdict(field, text, false);
        // A cell with a character past the plane is the validator's; every other, both read alike.
        if (/[\u{10000}-\u{10FFFF}]/u.test(text)) expect(onBytes, text).toBe(false);
        else expect(onBytes, text).toBe(verdict.ok);
        if (onBytes) decided++;
      }),
      { numRuns: 30_000 },
    );
    // Addresses, of other scripts too, are in what was compared: it says something.
    expect(decided).toBeGreaterThan(1_000);
  });

  it("decide an escaped cell only where any value of its length is valid as it came", () => {
    fc.assert(
      fc.property(fc.constantFrom(...FIELDS), cellText, (field, text) => {
        const rule = cellRule(field);
        const value = `${text}"`;
        // The cell's bytes as quoted text: one more byte per doubled quote.
        const bytes = Buffer.byteLength(value) + 1;
        if (!rule || !checkEscapedCell(rule, 0, bytes)) return;
        expect(validatorVerdict(field, value, false)).toEqual({ ok: true, cells: [value] });
      }),
      { numRuns: 5_000 },
    );
  });
});

/** A row processor over `source`, framed in pieces cut at `cuts`, into collecting sinks. */
/** A judge factory that counts the rows the string path judges (the judge's text entry point). */
function countingTextJudges(judges: JudgeFactory) {
  const count = { rows: 0 };
  const factory: JudgeFactory = {
    bind(header) {
      const judge = judges.bind(header);
      return {
        ...judge,
        judge(fields) {
          count.rows++;
          return judge.judge(fields);
        },
      };
    },
  };
  return { factory, count };
}

function processAll(
  source: Buffer,
  judges: JudgeFactory,
  options: JobOptions & { delimiter: string },
  cuts: number[],
  bytePath: boolean,
) {
  const sinks = { output: new CollectSink(), rejects: new CollectSink() };
  const processor = new RowProcessor({
    options,
    judges,
    from: startMark(),
    writeFrom: { output: 0, rejects: 0 },
    sinks,
    header: null,
    onHeader: () => {},
    bytePath,
  });
  const framer = new CsvFramer({ ...options, startOffset: 0, startLine: 1 });
  let at = 0;
  for (const cut of [...cuts, source.length]) {
    for (const row of framer.push(source.subarray(at, cut))) processor.process(row);
    at = cut;
  }
  for (const row of framer.end()) processor.process(row);
  return { processor, sinks };
}

function run(
  source: Buffer,
  schema: unknown,
  options: Partial<JobOptions>,
  cuts: number[],
  bytePath: boolean,
) {
  const parsed = JobOptions.parse(options);
  const resolved = { ...parsed, delimiter: parsed.delimiter === "auto" ? "," : parsed.delimiter };
  const compiled = compileTableSchema(TableSchema.parse(schema), {
    maxUniqueValues: 1000,
    values: resolved.values,
  });
  // Counts the rows the byte judge answers as invalid (their errors its own).
  let rejectsOnBytes = 0;
  const judges: JudgeFactory = {
    bind(header) {
      const judge = compiled.bind(header);
      const { bytes } = judge;
      if (!bytes) return judge;
      return {
        ...judge,
        bytes(): ByteJudge {
          const inner = bytes();
          return {
            changes: inner.changes,
            columnOf: inner.columnOf,
            get errors() {
              return inner.errors;
            },
            judge(row, index) {
              const verdict = inner.judge(row, index);
              if (verdict === INVALID) rejectsOnBytes++;
              return verdict;
            },
          };
        },
      };
    },
  };
  try {
    const { processor, sinks } = processAll(source, judges, resolved, cuts, bytePath);
    return {
      output: sinks.output.text(),
      rejects: sinks.rejects.text(),
      mark: processor.mark(),
      rowsAsBytes: sinks.output.rowsAsBytes,
      rejectsOnBytes,
    };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

const dialect = fc.record({
  delimiter: fc.constantFrom(",", ";", "\t"),
  quote: fc.constantFrom('"', "'"),
  escape: fc.constantFrom(undefined, "\\"),
});

/** Mostly valid cells of each type, in canonical and other forms. */
const VALID: Record<string, string[]> = {
  integer: ["0", "5", "-3", "+5", "05", "120", "999999999999999", "-0", "42"],
  number: ["0", "1.5", "-2.25", ".5", "5.", "1e3", "+1", "0.1", "100", "1000000", "2.50"],
  year: ["2024", "0001", "1999"],
  boolean: ["true", "false", "True", "0", "1", "yes", "no"],
  date: ["2024-02-29", "2026-01-02"],
  time: ["23:59:59", "00:00:00.5"],
  datetime: [
    "2026-01-02T03:04:05Z",
    "2026-01-02 03:04:05",
    "2026-01-02T03:04:05+05:30",
    "2026-01-02T03:04:05.120Z",
    "2026-12-31T23:30:00-0130",
  ],
  any: ["a", "hello world", "é日", "a, b", 'say "hi"', "multi\nline", "", 'N"A', "\\N"],
  string: ["a", "ab", "abc", "é日", "a, b", 'say "hi"', "multi\r\nline", "", "true", "é", "N'A"],
  email: ["ada@example.com", "josé@example.com", "x.y+z@sub.example.org"],
  uuid: ["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000"],
};

function validCells(field: TableSchemaField): string[] {
  if (field.format === "email") return VALID.email as string[];
  if (field.format === "uuid") return VALID.uuid as string[];
  return VALID[field.type] as string[];
}

type Dialect = { delimiter: string; quote: string; escape: string | undefined };

/** A cell as the source has it: quoted when it must be, or at random; escaped as the dialect says. */
function quoteCell(text: string, d: Dialect, quoteIt: boolean): string {
  const must = [d.delimiter, d.quote, "\n", "\r"].some((c) => text.includes(c));
  if (!must && !quoteIt) return text;
  const escaped = d.escape
    ? text.replaceAll(d.escape, d.escape + d.escape).replaceAll(d.quote, d.escape + d.quote)
    : text.replaceAll(d.quote, d.quote + d.quote);
  return `${d.quote}${escaped}${d.quote}`;
}

/** Broken quoting: what the string path hands to papaparse. */
function brokenCell(d: Dialect) {
  const q = d.quote;
  return fc.constantFrom(`a${q}b`, `${q}open`, `${q}x${q}y`, `x${q}`);
}

/** One row for columns of these fields: usually their width, valid cells, some quoted. */
function sourceRow(columns: readonly TableSchemaField[], d: Dialect) {
  const cell = (field: TableSchemaField) =>
    fc
      .tuple(
        fc.oneof(
          { weight: 8, arbitrary: fc.constantFrom(...validCells(field)) },
          { weight: 2, arbitrary: cellText },
        ),
        fc.boolean(),
        fc.nat(40),
      )
      .chain(([text, quoteIt, roll]) =>
        roll === 0 ? brokenCell(d) : fc.constant(quoteCell(text, d, quoteIt && roll % 3 === 0)),
      );
  const exact = fc.tuple(...columns.map(cell));
  return fc.oneof(
    { weight: 9, arbitrary: exact },
    { weight: 1, arbitrary: fc.array(cellText, { maxLength: columns.length + 2 }) },
  );
}

describe("the byte row path against the string path (differential)", () => {
  it("writes the same output and reject report, with the same counts", () => {
    let rowsCompared = 0;
    let takenOnBytes = 0;
    const tookRows = new Set<string>();
    const tookRejects = new Set<string>();
    fc.assert(
      fc.property(
        dialect.chain((d) =>
          fc
            .uniqueArray(fc.constantFrom(...FIELDS.map((f, i) => ({ ...f, name: `f${i}` }))), {
              minLength: 1,
              maxLength: 5,
              selector: (f) => f.name,
            })
            .chain((fields) => {
              const columns = fc
                .boolean()
                .map((reverse) => (reverse ? [...fields].reverse() : fields));
              return columns.chain((order) =>
                fc.record({
                  d: fc.constant(d),
                  fields: fc.constant(fields),
                  order: fc.constant(order),
                  rows: fc.array(sourceRow(order, d), { maxLength: 25 }),
                  values: fc.constantFrom("canonical", "as-read"),
                  newline: fc.constantFrom("\n", "\r\n"),
                  lineEnd: fc.constantFrom("\n", "\r\n", "\r"),
                  bom: fc.boolean(),
                  invalidUtf8: fc.boolean(),
                  missingValues: fc.constantFrom(
                    undefined,
                    ["", "NA"],
                    ["NA"],
                    MANY_MISSING,
                    QUOTED_MISSING,
                  ),
                  cuts: fc.array(fc.nat(), { maxLength: 5 }),
                }),
              );
            }),
        ),
        (c) => {
          const header = c.order.map((f) => f.name);
          const lines = [header.join(c.d.delimiter), ...c.rows.map((r) => r.join(c.d.delimiter))];
          let source = Buffer.from(lines.join(c.lineEnd) + c.lineEnd);
          if (c.invalidUtf8 && c.rows.length > 0) {
            // A stray continuation byte in the last row.
            source = Buffer.concat([
              source.subarray(0, source.length - 1),
              Buffer.from([0x80, 0x0a]),
            ]);
          }
          if (c.bom) source = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), source]);
          const schema = {
            fields: c.fields,
            ...(c.missingValues ? { missingValues: c.missingValues } : {}),
          };
          const options = { ...c.d, values: c.values, newline: c.newline } as Partial<JobOptions>;
          if (options.escape === undefined) delete options.escape;
          const cuts = [...new Set(c.cuts.map((x) => x % (source.length + 1)))].sort(
            (a, b) => a - b,
          );
          const { rowsAsBytes, rejectsOnBytes, ...onBytes } = run(
            source,
            schema,
            options,
            cuts,
            true,
          );
          const {
            rowsAsBytes: none,
            rejectsOnBytes: noRejects,
            ...onStrings
          } = run(source, schema, options, cuts, false);
          expect(onBytes).toEqual(onStrings);
          expect(none ?? 0).toBe(0);
          expect(noRejects ?? 0).toBe(0);
          rowsCompared += c.rows.length;
          takenOnBytes += rowsAsBytes ?? 0;
          const kind = `${c.d.delimiter}${c.d.quote}${c.d.escape ?? ""} ${c.values}`;
          if (rejectsOnBytes) tookRejects.add(kind);
          if (rowsAsBytes) {
            tookRows.add(kind);
          }
        },
      ),
      { numRuns: 1_500 },
    );
    expect(rowsCompared).toBeGreaterThan(5_000);
    // The byte path wrote a good share of the rows, in every dialect and both value modes.
    expect(takenOnBytes).toBeGreaterThan(rowsCompared / 8);
    expect(tookRows.size).toBe(3 * 2 * 2 * 2);
    // And it answered rejects with their errors, in every dialect and both value modes.
    expect(tookRejects.size).toBe(3 * 2 * 2 * 2);
  });

  it("takes the rows it can: a file of valid rows is judged without the string path", () => {
    const schema = {
      fields: [
        { name: "id", type: "integer", constraints: { minimum: 1 } },
        { name: "note", type: "string", constraints: { maxLength: 20 } },
        { name: "at", type: "datetime" },
      ],
    };
    const rows = ["id,note,at"];
    for (let i = 1; i <= 200; i++) rows.push(`${i},"a, ""b""",2026-01-0${(i % 9) + 1}T00:00:00Z`);
    const source = Buffer.from(`${rows.join("\n")}\n`);
    const counting = countingTextJudges(compileTableSchema(TableSchema.parse(schema)));
    const options = { ...JobOptions.parse({}), delimiter: "," };
    const { processor, sinks } = processAll(source, counting.factory, options, [], true);
    expect(processor.position.counts.valid).toBe(200);
    expect(counting.count.rows).toBe(0);
    expect(sinks.output.text().split("\r\n")[1]).toBe('1,"a, ""b""",2026-01-02T00:00:00Z');
  });
});

describe("rejects on the byte row path", () => {
  it("answers a reject of the right shape with its errors, and hands only wrong shapes to the string path", () => {
    const schema = TableSchema.parse({
      fields: [
        { name: "id", type: "integer", constraints: { required: true, minimum: 1 } },
        { name: "note", type: "string", constraints: { maxLength: 5 } },
        { name: "at", type: "datetime" },
      ],
    });
    const rows = ["id,note,at"];
    for (let i = 1; i <= 60; i++) {
      const cells = [String(i), `"n, ${i % 10}"`, "2026-01-02T00:00:00Z"];
      // Every third row has one bad cell, every fifth two (a row may have several errors).
      if (i % 3 === 0) cells[0] = "x";
      if (i % 5 === 0) cells[1] = '"too, long"';
      if (i % 5 === 0) cells[2] = "yesterday";
      if (i % 7 === 0) cells[0] = "";
      rows.push(cells.join(","));
    }
    // Shapes the string path judges: a blank row, too few cells, too many.
    rows.push(",,", "1,a", "1,a,2026-01-02T00:00:00Z,extra");
    const source = Buffer.from(`${rows.join("\n")}\n`);
    const options = { ...JobOptions.parse({}), delimiter: "," };
    const onBytes = countingTextJudges(compileTableSchema(schema));
    const onStrings = countingTextJudges(compileTableSchema(schema));
    const bytes = processAll(source, onBytes.factory, options, [], true);
    const strings = processAll(source, onStrings.factory, options, [], false);
    const { counts } = bytes.processor.position;
    // Rows 1-60 with a multiple of 3, 5 or 7 (33 of them), and the three shapes.
    expect(counts.rejected).toBe(33 + 3);
    // ids "x" (multiples of 3 but not of 7: 18) and datetimes (12); empty ids (8) and notes (12).
    expect(counts.errors).toEqual({
      "type-error": 18 + 12,
      "constraint-error": 8 + 12,
      "blank-row": 1,
      "missing-cell": 1,
      "extra-cell": 1,
    });
    expect(bytes.sinks.rejects.text()).toBe(strings.sinks.rejects.text());
    expect(bytes.processor.position.counts).toEqual(strings.processor.position.counts);
    expect(onStrings.count.rows).toBe(63);
    expect(onBytes.count.rows).toBe(3);
  });
});

describe("rows written in runs of their source bytes", () => {
  /** The byte path's output and report against the string path's, for the same file and job. */
  function both(schema: unknown, source: string, options: Partial<JobOptions>) {
    const resolved = { ...JobOptions.parse(options), delimiter: "," };
    const parsed = TableSchema.parse(schema);
    const bytes = processAll(Buffer.from(source), compileTableSchema(parsed), resolved, [], true);
    const strings = processAll(
      Buffer.from(source),
      compileTableSchema(parsed),
      resolved,
      [],
      false,
    );
    expect(bytes.sinks.output.text()).toBe(strings.sinks.output.text());
    expect(bytes.sinks.rejects.text()).toBe(strings.sinks.rejects.text());
    return bytes.sinks.output;
  }

  it("keeps to the selected columns, whatever the file's order", () => {
    const schema = {
      fields: [
        { name: "a", type: "integer" },
        { name: "b", type: "number" },
        { name: "c", type: "string" },
      ],
    };
    // The file's columns in another order than the schema's, cells that change and that shed
    // their quotes, and one that keeps them.
    const source = 'b,a,c\n+1.50,"07","y,z"\n".5",+3,"w"\n2,4,x\n';
    for (const select of [["b", "a", "c"], ["b", "a"], ["b"], ["c", "a"]]) {
      for (const values of ["canonical", "as-read"] as const) {
        const output = both(schema, source, { select, values });
        expect(output.rowsAsBytes, `${select} ${values}`).toBe(3);
      }
    }
  });

  it("leaves a row whose canonical text needs quotes to the string writer", () => {
    const schema = {
      fields: [
        { name: "p", type: "geopoint" },
        { name: "o", type: "object" },
        { name: "n", type: "integer" },
      ],
    };
    const source = 'p,o,n\n"1, 2","{""a"": 1}",+5\n"3,4","{}",6\n';
    const output = both(schema, source, {});
    expect(output.text()).toContain('"1,2"');
  });

  it("quotes a row of one empty cell, which readers would skip as an empty line", () => {
    const schema = { missingValues: ["", "NA"], fields: [{ name: "v", type: "integer" }] };
    expect(both(schema, "v\nNA\n+5\n", {}).text()).toBe('v\r\n""\r\n5\r\n');
    // One column selected of two.
    const two = {
      fields: [
        { name: "v", type: "string" },
        { name: "w", type: "string" },
      ],
    };
    expect(both(two, 'v,w\n,x\n"",y\n', { select: ["v"] }).text()).toBe('v\r\n""\r\n""\r\n');
  });

  it("reads an escaped cell whose value is a missing value as missing, however short", () => {
    // `""""` is the value `"`: twice the missing value's length, on the bytes.
    const schema = {
      missingValues: ['"'],
      fields: [
        { name: "a", type: "string" },
        { name: "b", type: "string" },
      ],
    };
    const output = both(schema, 'a,b\n"""",x\n', {});
    expect(output.text()).toBe("a,b\r\n,x\r\n");
  });
});

describe("a file that lacks a field", () => {
  it("that may not be empty: every row goes to the string path, and each is a reject", () => {
    const schema = TableSchema.parse({
      fields: [
        { name: "id", type: "integer" },
        { name: "note", type: "string", constraints: { required: true } },
        { name: "at", type: "date" },
      ],
      fieldsMatch: "superset",
    });
    const source = Buffer.from("id,at\n1,2026-01-02\n2,2026-01-03\n");
    const options = { ...JobOptions.parse({}), delimiter: "," };
    const judges = compileTableSchema(schema);
    const counting = countingTextJudges(judges);
    const bytes = processAll(source, counting.factory, options, [], true);
    const strings = processAll(source, judges, options, [], false);
    expect(counting.count.rows).toBe(2);
    expect(bytes.processor.position.counts.rejected).toBe(2);
    expect(bytes.sinks.rejects.text()).toBe(strings.sinks.rejects.text());
    expect(bytes.sinks.rejects.text()).toContain("a value is required");
  });

  it("that may be empty: its rows stay on the byte path and read it as empty", () => {
    const schema = TableSchema.parse({
      fields: [
        { name: "id", type: "integer" },
        { name: "note", type: "string" },
        { name: "at", type: "date" },
      ],
      fieldsMatch: "superset",
    });
    const source = Buffer.from("id,at\n1,2026-01-02\nx,2026-01-03\n");
    const options = { ...JobOptions.parse({}), delimiter: "," };
    const bytes = processAll(source, compileTableSchema(schema), options, [], true);
    const strings = processAll(source, compileTableSchema(schema), options, [], false);
    expect(bytes.sinks.output.rowsAsBytes).toBe(1);
    expect(bytes.sinks.output.text()).toBe(strings.sinks.output.text());
    expect(bytes.sinks.rejects.text()).toBe(strings.sinks.rejects.text());
    expect(bytes.processor.position.counts).toEqual(strings.processor.position.counts);
  });
});

describe("the framer's UTF-8 knowledge", () => {
  it("marks a row valid UTF-8 only when it is, wherever chunks are cut", () => {
    // "<ff>" and "<80>" stand for single raw bytes: invalid UTF-8.
    const piece = fc.constantFrom("a", ",", "\n", '"', "é", "日", "😀", "<ff>", "<80>", "\r");
    let markedRows = 0;
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 80 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (pieces, rawCuts) => {
          const raw = (p: string) =>
            p === "<ff>"
              ? Buffer.from([0xff])
              : p === "<80>"
                ? Buffer.from([0x80])
                : Buffer.from(p);
          const source = Buffer.concat(pieces.map(raw));
          const cuts = [...new Set(rawCuts.map((c) => c % (source.length + 1)))].sort(
            (a, b) => a - b,
          );
          const framer = new CsvFramer({
            delimiter: ",",
            quote: '"',
            maxRowBytes: 1 << 20,
            startOffset: 0,
            startLine: 1,
          });
          let at = 0;
          const rows = [];
          for (const cut of [...cuts, source.length]) {
            rows.push(...framer.push(source.subarray(at, cut)));
            at = cut;
          }
          rows.push(...framer.end());
          for (const row of rows) {
            if (row.utf8) expect(isUtf8(row.bytes)).toBe(true);
            if (row.utf8 && row.bytes.length > 0) markedRows++;
          }
        },
      ),
      { numRuns: 3_000 },
    );
    // Not a check that passes by marking nothing.
    expect(markedRows).toBeGreaterThan(50);
  });
});

describe("memory after a long row", () => {
  it("lets go of a row of very many fields once rows are short again", () => {
    const index = new FieldIndex({ delimiter: ",", quote: '"' });
    const long = Buffer.from(",".repeat(200_000));
    expect(index.index(long, false)).toBe(true);
    expect(index.count).toBe(200_001);
    const grown = index.starts.length;
    for (const row of ["a,b,c", "d,e,f"]) index.index(Buffer.from(row), false);
    expect(index.count).toBe(3);
    expect(index.starts.length).toBeLessThan(grown / 100);
    expect([index.starts[2], index.ends[2]]).toEqual([4, 5]);
  });
});
