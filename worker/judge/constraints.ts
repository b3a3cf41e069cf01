import type { TableSchemaField } from "../../shared/tableSchema.ts";
import { fieldType, offsetInstantKey, type TypedCell } from "./fieldTypes.ts";
import { fieldPattern, matchesText, type PatternAutomaton } from "./patternBytes.ts";

// A field's constraints (minLength, maxLength, minimum, maximum, pattern, enum) as checks on a
// typed cell: the one definition of each, for the validators and the byte row path's bounds.

/** The order of two values: negative, 0 or positive; NaN when they have none (NaN itself). */
function compare(a: TypedCell["value"], b: TypedCell["value"]): number {
  if (typeof a === "string" || typeof b === "string") {
    const [x, y] = [String(a), String(b)];
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const [x, y] = [a as number | bigint, b as number | bigint];
  if (x < y) return -1;
  if (x > y) return 1;
  return Number.isNaN(x) || Number.isNaN(y) ? Number.NaN : 0;
}

/** A constraint bound from the schema, parsed with the field's own type when it is text. */
export function bound(
  field: TableSchemaField,
  value: number | string | undefined,
): TypedCell["value"] | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "number") return value;
  const typed = fieldType(field).parse(value);
  return typed ? typed.value : value;
}

/**
 * A constraint's message for a cell's typed value, text and size (an array's items, an object's
 * keys), or undefined when it holds.
 */
export type Constraint = (
  value: TypedCell["value"],
  text: string,
  size: number | undefined,
) => string | undefined;

/**
 * Datetimes and times in order: `…:00Z`, `…:00.5Z` and `…:00.50Z` are read as instants, not
 * text ("." sorts before "Z"): the zone letter and a fraction's trailing zeros say nothing.
 */
function temporalKey(value: TypedCell["value"]): string {
  let text = String(value);
  // A datetime that kept its offset (its UTC year leaves 1-9999) is ordered by its instant.
  if (endsWithOffset(text)) text = offsetInstantKey(text) ?? text;
  if (text.endsWith("Z")) text = text.slice(0, -1);
  // One pass from the end (a cell may hold a fraction of maxRowBytes digits): only a fraction
  // of digits alone up to the end is trimmed, its trailing zeros and then a bare ".".
  const dot = text.lastIndexOf(".");
  if (dot === -1) return text;
  let end = text.length;
  for (let i = dot + 1; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return text;
  }
  while (end > dot + 1 && text.charCodeAt(end - 1) === 48) end--;
  return text.slice(0, end === dot + 1 ? dot : end);
}

/** `…±hh:mm`: what only a datetime kept with its offset ends with among canonical values. */
function endsWithOffset(text: string): boolean {
  const sign = text.charCodeAt(text.length - 6);
  return (sign === 43 || sign === 45) && text.charCodeAt(text.length - 3) === 58;
}

function compareTemporal(a: TypedCell["value"], b: TypedCell["value"]): number {
  return compare(temporalKey(a), temporalKey(b));
}

/**
 * Whether a value is one of an enum's, by sets (an enum may be long, and a cell's check must
 * not grow with it): the same answer as finding a value the field's order says is equal.
 * Datetimes and times are compared as instants; other text by its exact value, against the
 * enum's text and the text form of its numbers; numbers, bigints and booleans by number.
 */
function enumLookup(
  allowed: ReadonlyArray<TypedCell["value"]>,
  temporal: boolean,
): (value: TypedCell["value"]) => boolean {
  if (temporal) {
    const instants = new Set(allowed.map(temporalKey));
    return (value) => instants.has(temporalKey(value));
  }
  const texts = new Set(allowed.map(String));
  const numbers = new Set<string>();
  for (const v of allowed) {
    const key = typeof v === "string" ? undefined : numberKey(v);
    if (key !== undefined) numbers.add(key);
  }
  return (value) => {
    if (typeof value === "string") return texts.has(value);
    const key = numberKey(value);
    return key !== undefined && numbers.has(key);
  };
}

/** One key per number `compare` finds equal (1, 1.0, 1n and true alike); NaN equals nothing. */
function numberKey(value: number | bigint | boolean): string | undefined {
  if (typeof value === "bigint") return value.toString();
  const n = Number(value);
  if (Number.isNaN(n)) return undefined;
  return Number.isInteger(n) ? BigInt(n).toString() : String(n);
}

/** `automaton`: the field's pattern compiled (fieldPattern), when the caller shares one. */
export function constraintsOf(
  field: TableSchemaField,
  automaton: PatternAutomaton | undefined = fieldPattern(field),
): Constraint[] {
  const c = field.constraints ?? {};
  const checks: Constraint[] = [];
  const order = field.type === "datetime" || field.type === "time" ? compareTemporal : compare;
  const length = (value: TypedCell["value"], size: number | undefined) => {
    if (size !== undefined) return size;
    const text = String(value);
    // Code points, not UTF-16 units; only text outside the BMP needs the slow count.
    return /[\uD800-\uDFFF]/.test(text) ? [...text].length : text.length;
  };
  const { minLength, maxLength, pattern } = c;
  if (minLength !== undefined) {
    checks.push((value, text, size) =>
      length(value, size) < minLength
        ? `"${text}" is shorter than minLength ${minLength}`
        : undefined,
    );
  }
  if (maxLength !== undefined) {
    checks.push((value, text, size) =>
      length(value, size) > maxLength
        ? `"${text}" is longer than maxLength ${maxLength}`
        : undefined,
    );
  }
  const minimum = bound(field, c.minimum);
  if (minimum !== undefined) {
    // Written as "not at least": NaN is not in order with anything, so it fails both bounds.
    checks.push((value, text) =>
      order(value, minimum) >= 0 ? undefined : `${text} is below the minimum ${String(c.minimum)}`,
    );
  }
  const maximum = bound(field, c.maximum);
  if (maximum !== undefined) {
    checks.push((value, text) =>
      order(value, maximum) <= 0 ? undefined : `${text} is above the maximum ${String(c.maximum)}`,
    );
  }
  if (pattern !== undefined) {
    // The subset patternBytes.ts compiles runs on its automaton, in time linear in the cell;
    // only what it cannot compile runs on V8's backtracking RegExp.
    const re = automaton ? undefined : new RegExp(`^(?:${pattern})$`, "u");
    const matches = automaton
      ? (text: string) => matchesText(automaton, text)
      : (text: string) => (re as RegExp).test(text);
    checks.push((value, text) =>
      matches(String(value)) ? undefined : `"${text}" does not match the pattern ${pattern}`,
    );
  }
  if (c.enum) {
    const allowed = c.enum
      .map((v) => (typeof v === "string" ? bound(field, v) : v))
      .filter((v) => v !== undefined);
    const listed = JSON.stringify(c.enum);
    const isAllowed = enumLookup(allowed, order === compareTemporal);
    checks.push((value, text) =>
      isAllowed(value) ? undefined : `"${text}" is not one of ${listed}`,
    );
  }
  return checks;
}
