import type { TableSchemaField } from "../../shared/tableSchema.ts";
import { codePointAt } from "../csv/utf8.ts";
import { ByteSet, matchesAt } from "./byteSet.ts";
import { bound } from "./constraints.ts";
import { EMAIL_LETTERS, FALSE_VALUES, TRUE_VALUES, validDate, validTime } from "./fieldTypes.ts";
import { fieldPattern, matchesPattern, type PatternAutomaton } from "./patternBytes.ts";

// Cell checks on bytes, for the byte row path: each says of a cell's bytes, read in place,
// "valid, and already its own canonical text", or "not decided here". Undecided cells are
// decoded and go through the field's validator (validatorCompiler.ts), which is the definition
// of every rule: these checks accept only a subset of what it accepts unchanged (exponents,
// offsets, signs, leading zeros, formats, and patterns beyond patternBytes.ts's are left to
// it), and a differential test holds them to that. Nothing here builds a string or a message.
//
// A field's check is data (a CellRule) read by one switch, not a closure per field: the cell
// loop then makes the same call for every field, which the JIT keeps fast.

// The kinds of check (plain numbers: type stripping has no enums).
const INTEGER_CELL = 0;
const NUMBER_CELL = 1;
const YEAR_CELL = 2;
const BOOLEAN_CELL = 3;
const DATE_CELL = 4;
const TIME_CELL = 5;
const DATETIME_CELL = 6;
const ANY_CELL = 7;
const TEXT_CELL = 8;
const EMAIL_CELL = 9;
const UUID_CELL = 10;
// Valid in any form the validator reads, for jobs that write values as read (`values: "as-read"`):
// the canonical form does not matter there.
const INTEGER_READ = 11;
const NUMBER_READ = 12;
const BOOLEAN_READ = 13;
const DATETIME_READ = 14;
type Kind = number;

/** What a field's byte check is, with its parameters. */
export interface CellRule {
  kind: Kind;
  /** Numeric bounds (integer, number, year). */
  lo: number | bigint | undefined;
  hi: number | bigint | undefined;
  /** A plain string's length bounds in code points, and its allowed values as bytes. */
  minLength: number | undefined;
  maxLength: number | undefined;
  allowed: ByteSet | undefined;
  /** A plain string's pattern, compiled (patternBytes.ts). */
  pattern: PatternAutomaton | undefined;
  /** Booleans: which canonical words the field reads as themselves. */
  acceptsTrue: boolean;
  acceptsFalse: boolean;
  /** Emails: which characters past ASCII are letters, marks or digits, as cells show them. */
  letters: ScriptLetters | undefined;
}

const ZERO = 0x30;
const NINE = 0x39;
const MINUS = 0x2d;
const DOT = 0x2e;

/** The constraints each kind of check can decide; any other on the field: no check. */
const NUMERIC = new Set(["required", "minimum", "maximum"]);
const TEXT = new Set(["required", "minLength", "maxLength", "enum", "pattern"]);
const NONE = new Set(["required"]);

/**
 * The field's byte check, or undefined when every cell of it is to be decoded (a type, format
 * or constraint the bytes do not decide). Missing values are the caller's: a check sees only
 * cells that are not one. `asRead`: any valid form will do, not only the canonical one.
 */
