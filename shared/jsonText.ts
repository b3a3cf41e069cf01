import { UsageError } from "./usageError.ts";
import { visible } from "./visible.ts";

// JSON a person wrote: a --schema file, a manifest's lines, --options. Where it is not JSON, the
// CLI says so in one line and says where: JSON.parse's own message quotes the text around the
// error, newlines and all, and names no position for an unexpected character.

const BOM = "\uFEFF";

/** The text without a leading byte order mark: Windows editors save UTF-8 JSON with one. */
export function withoutBom(text: string): string {
  return text.startsWith(BOM) ? text.slice(BOM.length) : text;
}

/** Why a text is not JSON, and where, in one line. */
export class JsonTextError extends Error {
  override name = "JsonTextError";
  /** What is wrong, without where; invisible characters escaped. */
  readonly reason: string;
  /** Where, from 1; the column in UTF-16 code units. */
  readonly line: number;
  readonly column: number;

  constructor(reason: string, line: number, column: number) {
    super(`${reason} at line ${line}, column ${column}`);
    this.reason = reason;
    this.line = line;
    this.column = column;
  }
}

/** JSON.parse of a text a person wrote, a leading BOM ignored; a syntax error is a JsonTextError. */
export function parseJsonText(text: string): unknown {
  const json = withoutBom(text);
  try {
    return JSON.parse(json);
  } catch (error) {
    if (error instanceof SyntaxError) throw jsonTextError(json, error.message);
    throw error;
  }
}

/** The JSON object of an --options flag (enqueue's, infer's, watch's). */
export function optionsJson(json: string): Record<string, unknown> {
  const example = `like '{"encoding":"utf-16"}'`;
  let parsed: unknown;
  try {
    parsed = parseJsonText(json);
  } catch (error) {
    if (error instanceof JsonTextError)
      throw new UsageError(`--options is not JSON: ${error.message}; pass an object, ${example}`);
    throw error;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new UsageError(`--options must be a JSON object, ${example}`);
  return parsed as Record<string, unknown>;
}

/** V8's "... in JSON at position 12 (line 2 column 3)": most of its messages say where. */
const POSITIONED = / (?:in JSON )?at position (\d+)(?: \(line \d+ column \d+\))?$/;

function jsonTextError(text: string, message: string): JsonTextError {
  const positioned = POSITIONED.exec(message);
  let offset: number;
  let reason: string;
  if (positioned) {
    offset = Number(positioned[1]);
    reason = message.slice(0, positioned.index);
  } else {
    // "Unexpected token 'o', "not json {\n" is not valid JSON", or the end came too soon: the
    // scan below finds the character (the parser's own, in every case tried).
    offset = jsonErrorOffset(text) ?? text.length;
    const token = text.codePointAt(offset);
    reason =
      token === undefined
        ? "Unexpected end of JSON input"
        : `Unexpected token '${String.fromCodePoint(token)}'`;
  }
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return new JsonTextError(visible(reason), line, offset - before.lastIndexOf("\n"));
}

/** A scan through a text: `at` is where it is, or where it stopped. */
interface Scan {
  readonly text: string;
  at: number;
}

/**
 * Where `text` stops being JSON: the offset of the first character that cannot continue it (its
 * length: it ends too soon), or undefined when it is JSON. Iterative, so that any depth of
 * nesting JSON.parse takes is scanned without overflowing the stack.
 */
export function jsonErrorOffset(text: string): number | undefined {
  const s: Scan = { text, at: 0 };
  const closers: string[] = [];
  // The next value is an object's member: a key and ":" come first.
  let member = false;
  for (;;) {
    space(s);
    if (member && !key(s)) return s.at;
    const opens = text[s.at];
    if (opens === "{" || opens === "[") {
      const close = opens === "{" ? "}" : "]";
      s.at++;
      space(s);
      if (text[s.at] !== close) {
        closers.push(close);
        member = close === "}";
        continue;
      }
      s.at++;
    } else if (!scalar(s)) return s.at;
    const next = afterValue(s, closers);
    if (next === "end") return s.at < text.length ? s.at : undefined;
    if (next === "stop") return s.at;
    member = next === "member";
  }
}

/** Past a value: the containers it closes, then a comma and what comes next, or the end. */
function afterValue(s: Scan, closers: string[]): "end" | "stop" | "member" | "element" {
  for (;;) {
    space(s);
    const close = closers.at(-1);
    if (close === undefined) return "end";
    if (s.text[s.at] === close) {
      closers.pop();
      s.at++;
      continue;
    }
    if (s.text[s.at] !== ",") return "stop";
    s.at++;
    return close === "}" ? "member" : "element";
  }
}

const SPACE = new Set([" ", "\t", "\n", "\r"]);

function space(s: Scan): void {
  while (SPACE.has(s.text[s.at] ?? "")) s.at++;
}

/** An object member's key and its colon. */
function key(s: Scan): boolean {
  if (s.text[s.at] !== '"' || !string(s)) return false;
  space(s);
  if (s.text[s.at] !== ":") return false;
  s.at++;
  space(s);
  return true;
}

function scalar(s: Scan): boolean {
  const first = s.text[s.at];
  if (first === '"') return string(s);
  if (first === "-" || isDigit(first)) return number(s);
  const word = ["true", "false", "null"].find((w) => w[0] === first);
  return word !== undefined && literal(s, word);
}

function literal(s: Scan, word: string): boolean {
  for (const ch of word) {
    if (s.text[s.at] !== ch) return false;
    s.at++;
  }
  return true;
}

const ESCAPES = new Set(['"', "\\", "/", "b", "f", "n", "r", "t"]);
const HEX = /^[0-9a-fA-F]$/;

function string(s: Scan): boolean {
  s.at++; // the opening quote
  for (;;) {
    const ch = s.text[s.at];
    // JSON strings hold no raw control character, a tab or a newline included.
    if (ch === undefined || ch < " ") return false;
    s.at++;
    if (ch === '"') return true;
    if (ch !== "\\") continue;
    if (s.text[s.at] === "u") {
      s.at++;
      for (let i = 0; i < 4; i++, s.at++) if (!HEX.test(s.text[s.at] ?? "")) return false;
    } else if (ESCAPES.has(s.text[s.at] ?? "")) s.at++;
    else return false;
  }
}

/** A number as JSON writes it: no leading zero or "+", a digit after "-", "." and the exponent. */
function number(s: Scan): boolean {
  if (s.text[s.at] === "-") s.at++;
  if (s.text[s.at] === "0") s.at++;
  else if (!digits(s)) return false;
  if (s.text[s.at] === ".") {
    s.at++;
    if (!digits(s)) return false;
  }
  if (s.text[s.at] === "e" || s.text[s.at] === "E") {
    s.at++;
    if (s.text[s.at] === "+" || s.text[s.at] === "-") s.at++;
    if (!digits(s)) return false;
  }
  return true;
}

function digits(s: Scan): boolean {
  const start = s.at;
  while (isDigit(s.text[s.at])) s.at++;
  return s.at > start;
}

function isDigit(ch: string | undefined): boolean {
  return ch !== undefined && ch >= "0" && ch <= "9";
}
