import v8 from "node:v8";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { TableSchema } from "../../shared/tableSchema.ts";
import {
  matchesPattern,
  matchesText,
  PatternAutomaton,
  patternAutomaton,
} from "../../worker/judge/patternBytes.ts";
import { compileTableSchema } from "../../worker/judge/validatorCompiler.ts";

// A pattern's automaton answers as `new RegExp(`^(?:p)$`, "u")` does on every cell, read on its
// UTF-8 bytes or on its text, for patterns of the subset it compiles; any other pattern compiles
// to nothing (the validator runs it as a RegExp), never to a wrong answer.

const regex = (pattern: string) => new RegExp(`^(?:${pattern})$`, "u");

// The answers come from the same pattern compiled without flag u and with flag l, which V8 runs
// on its linear-time engine: random patterns nest quantifiers whose bodies match empty in many
// ways ("(?:(?:||\\s?\\d?){2}[\\w-]*?){1,}"), and the backtracking engine took 11 s over 20 cells
// of one such pattern, over two minutes for one seed in CI. (A pattern the linear engine cannot
// run is refused when compiled: the test fails, it does not hang.) On ASCII cells, a pattern the
// validator compiles (flag u) matches the same without u: they differ in syntax (which flag u
// makes stricter), surrogate pairs and case folding. A compiled pattern has no case folding and
// writes no character past ASCII, so on a cell without a surrogate pair the two agree (3.1M
// ASCII cells of 200 seeds did); a cell with one is compared as the same cell with each pair
// made one character of the Basic Multilingual Plane (flag u reads a pair as one code point,
// past ASCII and no white space: "é" is another such), and a few fixed cases run flag u itself.
v8.setFlagsFromString("--enable-experimental-regexp-engine");
const oracle = (pattern: string) => new RegExp(`^(?:${pattern})$`, "l");

const PAIR = /[\ud800-\udbff][\udc00-\udfff]/g;

