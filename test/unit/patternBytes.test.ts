import v8 from "node:v8";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { matchesPattern, patternAutomaton } from "../../worker/judge/patternBytes.ts";

// A pattern read on bytes answers as the validator's regular expression does (`^(?:p)$`, flag
// u) on every ASCII cell, for patterns of the subset it compiles; any other pattern compiles to
// nothing (its cells go to the validator), never to a wrong answer.

const regex = (pattern: string) => new RegExp(`^(?:${pattern})$`, "u");

// The answers come from the same pattern compiled without flag u and with flag l, which V8 runs
// on its linear-time engine: random patterns nest quantifiers whose bodies match empty in many
// ways ("(?:(?:||\\s?\\d?){2}[\\w-]*?){1,}"), and the backtracking engine took 11 s over 20 cells
// of one such pattern, over two minutes for one seed in CI. (A pattern the linear engine cannot
// run is refused when compiled: the test fails, it does not hang.) On ASCII cells, a pattern the
// validator compiles (flag u) matches the same without u: they differ in syntax (which flag u
// makes stricter), surrogate pairs and case folding, none of which a compiled pattern or an
// ASCII cell has (3.1M cells of 200 seeds agreed).
v8.setFlagsFromString("--enable-experimental-regexp-engine");
const oracle = (pattern: string) => new RegExp(`^(?:${pattern})$`, "l");

function agrees(pattern: string, cells: readonly string[]): void {
  const automaton = patternAutomaton(pattern);
  if (!automaton) return;
  const re = oracle(pattern);
  for (const cell of cells) {
    const bytes = Buffer.from(`~${cell}~`, "latin1");
    expect(
      matchesPattern(automaton, bytes, 1, bytes.length - 1),
      `${pattern} on ${JSON.stringify(cell)}`,
    ).toBe(re.test(cell));
  }
}

// Patterns built from the subset's pieces, and a few that only look like it.
const ATOMS = [
  "a",
  "b",
  "A",
  "0",
  "-",
  ",",
  " ",
  ".",
  "\\.",
  "\\d",
  "\\D",
  "\\w",
  "\\W",
  "\\s",
  "\\S",
  "\\t",
  "\\-",
  "\\/",
  "[a-c]",
  "[^a]",
  "[A-Z0-9]",
  "[-a]",
  "[a-]",
  "[\\d.]",
  "[\\w-]",
  "[^\\s]",
  "[]",
  "[^]",
  "[.\\]]",
  "\\]",
  "^",
  "$",
  "\\b",
  "\\1",
  "\\p{L}",
  "é",
  "{",
  "}",
  "]",
  "(?=a)",
];
const QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{0,2}", "{1,}", "*?", "+?", "{2,1}", "**"];

const pattern: fc.Arbitrary<string> = fc.letrec<{ p: string; piece: string }>((tie) => ({
  p: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.array(tie("piece"), { minLength: 0, maxLength: 4 }).map((pieces) => pieces.join("")),
    fc.tuple(tie("p"), tie("p")).map(([a, b]) => `${a}|${b}`),
  ),
  piece: fc.oneof(
    { depthSize: "small" },
    fc.tuple(fc.constantFrom(...ATOMS), fc.constantFrom(...QUANTIFIERS)).map(([a, q]) => a + q),
    fc
      .tuple(tie("p"), fc.constantFrom(...QUANTIFIERS), fc.boolean())
      .map(([p, q, capture]) => `(${capture ? "" : "?:"}${p})${q}`),
  ),
})).p;

const cell = fc.string({
  unit: fc.constantFrom(..."aabbcAZ09-., \t\n\r]/_~@".split("")),
  maxLength: 8,
});

describe("patterns on bytes", () => {
  it("match as the validator's regular expression on ASCII cells, or compile to nothing", () => {
    let compiled = 0;
    fc.assert(
      fc.property(pattern, fc.array(cell, { minLength: 20, maxLength: 20 }), (p, cells) => {
        let valid = true;
        try {
          regex(p);
        } catch {
          valid = false;
        }
        // What the validator cannot compile is refused with the schema: never compiled here.
        if (!valid) {
          expect(patternAutomaton(p)).toBeUndefined();
          return;
        }
        if (patternAutomaton(p)) compiled++;
        agrees(p, cells);
      }),
      { numRuns: 4000 },
    );
    // The generator reaches the subset, not only what falls outside it.
    expect(compiled).toBeGreaterThan(500);
  });

  it("decides the patterns schemas use for codes", () => {
    const cases: Array<[string, string[]]> = [
      ["[A-Z]{2}", ["GB", "gb", "G", "GBR", "G1", ""]],
      ["\\d{5}(-\\d{4})?", ["12345", "12345-6789", "1234", "12345-", "12345-678"]],
      ["(EUR|USD|GBP)", ["EUR", "USD", "GBP", "EURO", "eur", ""]],
      ["[a-z0-9._%+-]+", ["a.b_c", "A", "", "a b"]],
      ["[A-Z]{3}-[0-9]+", ["ABC-1", "ABC-", "AB-1", "ABC-12x"]],
      [".*", ["", "anything", "a\nb"]],
      ["a|", ["", "a", "b"]],
    ];
    for (const [p, cells] of cases) {
      expect(patternAutomaton(p), p).toBeDefined();
      agrees(p, cells);
    }
  });

  it("leaves cells with bytes outside ASCII to the validator", () => {
    const automaton = patternAutomaton(".*");
    const bytes = Buffer.from("café");
    expect(automaton && matchesPattern(automaton, bytes, 0, bytes.length)).toBe(false);
  });

  it("compiles nothing for anchors, lookaround, back references, property escapes, a pattern that closes the group it is put in, or one too large", () => {
    // Groups nested thousands deep (the validator's RegExp takes them): not parsed that deep.
    const nested = `${"(?:".repeat(5000)}a${")".repeat(5000)}`;
    expect(regex(nested).test("a")).toBe(true);
    for (const p of [
      "^a",
      "a$",
      "(?=a)a",
      "(a)\\1",
      "\\p{L}",
      "a)|(b",
      "é",
      "\\bA",
      "\\d{1,1000}",
      nested,
      `${"(?:".repeat(40)}a${")".repeat(40)}`,
      "a".repeat(1001),
    ]) {
      expect(patternAutomaton(p), p).toBeUndefined();
    }
  });
});
