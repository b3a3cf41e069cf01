// A field's `pattern`, compiled once per job into an automaton that a cell walks character by
// character: on its UTF-8 bytes in the byte row path, on its text in the validator. It decides what `new RegExp(`^(?:${pattern})$`, "u")` decides, because a full match
// asks only whether the cell is in the pattern's language, and this compiles that language: no
// backtracking (a pattern such as `(a*)*b` holds V8's engine for seconds on a cell of thirty
// characters, and a worker's event loop with it), no string. The subset is what schemas use for
// codes (`[A-Z]{2}`, `\d{5}(-\d{4})?`, `(EUR|USD)`, `^[a-z0-9._-]+$`): literals, `.`, classes,
// `\d \w \s` and their negations, groups, alternation, quantifiers and the anchors `^ $`.
// Anything else (lookaround, back references, `\b`, `\p{…}`, a character outside ASCII in the
// pattern) compiles to nothing, and so does a pattern too large for the bounds below: the
// validator runs those as a RegExp, as it does a pattern whose cells reach too many states
// (test/unit/patternBytes.test.ts holds the automaton to RegExp's answers).
//
// Its alphabet is ASCII's 128 characters and three classes of the code points past ASCII. A
// pattern of the subset names no such code point, so it can only tell them apart by what `.`
// and `\s` (and their negations) take: every code point of one class moves the automaton alike.

import { codePointAt } from "../csv/utf8.ts";

// Bounds on the work of compiling (once per job, before its first row): NFA states a pattern
// may expand to (a quantifier's count copies its operand); and on the parse itself, which
// recurses once per group: a schema's pattern may be any length the validator's RegExp accepts.
const MAX_NFA_STATES = 400;
const MAX_PATTERN_CHARS = 1000;
const MAX_GROUP_DEPTH = 32;
// DFA states kept at once, worked out as cells reach them (a pattern's full DFA may have
// exponentially many: `(a|b)*a(a|b){12}`). Past this many, the kept ones are let go and working
// out begins again: slower (a move worked out costs microseconds), never more than one move a
// character. Giving such a pattern to V8's RegExp instead would let the cells of a job, which
// decide how many states are reached, switch it to backtracking, exponential in the cell.
const MAX_DFA_STATES = 1024;

const ASCII = 128;
/** U+2028 and U+2029: line terminators, which `\s` takes and `.` does not. */
const LINE_SEPARATOR = 128;
/** The other white space past ASCII, which `\s` and `.` take (see `wideSymbol`). */
const WIDE_SPACE = 129;
/** Every other code point past ASCII (a lone surrogate too, as flag u reads one). */
const WIDE = 130;
const SYMBOLS = 131;

/** The symbol of a code point past ASCII: JavaScript's `\s` past ASCII is these. */
function wideSymbol(code: number): number {
  if (code === 0x2028 || code === 0x2029) return LINE_SEPARATOR;
  const space =
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff;
  return space ? WIDE_SPACE : WIDE;
}

/**
 * True when bytes[start, end), UTF-8, match the pattern whole. A sequence cut by `end` or a
 * byte that cannot begin one matches nothing; overlong forms and encoded surrogates are not
 * looked for (the byte row path checks a row's UTF-8 first).
 */
export function matchesPattern(
  automaton: PatternAutomaton,
  bytes: Uint8Array,
  start: number,
  end: number,
): boolean {
  let state = 0;
  for (let i = start; i < end; ) {
    const b = bytes[i] as number;
    let symbol = b;
    if (b < 0x80) i++;
    else {
      const read = codePointAt(bytes, i, end);
      if (read < 0) return false;
      symbol = wideSymbol(read >>> 3);
      i += read & 7;
    }
    const moved = automaton.step(state, symbol);
    if (moved < 0) return false;
    state = moved;
  }
  return automaton.accepts(state);
}

