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
    expect(errors.at(-3)).toBeUndefined();
    expect(check(["1", "2", "3", "4"]).length).toBe(0);
    expect(listErrors(check(["", ""]))).toMatchObject([{ code: "blank-row" }]);
    expect(listErrors(check(["1", "2", "3", "4", "5"]))).toMatchObject([{ code: "extra-cell" }]);
  });

  it("count in the summary exactly as their errors one by one would (random headers and rows)", () => {
    // Labels that collide with the summary's own names, repeat, or are blank.
    const pool = [
      "constructor",
      "toString",
      "__proto__",
      "hasOwnProperty",
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

  it("are summarized in steps bounded by SUMMARY_FIELDS a row however wide the header", () => {
    const steps = (width: number) => {
      let reads = 0;
      let lookups = 0;
      const names = Array.from({ length: width }, (_, i) => `f${i}`);
      // Counts every label read by index.
      const labels = new Proxy(names, {
        get(target, key, receiver) {
          if (typeof key === "string" && /^\d+$/.test(key)) reads++;
          return Reflect.get(target, key, receiver);
        },
      });
      // The label -> columns map, made once: counts lookups, and refuses to be walked.
      const map = new Map(names.map((name, column) => [name, [column]]));
      const columns = {
        get: (name: string) => {
          lookups++;
          return map.get(name);
        },
      } as unknown as ReadonlyMap<string, readonly number[]>;
      const short = () => new MissingCells(labels, 1, () => columns);
      const fields: RowCounts["fields"] = {};
      summarizeMissing(fields, short(), 1);
      const first = reads + lookups;
      for (let row = 2; row <= 101; row++) summarizeMissing(fields, short(), row);
      return { first, perRow: (reads + lookups - first) / 100, fields };
    };
    for (const width of [1_000, 8_000]) {
      const { first, perRow, fields } = steps(width);
      // The first row makes the entries; each later row looks up each entry's column once.
      expect(first).toBeLessThanOrEqual(2 * (SUMMARY_FIELDS + 2));
      expect(perRow).toBeLessThanOrEqual(SUMMARY_FIELDS + 2);
      expect(fields["(other fields)"]?.errors["missing-cell"]).toBe(
        101 * (width - 1 - SUMMARY_FIELDS),
      );
    }
  });

  it("are at(i) from the start, or from the end when i is negative, as an array's", () => {
    const errors = shapeCheck(["a", "b", "c", "d"])(["1"]);
    const array = listErrors(errors);
    for (const i of [-4, -3, -1, -0.5, 0, 1.7, 2, 3, Number.NaN])
      expect(errors.at(i), String(i)).toEqual(array.at(i));
  });
});