function agrees(pattern: string, cells: readonly string[]): void {
  const automaton = patternAutomaton(pattern);
  if (!automaton) return;
  const re = oracle(pattern);
  for (const cell of cells) {
    const expected = re.test(cell.replace(PAIR, "é"));
    const bytes = Buffer.from(`~${cell}~`, "utf8");
    const name = `${pattern} on ${JSON.stringify(cell)}`;
    expect(matchesPattern(automaton, bytes, 1, bytes.length - 1), `${name}, bytes`).toBe(expected);
    expect(matchesText(automaton, cell), `${name}, text`).toBe(expected);
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

// Characters past ASCII: white space to \s (U+00A0, U+1680, U+2000, U+200A, U+3000, U+FEFF),
// line terminators (U+2028, U+2029), and others, some of them near the first (U+0085, U+180E,
// U+200B), of two, three and four bytes.
const WIDE = ["é", "ж", "€", "\u00a0", "\u1680", "\u2000", "\u200a", "\u3000", "\ufeff"];
const WIDE_NEAR = ["\u2028", "\u2029", "\u0085", "\u180e", "\u200b", "\u202f", "\u205f", "😀"];
const cell = fc.string({
  unit: fc.constantFrom(..."aabbcAZ09-., \t\n\r]/_~@".split(""), ...WIDE, ...WIDE_NEAR),
  maxLength: 8,
});

describe("patterns on bytes", () => {
  it("match as the validator's regular expression on every cell, or compile to nothing", () => {
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
      // Anchors, which people write though the whole cell is matched anyway.
      ["^[A-Z]{2}$", ["GB", "GBR", ""]],
      ["^$", ["", "a"]],
      ["$^", ["", "a"]],
      ["a^|b$", ["a", "b", ""]],
      ["(^a|b)+", ["a", "ab", "ba", "aa", "bb", ""]],
      ["(a$)*", ["", "a", "aa"]],
      ["(?:^|,)x", ["x", ",x", "y,x"]],
      ["$a", ["a", ""]],
      ["(?:$|a)b", ["b", "ab", ""]],
      ["a(?:^)?", ["a", ""]],
      ["(^)*a", ["a", ""]],
      // Automata of more states than are kept at once (a full DFA of 2^13 states here).
      [
        "(a|b)*a(a|b){12}",
        ["a".repeat(13), `b${"a".repeat(12)}`, `${"ab".repeat(20)}b`, `${"ba".repeat(20)}`],
      ],
    ];
    for (const [p, cells] of cases) {
      expect(patternAutomaton(p), p).toBeDefined();
      agrees(p, cells);
    }
  });

  it("reads a cell past ASCII by code point, as flag u does", () => {
    const cases: Array<[string, string[]]> = [
      [".", ["é", "😀", "€", "\u2028", "\u2029", "\u00a0", "\n", "ab"]],
      ["..", ["😀", "é😀", "\ud83d"]],
      [
        "\\s+",
        [
          "\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\ufeff",
          "\u200b",
          "\u0085",
          "\u180e",
        ],
      ],
      ["\\S", ["é", "😀", "\u00a0", "\u2028", "\ud800"]],
      ["[^a]", ["é", "😀", "\u2028", "a"]],
      ["[^\\s]", ["é", "\u3000"]],
      ["\\w|\\d", ["é", "٣", "a", "3"]],
      ["\\W\\D", ["é٣", "😀😀", "a3"]],
      ["[a-z]+.", ["abcé", "abc😀", "abc\u2029"]],
      [".+", ["\udc00", "a\udc00", "\udc00\ud800"]],
      // Past what the linear engine runs (cells on which flag u does not backtrack long), and
      // more states than the automaton once compiled whole, which then fell back on RegExp.
      ["(?:\\w+\\s?){1,20}", ["a b c", "a".repeat(40), "a!", "ab ".repeat(20), "ab ab!"]],
    ];
    for (const [p, cells] of cases) {
      const automaton = patternAutomaton(p);
      expect(automaton, p).toBeDefined();
      for (const c of cells) {
        const bytes = Buffer.from(c, "utf8");
        const expected = regex(p).test(c);
        const name = `${p} on ${JSON.stringify(c)}`;
        expect(matchesText(automaton as never, c), name).toBe(expected);
        // A lone surrogate is not UTF-8: only its text is read.
        if (c.isWellFormed()) {
          expect(matchesPattern(automaton as never, bytes, 0, bytes.length), name).toBe(expected);
        }
      }
    }
  });

  it("read every code point past ASCII as \\s and . do under flag u", () => {
    const space = patternAutomaton("\\s") as never;
    const any = patternAutomaton(".") as never;
    const differ: string[] = [];
    for (let code = 0x80; code <= 0x10ffff; code++) {
      const c = String.fromCodePoint(code);
      if (matchesText(space, c) !== /^\s$/u.test(c) || matchesText(any, c) !== /^.$/u.test(c)) {
        differ.push(code.toString(16));
      }
    }
    expect(differ).toEqual([]);
  });

  it("match nothing on bytes that are not UTF-8, or a character cut by the cell's end", () => {
    const any = patternAutomaton(".*") as never;
    for (const bytes of [[0x61, 0xf0], [0xff], [0x80], [0xc3], [0xe2, 0x82], [0xc3, 0x41]]) {
      expect(matchesPattern(any, Buffer.from(bytes), 0, bytes.length), String(bytes)).toBe(false);
    }
    const cut = Buffer.from("aé");
    expect(matchesPattern(any, cut, 0, 2)).toBe(false);
    expect(matchesPattern(any, cut, 0, 3)).toBe(true);
  });

  it("let their states go past so many and go on, one move at most a character, never RegExp", () => {
    // The first letter and the 13th from the end decide: a walk that lost its place at a
    // letting-go, anywhere in the cell, answers wrongly.
    const pattern = "b(a|b)*a(a|b){12}";
    const automaton = patternAutomaton(pattern) as PatternAutomaton;
    expect(automaton).toBeDefined();
    // Random a's and b's reach the 2^13 states, far past the 1,024 kept.
    let random = "";
    let x = 2463534242; // xorshift32
    for (let i = 0; i < 20_000; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      random += x & 1 ? "a" : "b";
    }
    const judge = compileTableSchema(
      TableSchema.parse({ fields: [{ name: "c", type: "string", constraints: { pattern } }] }),
    ).bind(null);
    const move = vi.spyOn(PatternAutomaton.prototype, "move");
    const exec = vi.spyOn(RegExp.prototype, "exec");
    try {
      for (const first of ["a", "b"]) {
        for (const letter of ["a", "b"]) {
          const cell = `${first}${random}${letter}${random.slice(0, 12)}`;
          const expected = first === "b" && letter === "a";
          const bytes = Buffer.from(cell);
          const moves = move.mock.calls.length;
          expect(matchesText(automaton, cell), first + letter).toBe(expected);
          expect(matchesPattern(automaton, bytes, 0, bytes.length), first + letter).toBe(expected);
          expect(move.mock.calls.length - moves).toBeLessThanOrEqual(2 * cell.length);
          expect(judge.judge([cell]).ok, first + letter).toBe(expected);
        }
      }
      // No regular expression of the pattern ran, however many states the cells reached.
      const ran = exec.mock.contexts.filter((re) => (re as RegExp).source.includes(pattern));
      expect(ran).toEqual([]);
    } finally {
      move.mockRestore();
      exec.mockRestore();
    }
    for (const letter of ["a", "b"]) {
      expect(oracle(pattern).test(`b${random}${letter}${random.slice(0, 12)}`)).toBe(
        letter === "a",
      );
    }
    // Segments, each decided by its own 13th letter from its end: a move kept wrongly at a
    // letting-go misleads a later segment. Compared with V8's linear engine.
    const segments = "(?:(?:a|b)*a(?:a|b){12}c)+";
    const segmented = patternAutomaton(segments) as PatternAutomaton;
    for (let k = 0; k < 20; k++) {
      let cell = "";
      while (cell.length < 20_000) {
        for (let n = 100 + (x >>> 24); n > 0; n--) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          cell += x & 1 ? "a" : "b";
        }
        cell += "c";
      }
      expect(matchesText(segmented, cell), String(k)).toBe(oracle(segments).test(cell));
    }
  });

  it("keep no move from before a letting-go: every prefix of a long walk is judged right", () => {
    // A prefix of a's and b's matches when it starts with b and its 13th letter from the end is
    // an a: each state is the last 13 letters, 8,192 of them, so the walk lets its states go
    // about once every thousand letters. A move kept in the table for a state's old number
    // would send a later state of that number astray, and the prefixes after it would be
    // judged wrongly; checking every prefix, not only the cell's end, sees it.
    const automaton = patternAutomaton("b(a|b)*a(a|b){12}") as PatternAutomaton;
    const move = vi.spyOn(PatternAutomaton.prototype, "move");
    try {
      let x = 88172645; // xorshift32
      let walk = "b";
      let state = automaton.step(0, "b".charCodeAt(0));
      const wrong: number[] = [];
      for (let i = 1; i < 60_000; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        const letter = x & 1 ? "a" : "b";
        walk += letter;
        state = automaton.step(state, letter.charCodeAt(0));
        const expected = walk.length >= 14 && walk[walk.length - 13] === "a";
        if (automaton.accepts(state) !== expected && wrong.length < 5) wrong.push(i);
      }
      expect(wrong).toEqual([]);
      // The walk did let go, many times: more moves worked out than states kept.
      expect(move.mock.calls.length).toBeGreaterThan(20 * 1024);
    } finally {
      move.mockRestore();
    }
  });

  it("are shared by the fields of a schema with the same pattern, their moves worked out once", () => {
    const field = (name: string) => ({
      name,
      type: "string",
      constraints: { pattern: "[A-Z]{2}" },
    });
    const judge = compileTableSchema(
      TableSchema.parse({ fields: [field("a"), field("b"), field("c")] }),
    ).bind(null);
    const move = vi.spyOn(PatternAutomaton.prototype, "move");
    try {
      expect(judge.judge(["GB", "US", "FR"]).ok).toBe(true);
      // Two moves for the first cell; the other fields' cells find them made.
      expect(move.mock.calls.length).toBe(2);
      expect(judge.judge(["G1", "U2", "F3"]).ok).toBe(false);
    } finally {
      move.mockRestore();
    }
  });

  it("work out each move once for every symbol that moves alike", () => {
    const automaton = patternAutomaton("[A-Z]{2}") as never;
    const move = vi.spyOn(PatternAutomaton.prototype, "move");
    try {
      expect(matchesText(automaton, "GB")).toBe(true);
      const first = move.mock.calls.length;
      for (const cell of ["US", "FR", "ZA", "AZ"]) expect(matchesText(automaton, cell)).toBe(true);
      expect(first).toBe(2);
      expect(move.mock.calls.length).toBe(first);
      // A move to nothing is kept too.
      expect(matchesText(automaton, "G1")).toBe(false);
      expect(move.mock.calls.length).toBe(first + 1);
      for (const cell of ["G2", "A9", "Z0"]) expect(matchesText(automaton, cell)).toBe(false);
      expect(move.mock.calls.length).toBe(first + 1);
    } finally {
      move.mockRestore();
    }
  });

  it("are what the validator runs, so that a pattern V8 backtracks on holds no worker", () => {
    // `(a*)*b` on thirty a's took V8's backtracking engine 17 s (flag u has no linear engine).
    const judge = compileTableSchema(
      TableSchema.parse({
        fields: [{ name: "code", type: "string", constraints: { pattern: "(a*)*b" } }],
      }),
    ).bind(null);
    const exec = vi.spyOn(RegExp.prototype, "exec");
    try {
      expect(judge.judge(["aaab"])).toEqual({ ok: true, cells: ["aaab"] });
      expect(judge.judge(["aaac"])).toMatchObject({ ok: false });
      // No regular expression of the pattern ran: the automaton decided both (checked before
      // the long cell, which would hold a RegExp for seconds).
      const ran = exec.mock.contexts.filter((re) => (re as RegExp).source.includes("(a*)*b"));
      expect(ran).toEqual([]);
      expect(judge.judge([`${"a".repeat(30)}c`])).toMatchObject({ ok: false });
    } finally {
      exec.mockRestore();
    }
  });

  it("compiles nothing for lookaround, back references, word boundaries, property escapes, a pattern that closes the group it is put in, or one too large", () => {
    // Groups nested thousands deep (the validator's RegExp takes them): not parsed that deep.
    const nested = `${"(?:".repeat(5000)}a${")".repeat(5000)}`;
    expect(regex(nested).test("a")).toBe(true);
    for (const p of [
      "^*",
      "(?=a)a",
      "(a)\\1",
      "\\p{L}",
      "a)|(b",
      "é",
      "[é]",
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
