import { describe, expect, it } from "vitest";
import { type RowCounts, SUMMARY_FIELDS } from "../../shared/job.ts";
import { MissingCells } from "../../worker/judge/rowErrors.ts";
import { shapeCheck } from "../../worker/judge/rowJudge.ts";
import {
  countIn,
  summarizeMissing,
  summaryEntry,
  summaryName,
} from "../../worker/pipeline/errorSummary.ts";
import { listErrors } from "../support/listErrors.ts";

// A short row's missing cells are kept as one MissingCells: counted in the summary at once, as
// the errors one by one would be, at a cost that does not grow with the header's width.

/** A small deterministic generator (mulberry32), so that a failure names its seed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("a short row's missing cells", () => {
  it("are the errors one per missing label, in order, with their messages", () => {
    const check = shapeCheck(["a", "b", "c", "d"]);
    const errors = check(["1", "2"]);
    expect(errors).toBeInstanceOf(MissingCells);
    expect(errors.length).toBe(2);
    expect(listErrors(errors)).toEqual([
      {
        field: "c",
        code: "missing-cell",
        message: 'the row has 2 cells, the header has 4: "c" is missing',
      },
      {
        field: "d",
        code: "missing-cell",
        message: 'the row has 2 cells, the header has 4: "d" is missing',
      },
    ]);
    expect(errors.at(2)).toBeUndefined();
    expect(errors.at(-1)).toBeUndefined();
    expect(check(["1", "2", "3", "4"]).length).toBe(0);
    expect(listErrors(check(["", ""]))).toMatchObject([{ code: "blank-row" }]);
    expect(listErrors(check(["1", "2", "3", "4", "5"]))).toMatchObject([{ code: "extra-cell" }]);
  });

  it("count in the summary exactly as their errors one by one would (random headers and rows)", () => {
    // Labels that collide with the summary's own names, repeat, or are blank.
    const pool = [
      "a",
      "b",
      "c",
      "(other fields)",
      "(row)",
      "",
      ...Array.from({ length: 80 }, (_, i) => `f${i}`),
    ];
    // Rows counted once the summary is full: the bulk path, not only the one-by-one steps.
    let full = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const next = random(seed);
      const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)] as T;
      const width = 1 + Math.floor(next() * 120);
      const labels = Array.from({ length: width }, () => pick(pool));
      const check = shapeCheck(labels);
      const bulk: RowCounts["fields"] = {};
      const oneByOne: RowCounts["fields"] = {};
      for (let row = 1; row <= 12; row++) {
        // Other errors of the row make entries too, some before the missing cells are counted.
        for (let k = Math.floor(next() * 4); k > 0; k--) {
          const name = summaryName(pick(pool));
          for (const fields of [bulk, oneByOne])
            countIn(summaryEntry(fields, name), "type-error", 1, row);
        }
        const cells = Array.from({ length: Math.floor(next() * width) }, () => "x");
        const errors = check(cells);
        if (!(errors instanceof MissingCells)) continue;
        if (bulk["(other fields)"]) full++;
        summarizeMissing(bulk, errors, row);
        for (const e of listErrors(errors)) {
          countIn(summaryEntry(oneByOne, summaryName(e.field)), e.code, 1, row);
        }
        // The same entries, made in the same order, with the same counts and rows.
        expect(JSON.stringify(bulk), `seed ${seed}, row ${row}`).toBe(JSON.stringify(oneByOne));
      }
    }
    expect(full).toBeGreaterThan(300);
  });

  it("are summarized reading at most SUMMARY_FIELDS labels a row however wide the header", () => {
    const reads = (width: number) => {
      let count = 0;
      const names = Array.from({ length: width }, (_, i) => `f${i}`);
      // Counts every label read by index, past the one pass that maps labels to columns.
      const labels = new Proxy(names, {
        get(target, key, receiver) {
          if (typeof key === "string" && /^\d+$/.test(key)) count++;
          return Reflect.get(target, key, receiver);
        },
      });
      const check = shapeCheck(labels);
      const fields: RowCounts["fields"] = {};
      summarizeMissing(fields, check(["1"]) as MissingCells, 1);
      const afterFirst = count;
      for (let row = 2; row <= 101; row++)
        summarizeMissing(fields, check(["1"]) as MissingCells, row);
      return { first: afterFirst, perRow: (count - afterFirst) / 100, fields };
    };
    for (const width of [1_000, 8_000]) {
      const { first, perRow, fields } = reads(width);
      // The first row maps the labels (width reads) and makes the entries; later rows read none.
      expect(first).toBeLessThanOrEqual(width + SUMMARY_FIELDS + 1);
      expect(perRow).toBeLessThanOrEqual(SUMMARY_FIELDS);
      expect(fields["(other fields)"]?.errors["missing-cell"]).toBe(
        101 * (width - 1 - SUMMARY_FIELDS),
      );
    }
  });
});
