import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FieldIndex, QUOTED } from "../../worker/csv/fieldIndex.ts";

// The field index against a second definition of regular quoting (RFC 4180 with doubled
// quotes), written as a regular expression: a row is regular when it is a delimiter-separated
// list of fields each either unquoted (no quote in it) or quoted from start to end (inner quotes
// doubled). Quoted text is scanned partly by hand and partly by a native search, so rows are
// made with quoted cells of every length around where one hands over to the other.

const FIELD = `(?:"((?:[^"]|"")*)"|([^",]*))`;
const REGULAR = new RegExp(`^${FIELD}(?:,${FIELD})*$`, "s");
/** One field and what follows it: a delimiter, or the row's end. */
const ONE_FIELD = new RegExp(`${FIELD}(,|$)`, "sy");

/** The row's field values by the expression, or undefined if it is not regular. */
function reference(text: string): string[] | undefined {
  if (!REGULAR.test(text)) return undefined;
  const values: string[] = [];
  ONE_FIELD.lastIndex = 0;
  for (;;) {
    const [, quoted, bare, delimiter] = ONE_FIELD.exec(text) as RegExpExecArray;
    values.push(quoted !== undefined ? quoted.replaceAll('""', '"') : (bare ?? ""));
    if (delimiter !== ",") return values;
  }
}

const char = fc.constantFrom("a", "b", "é", "日", " ", ",", "\n", '"');
const text = fc
  .integer({ min: 0, max: 70 })
  .chain((length) => fc.array(char, { minLength: length, maxLength: length }))
  .map((cs) => cs.join(""));
const field = fc.oneof(
  text.map((t) => `"${t.replaceAll('"', '""')}"`),
  text.map((t) => t.replaceAll(/[",\n]/g, "")),
);
/** A regular row, or one with a quote put somewhere (often irregular then). */
const row = fc
  .tuple(fc.array(field, { minLength: 1, maxLength: 6 }), fc.option(fc.nat(), { freq: 3 }))
  .map(([fields, strayAt]) => {
    const joined = fields.join(",");
    if (strayAt === null) return joined;
    const at = strayAt % (joined.length + 1);
    return `${joined.slice(0, at)}"${joined.slice(at)}`;
  });

describe("FieldIndex", () => {
  it("splits a row as regular quoting defines it, and refuses the rows it does not define", () => {
    const index = new FieldIndex({ delimiter: ",", quote: '"' });
    let regular = 0;
    let irregular = 0;
    let longQuoted = 0;
    fc.assert(
      fc.property(row, fc.boolean(), (text, plain) => {
        // Rows reach the index as Buffers, or as plain Uint8Arrays (a row the framer joined
        // from two chunks): their indexOf is another function.
        const buffer = Buffer.from(text);
        const bytes = plain ? new Uint8Array(buffer) : buffer;
        const expected = reference(text);
        const ok = index.index(bytes, text.includes('"'));
        expect(ok).toBe(expected !== undefined);
        if (!expected) {
          irregular++;
          return;
        }
        regular++;
        const values = Array.from({ length: index.count }, (_, i) => index.value(buffer, i));
        expect(values).toEqual(expected);
        for (let i = 0; i < index.count; i++) {
          const length = (index.ends[i] as number) - (index.starts[i] as number);
          if ((index.flags[i] as number) & QUOTED && length > 30) longQuoted++;
        }
      }),
      { numRuns: 5_000 },
    );
    // Both verdicts, and quoted cells long enough for the native search, were met.
    expect(regular).toBeGreaterThan(1_000);
    expect(irregular).toBeGreaterThan(200);
    expect(longQuoted).toBeGreaterThan(500);
  });
});