/** Whether the pattern matches `text` whole, read as flag u reads it (by code point). */
export function matchesText(automaton: PatternAutomaton, text: string): boolean {
  let state = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let symbol = c;
    if (c >= ASCII) {
      // A surrogate pair is one code point, past the Basic Multilingual Plane.
      if (c >= 0xd800 && c <= 0xdbff) {
        const low = text.charCodeAt(i + 1);
        if (low >= 0xdc00 && low <= 0xdfff) i++;
      }
      symbol = wideSymbol(c);
    }
    const moved = automaton.step(state, symbol);
    if (moved === NONE) return false;
    state = moved;
  }
  return automaton.accepts(state);
}

/**
 * A field's pattern compiled: its automaton, or undefined when it has none or one outside the
 * subset. Compiled once per job and shared by the validator and the byte check, which then
 * work out its states once.
 */
export function fieldPattern(field: {
  constraints?: { pattern?: string | undefined } | undefined;
}): PatternAutomaton | undefined {
  const pattern = field.constraints?.pattern;
  return pattern === undefined ? undefined : patternAutomaton(pattern);
}

/**
 * Each field's pattern compiled (fieldPattern), fields with the same pattern sharing one
 * automaton: its states are worked out, and kept, once for all of them.
 */
export function fieldPatterns(
  fields: readonly { constraints?: { pattern?: string | undefined } | undefined }[],
): (PatternAutomaton | undefined)[] {
  const compiled = new Map<string, PatternAutomaton | undefined>();
  return fields.map((field) => {
    const pattern = field.constraints?.pattern;
    if (pattern === undefined) return undefined;
    if (!compiled.has(pattern)) compiled.set(pattern, patternAutomaton(pattern));
    return compiled.get(pattern);
  });
}

/** The pattern's automaton, or undefined when it is outside the subset or too large. */
export function patternAutomaton(pattern: string): PatternAutomaton | undefined {
  if (pattern.length > MAX_PATTERN_CHARS) return undefined;
  let ast: Node;
  try {
    const parser = new Parser(pattern);
    ast = parser.alternation();
    if (!parser.done) return undefined;
  } catch (error) {
    if (error instanceof Unsupported) return undefined;
    throw error;
  }
  const nfa = new Nfa();
  try {
    const whole = nfa.build(ast);
    return new PatternAutomaton(nfa, whole.start, whole.accept);
  } catch (error) {
    if (error instanceof Unsupported) return undefined;
    throw error;
  }
}

class Unsupported extends Error {}

// The pattern's syntax tree.
type Node =
  | { kind: "set"; symbols: Uint8Array }
  | { kind: "seq"; items: Node[] }
  | { kind: "alt"; options: Node[] }
  | { kind: "repeat"; item: Node; min: number; max: number }
  /** `^` or `$`: the cell's start or end (no flag m), where the whole cell is matched. */
  | { kind: "anchor"; at: "start" | "end" };

/** The characters `u` mode lets stand escaped for themselves (outside classes). */
const SYNTAX = "^$\\.*+?()[]{}|/";

function setOf(test: (symbol: number) => boolean): Uint8Array {
  const symbols = new Uint8Array(SYMBOLS);
  for (let s = 0; s < SYMBOLS; s++) symbols[s] = test(s) ? 1 : 0;
  return symbols;
}

const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isWord = (b: number) =>
  isDigit(b) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f;
// JavaScript's \s: tab, line feed, vertical tab, form feed, carriage return, space, and the
// white space and line terminators past ASCII. (\d and \w are ASCII's alone under flag u.)
const isSpace = (s: number) =>
  (s >= 0x09 && s <= 0x0d) || s === 0x20 || s === LINE_SEPARATOR || s === WIDE_SPACE;

/** A class escape's set (\d \D \w \W \s \S), or undefined for another letter. */
function classEscape(letter: string): Uint8Array | undefined {
  switch (letter) {
    case "d":
      return setOf(isDigit);
    case "D":
      return setOf((b) => !isDigit(b));
    case "w":
      return setOf(isWord);
    case "W":
      return setOf((b) => !isWord(b));
    case "s":
      return setOf(isSpace);
    case "S":
      return setOf((b) => !isSpace(b));
    default:
      return undefined;
  }
}