export function cellRule(
  field: TableSchemaField,
  asRead = false,
  /** The field's pattern compiled (fieldPattern), when the caller shares one. */
  pattern: PatternAutomaton | undefined = fieldPattern(field),
  /** The job's one table of email letters, shared by its email fields. */
  letters?: ScriptLetters,
): CellRule | undefined {
  const format = field.format ?? "default";
  const c = field.constraints ?? {};
  const only = (allowed: ReadonlySet<string>) => Object.keys(c).every((k) => allowed.has(k));
  switch (field.type) {
    case "integer":
    case "number":
    case "year":
      return only(NUMERIC) ? numericRule(field, asRead) : undefined;
    case "boolean":
      return only(NONE) ? booleanRule(field, asRead) : undefined;
    case "date":
      return format === "default" && only(NONE) ? rule(DATE_CELL) : undefined;
    case "time":
      return format === "default" && only(NONE) ? rule(TIME_CELL) : undefined;
    case "datetime":
      if (format !== "default" || !only(NONE)) return;
      return rule(asRead ? DATETIME_READ : DATETIME_CELL);
    case "any":
      return only(NONE) ? rule(ANY_CELL) : undefined;
    case "string":
      if (format === "email" && only(NONE)) {
        return rule(EMAIL_CELL, { letters: letters ?? emailLetters() });
      }
      if (format === "uuid" && only(NONE)) return rule(UUID_CELL);
      if (format !== "default" || !only(TEXT)) return;
      return textRule(c, pattern);
    default:
      return;
  }
}

function rule(kind: Kind, more: Partial<CellRule> = {}): CellRule {
  return {
    kind,
    lo: undefined,
    hi: undefined,
    minLength: undefined,
    maxLength: undefined,
    allowed: undefined,
    pattern: undefined,
    acceptsTrue: false,
    acceptsFalse: false,
    letters: undefined,
    ...more,
  };
}

/** A plain string's lengths, enum and pattern (one the bytes can decide). */
function textRule(
  c: NonNullable<TableSchemaField["constraints"]>,
  pattern: PatternAutomaton | undefined,
): CellRule | undefined {
  if (c.enum && !c.enum.every((v) => typeof v === "string")) return;
  if (c.pattern !== undefined && !pattern) return;
  return rule(TEXT_CELL, {
    minLength: c.minLength,
    maxLength: c.maxLength,
    allowed: c.enum ? new ByteSet(c.enum as string[]) : undefined,
    pattern,
  });
}

/** An integer, number or year field whose constraints are only bounds. */
function numericRule(field: TableSchemaField, asRead: boolean): CellRule | undefined {
  if (field.type !== "year" && (field.bareNumber === false || field.groupChar !== undefined))
    return;
  if (field.type === "number" && (field.decimalChar ?? ".") !== ".") return;
  const lo = bound(field, field.constraints?.minimum);
  const hi = bound(field, field.constraints?.maximum);
  // Bounds the field's own type could not read are compared as text by the validator.
  const numeric = (v: unknown) => v === undefined || typeof v === "number" || typeof v === "bigint";
  if (!numeric(lo) || !numeric(hi)) return;
  const kinds = {
    integer: asRead ? INTEGER_READ : INTEGER_CELL,
    number: asRead ? NUMBER_READ : NUMBER_CELL,
    year: YEAR_CELL,
  };
  return rule(kinds[field.type as keyof typeof kinds], {
    lo: lo as number | bigint,
    hi: hi as number | bigint,
  });
}

function booleanRule(
  field: {
    trueValues?: readonly string[] | undefined;
    falseValues?: readonly string[] | undefined;
  },
  asRead: boolean,
): CellRule {
  const trueValues = field.trueValues ?? TRUE_VALUES;
  const falseValues = field.falseValues ?? FALSE_VALUES;
  if (asRead) return rule(BOOLEAN_READ, { allowed: new ByteSet([...trueValues, ...falseValues]) });
  // A true value is read first: "false" among the true values is written "true".
  return rule(BOOLEAN_CELL, {
    acceptsTrue: trueValues.includes("true"),
    acceptsFalse: falseValues.includes("false") && !trueValues.includes("false"),
  });
}

/** True: the cell at bytes[start, end) is valid and canonical as it is. */
export function checkCell(rule: CellRule, bytes: Uint8Array, start: number, end: number): boolean {
  switch (rule.kind) {
    case INTEGER_CELL:
      return inBounds(rule, integerValue(bytes, start, end));
    case NUMBER_CELL:
      return inBounds(rule, decimalValue(bytes, start, end));
    case YEAR_CELL:
      return inBounds(rule, end - start === 4 ? digitsAt(bytes, start, 4) : Number.NaN);
    case BOOLEAN_CELL:
      return isBoolean(rule, bytes, start, end);
    case DATE_CELL:
      return end - start === 10 && dateAt(bytes, start);
    case TIME_CELL:
      return timeAt(bytes, start, end);
    case DATETIME_CELL:
      return isUtcDatetime(bytes, start, end);
    case ANY_CELL:
      return true;
    case TEXT_CELL:
      return textFits(rule, bytes, start, end);
    case EMAIL_CELL:
      return isEmail(bytes, start, end, rule.letters as ScriptLetters);
    case UUID_CELL:
      return isUuid(bytes, start, end);
    case INTEGER_READ:
      return inBounds(rule, anyIntegerValue(bytes, start, end));
    case NUMBER_READ:
      return inBounds(rule, anyDecimalValue(bytes, start, end));
    case BOOLEAN_READ:
      return (rule.allowed as ByteSet).has(bytes, start, end);
    case DATETIME_READ:
      return isDatetime(bytes, start, end);
    default:
      return false;
  }
}

/**
 * A quoted cell with escapes, whose bytes are not yet its value: decided only for `any` and for
 * a plain string with at most a maxLength, which its value (shorter than its bytes) then meets.
 */
export function checkEscapedCell(rule: CellRule, start: number, end: number): boolean {
  if (rule.kind === ANY_CELL) return true;
  if (rule.kind !== TEXT_CELL || rule.allowed || rule.pattern || rule.minLength !== undefined)
    return false;
  return rule.maxLength === undefined || end - start <= rule.maxLength;
}

function inBounds(rule: CellRule, value: number): boolean {
  if (Number.isNaN(value)) return false; // not decided here
  const { lo, hi } = rule;
  return (lo === undefined || value >= lo) && (hi === undefined || value <= hi);
}

function isBoolean(rule: CellRule, bytes: Uint8Array, start: number, end: number): boolean {
  const length = end - start;
  if (length === 4 && rule.acceptsTrue) return matchesAt(bytes, start, TRUE);
  if (length === 5 && rule.acceptsFalse) return matchesAt(bytes, start, FALSE);
  return false;
}

/**
 * A plain string's length bounds (in code points, which UTF-8 bytes bound from both sides: one
 * to four bytes each) and its enum, compared as bytes.
 */
function textFits(rule: CellRule, bytes: Uint8Array, start: number, end: number): boolean {
  const { minLength, maxLength, allowed } = rule;
  const length = end - start;
  if (maxLength !== undefined && length > maxLength && codePoints(bytes, start, end) > maxLength)
    return false;
  if (
    minLength !== undefined &&
    length < minLength * 4 &&
    codePoints(bytes, start, end) < minLength
  )
    return false;
  if (allowed && !allowed.has(bytes, start, end)) return false;
  return !rule.pattern || matchesPattern(rule.pattern, bytes, start, end);
}

/**
 * `0` or `-?[1-9][0-9]*`, at most 15 digits (a double holds them exactly): the integer's
 * canonical text. Not `+5`, `05`, `-0` or longer numbers: those the validator rewrites or reads.
 */