/** A character escape's byte (\t \n \v \f \r), or -1. */
function controlEscape(letter: string): number {
  return { t: 0x09, n: 0x0a, v: 0x0b, f: 0x0c, r: 0x0d }[letter] ?? -1;
}

class Parser {
  readonly #text: string;
  #at = 0;
  #depth = 0;

  constructor(text: string) {
    this.#text = text;
  }

  get done(): boolean {
    return this.#at === this.#text.length;
  }

  #peek(): string | undefined {
    return this.#text[this.#at];
  }

  alternation(): Node {
    const options = [this.#sequence()];
    while (this.#peek() === "|") {
      this.#at++;
      options.push(this.#sequence());
    }
    return options.length === 1 ? (options[0] as Node) : { kind: "alt", options };
  }

  #sequence(): Node {
    const items: Node[] = [];
    for (let c = this.#peek(); c !== undefined && c !== "|" && c !== ")"; c = this.#peek()) {
      const atom = this.#atom();
      items.push(this.#quantified(atom));
    }
    return { kind: "seq", items };
  }

  #atom(): Node {
    const c = this.#peek() as string;
    this.#at++;
    if (c === "(") {
      if (++this.#depth > MAX_GROUP_DEPTH) throw new Unsupported();
      if (this.#peek() === "?") {
        if (this.#text[this.#at + 1] !== ":") throw new Unsupported();
        this.#at += 2;
      }
      const inner = this.alternation();
      if (this.#peek() !== ")") throw new Unsupported();
      this.#at++;
      this.#depth--;
      return inner;
    }
    if (c === "[") return { kind: "set", symbols: this.#class() };
    // Any character but a line terminator.
    if (c === ".") {
      return {
        kind: "set",
        symbols: setOf((s) => s !== 0x0a && s !== 0x0d && s !== LINE_SEPARATOR),
      };
    }
    if (c === "\\") {
      const letter = this.#peek();
      this.#at++;
      if (letter === undefined) throw new Unsupported();
      const set = classEscape(letter);
      if (set) return { kind: "set", symbols: set };
      const control = controlEscape(letter);
      if (control !== -1) return single(control);
      if (SYNTAX.includes(letter)) return single(letter.charCodeAt(0));
      throw new Unsupported();
    }
    if (c === "^" || c === "$") return { kind: "anchor", at: c === "^" ? "start" : "end" };
    // Quantifiers with nothing to repeat, lone brackets: not in the subset.
    if ("*+?{}]".includes(c)) throw new Unsupported();
    const code = c.charCodeAt(0);
    if (code >= ASCII) throw new Unsupported();
    return single(code);
  }

  /** The class after "[", up to and with its "]". */
  #class(): Uint8Array {
    const symbols = new Uint8Array(SYMBOLS);
    let negated = false;
    if (this.#peek() === "^") {
      negated = true;
      this.#at++;
    }
    for (;;) {
      const c = this.#peek();
      if (c === undefined) throw new Unsupported();
      if (c === "]") {
        this.#at++;
        break;
      }
      const from = this.#classAtom();
      if (this.#peek() === "-" && this.#text[this.#at + 1] !== "]") {
        this.#at++;
        const to = this.#classAtom();
        // A range between class escapes is a syntax error in `u` mode; so is one backwards.
        if (typeof from !== "number" || typeof to !== "number" || from > to)
          throw new Unsupported();
        for (let b = from; b <= to; b++) symbols[b] = 1;
      } else if (typeof from === "number") symbols[from] = 1;
      else for (let s = 0; s < SYMBOLS; s++) symbols[s] = symbols[s] || (from[s] as number);
    }
    // A negated class takes every code point past ASCII that it does not name by an escape.
    if (negated) for (let s = 0; s < SYMBOLS; s++) symbols[s] = symbols[s] ? 0 : 1;
    return symbols;
  }

  /** One member of a class: a byte, or a class escape's set. */
  #classAtom(): number | Uint8Array {
    const c = this.#peek() as string;
    this.#at++;
    if (c !== "\\") {
      const code = c.charCodeAt(0);
      if (code >= ASCII) throw new Unsupported();
      return code;
    }
    const letter = this.#peek();
    this.#at++;
    if (letter === undefined) throw new Unsupported();
    const set = classEscape(letter);
    if (set) return set;
    const control = controlEscape(letter);
    if (control !== -1) return control;
    if (SYNTAX.includes(letter) || letter === "-") return letter.charCodeAt(0);
    throw new Unsupported();
  }

  #quantified(atom: Node): Node {
    const c = this.#peek();
    // An anchor has nothing to repeat: `^*` is a syntax error under flag u (`(^)*` is not).
    if (atom.kind === "anchor") {
      if (c !== undefined && "*+?{".includes(c)) throw new Unsupported();
      return atom;
    }
    let min: number;
    let max: number;
    if (c === "*") [min, max] = [0, Number.POSITIVE_INFINITY];
    else if (c === "+") [min, max] = [1, Number.POSITIVE_INFINITY];
    else if (c === "?") [min, max] = [0, 1];
    else if (c === "{") {
      const counted = /^\{(\d+)(,(\d*))?\}/.exec(this.#text.slice(this.#at));
      if (!counted) throw new Unsupported();
      min = Number(counted[1]);
      max =
        counted[2] === undefined
          ? min
          : counted[3] === ""
            ? Number.POSITIVE_INFINITY
            : Number(counted[3]);
      if (max < min) throw new Unsupported();
      this.#at += counted[0].length - 1;
    } else return atom;
    this.#at++;
    // A lazy quantifier matches the same language.
    if (this.#peek() === "?") this.#at++;
    const after = this.#peek();
    if (after !== undefined && "*+?{".includes(after)) throw new Unsupported();
    return { kind: "repeat", item: atom, min, max };
  }
}

function single(code: number): Node {
  const symbols = new Uint8Array(SYMBOLS);
  symbols[code] = 1;
  return { kind: "set", symbols };
}

/** Thompson's construction: states with one byte-set edge or empty edges. */
class Nfa {
  /** Per state, the set its byte edge takes (undefined: none), and that edge's target. */
  readonly sets: (Uint8Array | undefined)[] = [];
  readonly targets: number[] = [];
  readonly empty: number[][] = [];
  /** Empty edges taken only at the cell's start (`^`), or only at its end (`$`). */
  readonly atStart: number[][] = [];
  readonly atEnd: number[][] = [];

  state(): number {
    if (this.sets.length >= MAX_NFA_STATES) throw new Unsupported();
    this.sets.push(undefined);
    this.targets.push(-1);
    this.empty.push([]);
    this.atStart.push([]);
    this.atEnd.push([]);
    return this.sets.length - 1;
  }

  build(node: Node): { start: number; accept: number } {
    switch (node.kind) {
      case "set": {
        const start = this.state();
        const accept = this.state();
        this.sets[start] = node.symbols;
        this.targets[start] = accept;
        return { start, accept };
      }
      case "anchor": {
        const start = this.state();
        const accept = this.state();
        (node.at === "start" ? this.atStart : this.atEnd)[start]?.push(accept);
        return { start, accept };
      }
      case "seq": {
        const start = this.state();
        let accept = start;
        for (const item of node.items) {
          const part = this.build(item);
          (this.empty[accept] as number[]).push(part.start);
          accept = part.accept;
        }
        return { start, accept };
      }
      case "alt": {
        const start = this.state();
        const accept = this.state();
        for (const option of node.options) {
          const part = this.build(option);
          (this.empty[start] as number[]).push(part.start);
          (this.empty[part.accept] as number[]).push(accept);
        }
        return { start, accept };
      }
      case "repeat": {
        const start = this.state();
        let accept = start;
        for (let i = 0; i < node.min; i++) {
          const part = this.build(node.item);
          (this.empty[accept] as number[]).push(part.start);
          accept = part.accept;
        }
        if (node.max === Number.POSITIVE_INFINITY) {
          const loop = this.build(node.item);
          (this.empty[accept] as number[]).push(loop.start);
          (this.empty[loop.accept] as number[]).push(accept);
          return { start, accept };
        }
        const end = this.state();
        (this.empty[accept] as number[]).push(end);
        for (let i = node.min; i < node.max; i++) {
          const part = this.build(node.item);
          (this.empty[accept] as number[]).push(part.start);
          (this.empty[part.accept] as number[]).push(end);
          accept = part.accept;
        }
        return { start, accept: end };
      }
    }
  }
}

/** No move (the cell cannot match), and a move not worked out yet. */
const NONE = -1;
const UNKNOWN = -2;

/** A state of the automaton as worked out, before it has a number. */
interface DfaState {
  members: number[];
  accepting: boolean;
  key: string;
}

/**
 * The compiled pattern: the subset construction's DFA over the NFA, one state per set of NFA
 * states the same input reaches, each move worked out the first time a cell takes it (two
 * closures over the NFA, at most MAX_NFA_STATES states), then one table read a character. At
 * most MAX_DFA_STATES states: the table 268 KB, the states' NFA sets and keys up to about 2 MB
 * more for the largest NFAs, for the job's length.
 */
export class PatternAutomaton {
  /** `next[state * SYMBOLS + symbol]`: the state moved to, NONE, or UNKNOWN. */
  #next: Int16Array;
  readonly #nfa: Nfa;
  readonly #start: number;
  readonly #accept: number;
  /** Per symbol, the first symbol every NFA edge takes alike (`[A-Z]`'s letters move alike). */
  readonly #classOf: Uint8Array;
  #ids = new Map<string, number>();
  /** Per state, the NFA states in it that take a byte: all a move reads. */
  #members: number[][] = [];
  #accepting: number[] = [];
  /** Per NFA state, the closure that last reached it (`#closure`'s marks, no Set a closure). */
  readonly #reached: Int32Array;
  #closures = 0;
  readonly #stack: Int32Array;

  constructor(nfa: Nfa, start: number, accept: number) {
    this.#nfa = nfa;
    this.#start = start;
    this.#accept = accept;
    this.#reached = new Int32Array(nfa.sets.length);
    this.#stack = new Int32Array(nfa.sets.length);
    this.#classOf = new Uint8Array(SYMBOLS);
    for (const group of symbolClasses(nfa)) {
      for (const symbol of group) this.#classOf[symbol] = group[0] as number;
    }
    this.#next = new Int16Array(16 * SYMBOLS).fill(UNKNOWN);
    this.#reset();
  }

  /** Whether a cell may end in `state`. */
  accepts(state: number): boolean {
    return this.#accepting[state] === 1;
  }

  /**
   * The state `symbol` moves `state` to, or NONE. When the kept states are full and the move
   * needs a new one, they are let go first: the state returned is numbered afresh, and `state`
   * is one no longer (the walk goes on from the one returned).
   */
  step(state: number, symbol: number): number {
    const moved = this.#next[state * SYMBOLS + symbol] as number;
    return moved === UNKNOWN ? this.move(state, symbol) : moved;
  }

  /** The move of step() the first time it is asked, kept in the table unless it let go. */
  move(state: number, symbol: number): number {
    const nfa = this.#nfa;
    const representative = this.#classOf[symbol] as number;
    const moved: number[] = [];
    for (const s of this.#members[state] as number[]) {
      if (nfa.sets[s]?.[representative]) moved.push(nfa.targets[s] as number);
    }
    if (moved.length === 0) {
      this.#fill(state, representative, NONE);
      return NONE;
    }
    const target = this.#stateOf(moved, false);
    if (this.#members.length >= MAX_DFA_STATES && !this.#ids.has(target.key)) {
      this.#reset();
      return this.#add(target);
    }
    const id = this.#add(target);
    this.#fill(state, representative, id);
    return id;
  }

  /** Back to the first state alone: the cell's start, which holds the pattern's start state. */
  #reset(): void {
    this.#ids = new Map();
    this.#members = [];
    this.#accepting = [];
    this.#next.fill(UNKNOWN);
    // The start alone takes `^` edges. (A later state with the same members and answer is the
    // same state: what follows depends on nothing else.)
    this.#add(this.#stateOf([this.#start], true));
  }

  /**
   * The state the NFA is in after `roots` and their empty edges (and `^` edges at the start):
   * named by the states in it that take a byte and by whether the cell may end there, which are
   * all its moves and its answer depend on (states that differ only in the empty-edge states
   * between are one state, and their keys are shorter).
   */
  #stateOf(roots: readonly number[], atStart: boolean): DfaState {
    const reached = this.#closure(roots, atStart, false);
    const sets = this.#nfa.sets;
    const members = reached.filter((s) => sets[s] !== undefined).sort((a, b) => a - b);
    // A state accepts when the cell may end there: its `$` edges (and at the start `^`) taken.
    const accepting = this.#closure(reached, atStart, true).includes(this.#accept);
    return { members, accepting, key: `${accepting ? "+" : "-"}${members.join(",")}` };
  }

  /** Every symbol of `representative`'s class moves `state` to `target`. */
  #fill(state: number, representative: number, target: number): void {
    const row = state * SYMBOLS;
    for (let symbol = 0; symbol < SYMBOLS; symbol++) {
      if (this.#classOf[symbol] === representative) this.#next[row + symbol] = target;
    }
  }

  #add(state: DfaState): number {
    const known = this.#ids.get(state.key);
    if (known !== undefined) return known;
    const id = this.#members.length;
    this.#ids.set(state.key, id);
    this.#members.push(state.members);
    this.#accepting.push(state.accepting ? 1 : 0);
    if ((id + 1) * SYMBOLS > this.#next.length) {
      const grown = new Int16Array(Math.min(2 * this.#next.length, MAX_DFA_STATES * SYMBOLS));
      grown.fill(UNKNOWN);
      grown.set(this.#next);
      this.#next = grown;
    }
    return id;
  }

  /**
   * The NFA states reached on no input from `states`, in no order: `^` edges taken at the
   * cell's start, `$` at its end. Each state is marked as it is reached, so it is pushed once.
   */
  #closure(states: readonly number[], atStart: boolean, atEnd: boolean): number[] {
    const nfa = this.#nfa;
    const reached = this.#reached;
    const stack = this.#stack;
    // Marks go on rising for the job's length; before they would pass an Int32, start again.
    if (this.#closures === 0x7fffffff) {
      reached.fill(0);
      this.#closures = 0;
    }
    const mark = ++this.#closures;
    const out: number[] = [];
    let top = 0;
    const reach = (s: number) => {
      if (reached[s] === mark) return;
      reached[s] = mark;
      stack[top++] = s;
    };
    for (const s of states) reach(s);
    while (top > 0) {
      const s = stack[--top] as number;
      out.push(s);
      for (const t of nfa.empty[s] as number[]) reach(t);
      if (atStart) for (const t of nfa.atStart[s] as number[]) reach(t);
      if (atEnd) for (const t of nfa.atEnd[s] as number[]) reach(t);
    }
    return out;
  }
}

/** The symbols, grouped by the NFA edges that take them: those of a group are interchangeable. */
function symbolClasses(nfa: Nfa): number[][] {
  let classes = [Array.from({ length: SYMBOLS }, (_, s) => s)];
  // A quantifier's copies of its operand share its set: each set splits the groups once.
  for (const set of new Set(nfa.sets)) {
    if (!set) continue;
    classes = classes.flatMap((group) => {
      const taken = group.filter((symbol) => set[symbol]);
      const left = group.filter((symbol) => !set[symbol]);
      return [taken, left].filter((part) => part.length > 0);
    });
  }
  return classes;
}