function integerValue(bytes: Uint8Array, start: number, end: number): number {
  const negative = bytes[start] === MINUS;
  const from = negative ? start + 1 : start;
  const digits = end - from;
  if (digits < 1 || digits > 15) return Number.NaN;
  if (bytes[from] === ZERO && (digits > 1 || negative)) return Number.NaN;
  let n = 0;
  for (let i = from; i < end; i++) {
    const d = (bytes[i] as number) - ZERO;
    if (d < 0 || d > 9) return Number.NaN;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * A decimal already canonical (`-?(0|[1-9][0-9]*)(\.[0-9]*)?`, no exponent) of at most 15
 * digits, its value as Number() reads it: an integer below 2^53 divided by an exact power of
 * ten is correctly rounded, as Number()'s reading is.
 */
function decimalValue(bytes: Uint8Array, start: number, end: number): number {
  const negative = bytes[start] === MINUS;
  const from = negative ? start + 1 : start;
  if (from >= end) return Number.NaN;
  if (bytes[from] === ZERO && from + 1 < end && bytes[from + 1] !== DOT) return Number.NaN;
  let n = 0;
  let digits = 0;
  let point = -1;
  for (let i = from; i < end; i++) {
    const b = bytes[i] as number;
    if (b === DOT) {
      if (point !== -1 || i === from) return Number.NaN;
      point = i;
      continue;
    }
    const d = b - ZERO;
    if (d < 0 || d > 9) return Number.NaN;
    n = n * 10 + d;
    digits++;
  }
  if (digits > 15) return Number.NaN;
  const value = point === -1 ? n : n / (POWERS_OF_TEN[end - point - 1] as number);
  return negative ? -value : value;
}

const PLUS = 0x2b;

/** `[+-]?[0-9]+` of at most 15 significant digits: an integer in any form the validator reads. */
function anyIntegerValue(bytes: Uint8Array, start: number, end: number): number {
  const sign = bytes[start];
  const from = sign === MINUS || sign === PLUS ? start + 1 : start;
  if (from >= end) return Number.NaN;
  let n = 0;
  for (let i = from; i < end; i++) {
    const d = (bytes[i] as number) - ZERO;
    if (d < 0 || d > 9) return Number.NaN;
    n = n * 10 + d;
  }
  // Past 15 significant digits a double may not hold the value exactly.
  if (n >= 1e15) return Number.NaN;
  return sign === MINUS ? -n : n;
}

/**
 * A decimal in any form the validator reads (`[+-]?(d+(.d*)?|.d+)([eE][+-]?d+)?`), its value
 * as Number() reads it when that is one correctly rounded operation: at most 15 significant
 * digits (an exact integer) times or over a power of ten up to 10^22 (exact too).
 */
function anyDecimalValue(bytes: Uint8Array, start: number, end: number): number {
  const sign = bytes[start];
  let i = sign === MINUS || sign === PLUS ? start + 1 : start;
  let n = 0;
  let digits = 0;
  let fraction = 0;
  let point = false;
  for (; i < end; i++) {
    const b = bytes[i] as number;
    if (b === DOT) {
      if (point) return Number.NaN;
      point = true;
      continue;
    }
    const d = b - ZERO;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
    digits++;
    if (point) fraction++;
  }
  if (digits === 0) return Number.NaN;
  let exponent = 0;
  if (i < end) {
    if (bytes[i] !== 0x65 && bytes[i] !== 0x45) return Number.NaN; // e, E
    i++;
    const negative = bytes[i] === MINUS;
    if (negative || bytes[i] === PLUS) i++;
    if (i >= end || end - i > 4) return Number.NaN;
    for (; i < end; i++) {
      const d = (bytes[i] as number) - ZERO;
      if (d < 0 || d > 9) return Number.NaN;
      exponent = exponent * 10 + d;
    }
    if (negative) exponent = -exponent;
  }
  if (n >= 1e15) return Number.NaN;
  const scale = exponent - fraction;
  let value: number;
  if (n === 0) value = 0;
  else if (scale >= 0 && scale <= 22) value = n * (POWERS_OF_TEN[scale] as number);
  else if (scale < 0 && scale >= -22) value = n / (POWERS_OF_TEN[-scale] as number);
  else return Number.NaN;
  return sign === MINUS ? -value : value;
}

/** The digits at bytes[from, from + count) as a number; NaN if any is not a digit. */
function digitsAt(bytes: Uint8Array, from: number, count: number): number {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    const d = (bytes[i] as number) - ZERO;
    if (d < 0 || d > 9) return Number.NaN;
    n = n * 10 + d;
  }
  return n;
}

const TRUE = Buffer.from("true");
const FALSE = Buffer.from("false");

function dateAt(bytes: Uint8Array, at: number): boolean {
  if (bytes[at + 4] !== MINUS || bytes[at + 7] !== MINUS) return false;
  return validDate(digitsAt(bytes, at, 4), digitsAt(bytes, at + 5, 2), digitsAt(bytes, at + 8, 2));
}

/** `HH:MM:SS` with any fraction from `at` to `end`. */
function timeAt(bytes: Uint8Array, at: number, end: number): boolean {
  if (end - at < 8 || bytes[at + 2] !== 0x3a || bytes[at + 5] !== 0x3a) return false;
  // NaN fails validTime's comparisons.
  if (!validTime(digitsAt(bytes, at, 2), digitsAt(bytes, at + 3, 2), digitsAt(bytes, at + 6, 2)))
    return false;
  if (end - at === 8) return true;
  if (bytes[at + 8] !== DOT || end - at === 9) return false;
  for (let i = at + 9; i < end; i++) {
    const b = bytes[i] as number;
    if (b < ZERO || b > NINE) return false;
  }
  return true;
}

/** `YYYY-MM-DDTHH:MM:SS(.fff)Z`: the datetime form already canonical. */
function isUtcDatetime(bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start < 20 || bytes[end - 1] !== 0x5a /* Z */ || bytes[start + 10] !== 0x54 /* T */)
    return false;
  return dateAt(bytes, start) && timeAt(bytes, start + 11, end - 1);
}

/**
 * `YYYY-MM-DD[T ]HH:MM:SS(.f+)?(Z|[+-]HH:?MM)?`, a valid date, time and offset: a datetime in
 * any form the validator reads. An offset is decided only for years 2 to 9998, where moving
 * the time to UTC (as the validator does) cannot leave the years it writes.
 */
function isDatetime(bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start < 19 || !dateAt(bytes, start)) return false;
  const t = bytes[start + 10];
  if (t !== 0x54 && t !== 0x20) return false; // T or space
  let zone = end;
  const last = bytes[end - 1];
  if (last === 0x5a)
    zone = end - 1; // Z
  else {
    for (let i = end - 1; i > start + 18; i--) {
      const b = bytes[i];
      if (b === PLUS || b === MINUS) {
        zone = i;
        break;
      }
    }
    if (zone !== end && !offsetAt(bytes, zone, end, digitsAt(bytes, start, 4))) return false;
  }
  return timeAt(bytes, start + 11, zone);
}

/** `[+-]HH:?MM`, hours to 23, minutes to 59, on a date whose year an offset cannot move out. */
function offsetAt(bytes: Uint8Array, at: number, end: number, year: number): boolean {
  if (year < 2 || year > 9998) return false;
  const colon = end - at === 6;
  if (!colon && end - at !== 5) return false;
  if (colon && bytes[at + 3] !== 0x3a) return false;
  const hours = digitsAt(bytes, at + 1, 2);
  const minutes = digitsAt(bytes, colon ? at + 4 : at + 3, 2);
  return hours <= 23 && minutes <= 59;
}

/** UTF-8 code points in valid UTF-8: every byte that does not continue a character. */
function codePoints(bytes: Uint8Array, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) if (((bytes[i] as number) & 0xc0) !== 0x80) n++;
  return n;
}

/** Characters an email's local part may hold besides letters and digits (RFC 5322 atext). */
const ATEXT = new Uint8Array(128);
for (const c of "!#$%&'*+/=?^_`{|}~-") ATEXT[c.charCodeAt(0)] = 1;

function isAlnum(b: number): boolean {
  return (b >= ZERO && b <= NINE) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}

/**
 * Which characters of the Basic Multilingual Plane are in a class of the email pattern's, looked
 * up by the pattern's own class (one definition) the first time a cell holds each, then kept:
 * a job's cells hold a few hundred such characters at most, of 65,536.
 */
export class ScriptLetters {
  readonly #member: RegExp;
  /** Per code point: 0 not yet looked up, 1 in the class, 2 not; made for the first one. */
  #known: Uint8Array | undefined;

  constructor(members: string) {
    this.#member = new RegExp(`^[${members}]$`, "u");
  }

  /**
   * The bytes of the character at `at` (UTF-8, past ASCII) when it is in the class, else 0; 0
   * too for a character past the plane (four bytes), which the validator is left to read.
   */
  width(bytes: Uint8Array, at: number, end: number): number {
    const read = codePointAt(bytes, at, end);
    const point = read >>> 3;
    // Not a character of two or three bytes (an overlong ASCII form, one past the plane).
    if (read < 0 || point < 0x80 || point > 0xffff) return 0;
    const width = read & 7;
    this.#known ??= new Uint8Array(0x10000);
    let known = this.#known[point] as number;
    if (known === 0) {
      known = this.#member.test(String.fromCharCode(point)) ? 1 : 2;
      this.#known[point] = known;
    }
    return known === 1 ? width : 0;
  }
}

/** A table of the letters email addresses may hold, for one job's email fields. */
export function emailLetters(): ScriptLetters {
  return new ScriptLetters(EMAIL_LETTERS);
}

/**
 * An address the email format takes: a dot-atom local part of 1 to 64 characters, `@`, then
 * host name labels of 1 to 63 letters, digits and inner hyphens, two or more, within 253
 * characters, the last not all ASCII digits. Letters, marks and digits of other scripts count
 * as the pattern counts them, in characters; one past the Basic Multilingual Plane is the
 * validator's to read.
 */
function isEmail(bytes: Uint8Array, start: number, end: number, letters: ScriptLetters): boolean {
  // Local part: atoms of atext joined by single dots.
  let i = start;
  let characters = 0;
  let atomLength = 0;
  for (;;) {
    if (i === end) return false;
    const b = bytes[i] as number;
    if (b === 0x40) break;
    if (++characters > 64) return false;
    if (b === DOT) {
      if (atomLength === 0) return false;
      atomLength = 0;
      i++;
      continue;
    }
    if (b < 128) {
      if (!isAlnum(b) && ATEXT[b] !== 1) return false;
      i++;
    } else {
      const width = letters.width(bytes, i, end);
      if (width === 0) return false;
      i += width;
    }
    atomLength++;
  }
  if (atomLength === 0) return false;
  // Domain: labels joined by dots.
  let domain = 0;
  let labels = 0;
  let labelLength = 0;
  let hyphen = false;
  let allDigits = true;
  for (i++; ; ) {
    if (i === end || bytes[i] === DOT) {
      if (labelLength < 1 || labelLength > 63 || hyphen) return false;
      labels++;
      if (i === end) break;
      if (++domain > 253) return false;
      i++;
      labelLength = 0;
      allDigits = true;
      continue;
    }
    const b = bytes[i] as number;
    hyphen = b === MINUS;
    if (hyphen) {
      if (labelLength === 0) return false; // a label's first character
      allDigits = false;
      i++;
    } else if (b < 128) {
      if (!isAlnum(b)) return false;
      if (b > NINE) allDigits = false;
      i++;
    } else {
      const width = letters.width(bytes, i, end);
      if (width === 0) return false;
      allDigits = false;
      i += width;
    }
    // Past either bound the address is refused: stop here, not at the cell's end.
    if (++domain > 253 || ++labelLength > 63) return false;
  }
  return domain >= 1 && labels >= 2 && !allDigits;
}

function isHex(b: number): boolean {
  return (b >= ZERO && b <= NINE) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

function isUuid(bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const b = bytes[start + i] as number;
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (b !== MINUS) return false;
    } else if (!isHex(b)) return false;
  }
  return true;
}
