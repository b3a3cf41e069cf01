import type { TableSchemaField } from "../../shared/tableSchema.ts";

/** Table Schema's default boolean words. */
export const TRUE_VALUES = ["true", "True", "TRUE", "1"];
export const FALSE_VALUES = ["false", "False", "FALSE", "0"];

// Table Schema field types: each turns a cell's text into a typed value and the canonical text
// written to the output, or says the text is not of the type.

export interface TypedCell {
  /** Comparable value for constraints: number, bigint, boolean or string. */
  value: number | bigint | boolean | string;
  /** Canonical text form written to the output. */
  text: string;
  /** An array's items or an object's keys: what minLength and maxLength count for them. */
  size?: number;
}
export type CellParser = (raw: string) => TypedCell | null;

export interface FieldType {
  parse: CellParser;
  /** Names the type and format in error messages, as Frictionless does ("integer/default"). */
  label: string;
}

/** The letters, marks and digits of every script an email's local part and labels may hold. */
export const EMAIL_LETTERS = "\\p{L}\\p{M}\\p{N}";

/**
 * An email address as RFC 5322's addr-spec in its dot-atom form (RFC 6531 lets the local part
 * and the labels hold other scripts: letters, marks and digits), with a host name for a domain (RFC 1034 labels, a top-level label
 * not all digits), within RFC 5321's lengths: what frictionless-py's validator takes. No quoted
 * local parts, no address literals (rare, and a reject names them).
 */
const EMAIL = (() => {
  const atom = `[${EMAIL_LETTERS}!#$%&'*+/=?^_\`{|}~-]+`;
  const label = `[${EMAIL_LETTERS}](?:[${EMAIL_LETTERS}-]{0,61}[${EMAIL_LETTERS}])?`;
  return new RegExp(
    `^(?=[^@]{1,64}@)${atom}(?:\\.${atom})*@(?=.{1,253}$)(?:${label}\\.)+(?![0-9]+$)${label}$`,
    "u",
  );
})();
const DURATION =
  /^P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$/;
const GEOJSON_TYPES = new Set([
  "Point",
  "MultiPoint",
  "LineString",
  "MultiLineString",
  "Polygon",
  "MultiPolygon",
  "GeometryCollection",
  "Feature",
  "FeatureCollection",
]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
/** A decimal already in canonical form: no plus sign, no leading zeros, no bare point. */
const PLAIN_DECIMAL = /^-?(?:0|[1-9]\d*)(?:\.\d*)?(?:[eE][+-]?\d+)?$/;
/** White space, control characters (C0, DEL, C1) and invisible format characters. */
const NOT_IN_URI = /[\s\p{Cc}\p{Cf}]/u;
const GEOPOINT = (() => {
  const decimal = DECIMAL.source.slice(1, -1);
  return new RegExp(`^\\s*(${decimal})\\s*,\\s*(${decimal})\\s*$`);
})();
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME = /^(\d{2}):(\d{2}):(\d{2})(\.\d+)?$/;

export function fieldType(field: TableSchemaField): FieldType {
  const format = field.format ?? "default";
  const label = `${field.type}/${format}`;
  switch (field.type) {
    case "string":
      return { label, parse: stringParser(format) };
    case "any":
      return { label, parse: (raw) => ({ value: raw, text: raw }) };
    case "integer":
      return { label, parse: integerParser(field.bareNumber ?? true, field.groupChar) };
    case "number":
      return {
        label,
        parse: numberParser(field.bareNumber ?? true, field.decimalChar ?? ".", field.groupChar),
      };
    case "boolean": {
      const trueValues = new Set(field.trueValues ?? TRUE_VALUES);
      const falseValues = new Set(field.falseValues ?? FALSE_VALUES);
      return {
        label,
        parse: (raw) =>
          trueValues.has(raw)
            ? { value: true, text: "true" }
            : falseValues.has(raw)
              ? { value: false, text: "false" }
              : null,
      };
    }
    case "date":
      return { label, parse: temporalParser(format, "date") };
    case "time":
      return { label, parse: temporalParser(format, "time") };
    case "datetime":
      return { label, parse: temporalParser(format, "datetime") };
    case "year":
      return {
        label,
        parse: (raw) => (/^\d{4}$/.test(raw) ? { value: Number(raw), text: raw } : null),
      };
    case "duration":
      return {
        label,
        parse: (raw) =>
          DURATION.test(raw) && raw !== "P" && !raw.endsWith("T")
            ? { value: raw, text: raw }
            : null,
      };
    case "object":
      return {
        label,
        parse: jsonParser((v) => typeof v === "object" && v !== null && !Array.isArray(v)),
      };
    case "array":
      return { label, parse: jsonParser(Array.isArray) };
    case "geojson":
      return {
        label,
        parse: jsonParser((v) => {
          const type = (v as { type?: unknown } | null)?.type;
          return (
            typeof type === "string" &&
            (format === "topojson" ? type === "Topology" : GEOJSON_TYPES.has(type))
          );
        }),
      };
    case "geopoint":
      return { label, parse: geopointParser(format) };
    case "yearmonth":
      return {
        label,
        parse: (raw) => {
          const m = /^(\d{4})-(\d{2})$/.exec(raw);
          return m && Number(m[2]) >= 1 && Number(m[2]) <= 12 ? { value: raw, text: raw } : null;
        },
      };
  }
}

function stringParser(format: string): CellParser {
  const ok = (raw: string): TypedCell => ({ value: raw, text: raw });
  switch (format) {
    case "email":
      return (raw) => (EMAIL.test(raw) ? ok(raw) : null);
    case "uuid":
      return (raw) => (UUID.test(raw) ? ok(raw) : null);
    case "uri":
      // WHATWG's parser trims and escapes what RFC 3986 refuses: white space, control and
      // invisible format characters anywhere in the cell make it no URI.
      return (raw) =>
        /^[A-Za-z][A-Za-z0-9+.-]*:/.test(raw) && !NOT_IN_URI.test(raw) && URL.canParse(raw)
          ? ok(raw)
          : null;
    case "binary":
      return (raw) => (BASE64.test(raw) ? ok(raw) : null);
    default:
      return ok;
  }
}

/** Strips what a non-bare number may carry around its digits ("$1,000", "15%"). */
function stripNonBare(raw: string): string {
  return raw.replace(/^[^0-9+\-.]+/, "").replace(/[^0-9.]+$/, "");
}

/** No plus sign, no leading zero, no "-0": the text is already what String(n) would print. */
function isCanonicalInteger(text: string): boolean {
  const first = text.charCodeAt(0);
  if (first === 43 /* + */) return false;
  const lead = first === 45 /* - */ ? 1 : 0;
  return text.charCodeAt(lead) !== 48 /* 0 */ || text.length === 1;
}

function integerParser(bare: boolean, groupChar: string | undefined): CellParser {
  return (raw) => {
    let text = bare ? raw : stripNonBare(raw);
    if (groupChar) text = text.replaceAll(groupChar, "");
    if (!INTEGER.test(text)) return null;
    // Up to 15 digits a double is exact; BigInt only for the long ones (it is slow per cell).
    if (text.length <= 15) {
      const n = Number(text);
      return { value: n, text: isCanonicalInteger(text) ? text : String(n === 0 ? 0 : n) };
    }
    const big = BigInt(text);
    const asNumber = Number(big);
    return {
      value: Number.isSafeInteger(asNumber) ? asNumber : big,
      text: big.toString(),
    };
  };
}

function numberParser(
  bare: boolean,
  decimalChar: string,
  groupChar: string | undefined,
): CellParser {
  return (raw) => {
    if (raw === "NaN") return { value: Number.NaN, text: "NaN" };
    if (raw === "INF" || raw === "+INF") return { value: Number.POSITIVE_INFINITY, text: "INF" };
    if (raw === "-INF") return { value: Number.NEGATIVE_INFINITY, text: "-INF" };
    let text = bare ? raw : stripNonBare(raw);
    if (groupChar) text = text.replaceAll(groupChar, "");
    if (decimalChar !== ".") {
      // "1.234" where the decimal mark is "," is not 1.234 (it may well be 1234): refused.
      if (text.includes(".")) return null;
      text = text.replaceAll(decimalChar, ".");
    }
    if (!DECIMAL.test(text)) return null;
    // Canonical text keeps every digit the source had (no float round trip): only the sign,
    // group characters and a bare leading decimal point are normalized.
    const canonical = PLAIN_DECIMAL.test(text) ? text : canonicalDecimal(text);
    return { value: Number(canonical), text: canonical };
  };
}

/**
 * A decimal's text (of DECIMAL's form) without a plus sign, with a 0 before a bare point and
 * without leading zeros: "+.5" is "0.5", "-007.50" is "-7.50", "000" is "0".
 */
export function canonicalDecimal(text: string): string {
  let at = text.charCodeAt(0) === 43 /* + */ ? 1 : 0;
  const negative = text.charCodeAt(at) === 45; /* - */
  if (negative) at++;
  // A zero followed by a digit is a leading zero; the last digit before the point stays.
  while (text.charCodeAt(at) === 48 /* 0 */ && isDigit(text.charCodeAt(at + 1))) at++;
  const digits = text.charCodeAt(at) === 46 /* . */ ? `0${text.slice(at)}` : text.slice(at);
  return negative ? `-${digits}` : digits;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A calendar date: years from 1 on (there is no year 0, as Python and XML Schema 1.0 say). */
export function validDate(y: number, m: number, d: number): boolean {
  return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, m);
}

export function validTime(h: number, mi: number, s: number): boolean {
  return h <= 23 && mi <= 59 && s <= 59;
}

/** The digits at raw[from, from + count) as a number, or -1 if any is not a digit. */
function digitsAt(raw: string, from: number, count: number): number {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    const d = raw.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

function temporalParser(format: string, kind: "date" | "time" | "datetime"): CellParser {
  if (format === "default") return defaultTemporal(kind);
  if (format === "any") return anyTemporal(kind);
  return patternTemporal(format, kind);
}

function defaultTemporal(kind: "date" | "time" | "datetime"): CellParser {
  if (kind === "date") {
    return (raw) => {
      const m = DATE.exec(raw);
      if (!m || !validDate(Number(m[1]), Number(m[2]), Number(m[3]))) return null;
      return { value: raw, text: raw };
    };
  }
  if (kind === "time") {
    return (raw) => {
      const m = TIME.exec(raw);
      if (!m || !validTime(Number(m[1]), Number(m[2]), Number(m[3]))) return null;
      return { value: raw, text: raw };
    };
  }
  return (raw) => {
    const at = datetimeAt(raw);
    if (!at) return null;
    if (!validDate(at.year, at.month, at.day)) return null;
    if (!validTime(at.hours, at.minutes, at.seconds)) return null;
    const { zone } = at;
    // The common canonical form comes back as it came, without rebuilding the string.
    if (zone === "Z" && raw.charCodeAt(10) === 84 /* T */) return { value: raw, text: raw };
    // The date, "T", the time and its fraction as written.
    const local = `${raw.slice(0, 10)}T${raw.slice(11, at.fractionEnd)}`;
    if (zone === undefined) return { value: local, text: local };
    if (zone === "Z") return { value: `${local}Z`, text: `${local}Z` };
    // Offsets are normalized to UTC so that equal instants compare and print equal. An instant
    // whose UTC date leaves the years 1 to 9999 (9999-12-31T23:00:00-05:00) has no text of that
    // form, which this type reads back: it keeps its offset, as ±hh:mm.
    const utc = utcText(raw, at);
    if (utc === null) return null;
    const text = utc ?? `${local}${zone.slice(0, 3)}:${zone.slice(-2)}`;
    return { value: text, text };
  };
}

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** A datetime's fields, read where `YYYY-MM-DD[T ]hh:mm:ss[.f…][Z|±hh[:]mm]` has them. */
interface DatetimeAt {
  year: number;
  month: number;
  day: number;
  hours: number;
  minutes: number;
  seconds: number;
  /** Where the seconds' fraction ends (19: none). */
  fractionEnd: number;
  /** "Z", an offset as written (`+02:00`, `-0530`), or undefined (local time). */
  zone: string | undefined;
}

/**
 * The fields of `YYYY-MM-DD[T ]hh:mm:ss[.f…][Z|±hh[:]mm]` (digits 0-9 only, a fraction of one
 * digit or more), read by position, or undefined when the text is not of that form. A regular
 * expression's match and its eight captured strings cost more than the whole check.
 */
function datetimeAt(raw: string): DatetimeAt | undefined {
  const n = raw.length;
  if (n < 19) return undefined;
  const sep = raw.charCodeAt(10);
  if (sep !== 84 /* T */ && sep !== 32 /* space */) return undefined;
  if (raw.charCodeAt(4) !== 45 || raw.charCodeAt(7) !== 45) return undefined;
  if (raw.charCodeAt(13) !== 58 || raw.charCodeAt(16) !== 58) return undefined;
  const year = digitsAt(raw, 0, 4);
  const month = digitsAt(raw, 5, 2);
  const day = digitsAt(raw, 8, 2);
  const hours = digitsAt(raw, 11, 2);
  const minutes = digitsAt(raw, 14, 2);
  const seconds = digitsAt(raw, 17, 2);
  if (year < 0 || month < 0 || day < 0 || hours < 0 || minutes < 0 || seconds < 0) {
    return undefined;
  }
  let at = 19;
  if (raw.charCodeAt(at) === 46 /* . */) {
    at++;
    const digits = at;
    while (at < n && isDigit(raw.charCodeAt(at))) at++;
    if (at === digits) return undefined;
  }
  const fractionEnd = at;
  if (at === n) return { year, month, day, hours, minutes, seconds, fractionEnd, zone: undefined };
  const sign = raw.charCodeAt(at);
  if (sign === 90 /* Z */) {
    if (at + 1 !== n) return undefined;
  } else if (sign === 43 /* + */ || sign === 45 /* - */) {
    // ±hh:mm or ±hhmm, and nothing after it.
    const colon = raw.charCodeAt(at + 3) === 58;
    if (n !== at + (colon ? 6 : 5)) return undefined;
    if (digitsAt(raw, at + 1, 2) < 0 || digitsAt(raw, colon ? at + 4 : at + 3, 2) < 0) {
      return undefined;
    }
  } else return undefined;
  return { year, month, day, hours, minutes, seconds, fractionEnd, zone: raw.slice(at) };
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/**
 * A valid datetime with an offset in UTC (`…:ssZ`, its fraction as written: every digit of it
 * is kept, as in the UTC form, so that one instant has one text whatever its offset), computed
 * on its numbers. null when the offset is no offset (hours over 23, minutes over 59);
 * undefined when the UTC year leaves 1-9999.
 */
function utcText(raw: string, at: DatetimeAt): string | null | undefined {
  const utc = utcFields(at);
  if (utc === null) return null;
  // Before year 1 there is no date to write (there is no year 0).
  if (utc.year < 1 || utc.year > 9999) return undefined;
  return `${pad(utc.year, 4)}${utcRest(raw, at, utc)}`;
}

/**
 * The key that orders a datetime kept with its offset (its UTC year is 0 or 10000) among UTC
 * texts by its instant: its UTC text, year 0 written "0000" (before every year 1) and year
 * 10000 "~000" ("~" sorts after every digit). undefined for any other text.
 */
export function offsetInstantKey(text: string): string | undefined {
  const at = datetimeAt(text);
  if (at === undefined || at.zone === undefined || at.zone === "Z") return undefined;
  const utc = utcFields(at);
  if (utc === null) return undefined;
  const year =
    utc.year < 1 ? "0000" : utc.year > 9999 ? `~${pad(utc.year - 10000, 3)}` : pad(utc.year, 4);
  return `${year}${utcRest(text, at, utc)}`;
}

interface UtcFields {
  year: number;
  month: number;
  day: number;
  /** Minutes into the UTC day. */
  minutes: number;
}

/** The UTC date and minute of a datetime with an offset; null when the offset is no offset. */
function utcFields(at: DatetimeAt): UtcFields | null {
  const zone = at.zone ?? "";
  const [zoneHours, zoneMinutes] = [Number(zone.slice(1, 3)), Number(zone.slice(-2))];
  if (zoneHours > 23 || zoneMinutes > 59) return null;
  const east = zone.charCodeAt(0) === 43; /* + */
  let minutes = at.hours * 60 + at.minutes + (east ? -1 : 1) * (zoneHours * 60 + zoneMinutes);
  let { year, month, day } = at;
  if (minutes < 0) {
    minutes += 1440;
    day--;
    if (day < 1) {
      month--;
      if (month < 1) [month, year] = [12, year - 1];
      day = daysIn(year, month);
    }
  } else if (minutes >= 1440) {
    minutes -= 1440;
    day++;
    if (day > daysIn(year, month)) {
      [day, month] = [1, month + 1];
      if (month > 12) [month, year] = [1, year + 1];
    }
  }
  return { year, month, day, minutes };
}

/** A UTC text after its year: `-MM-DDThh:mm:`, the seconds and fraction as written, `Z`. */
function utcRest(raw: string, at: DatetimeAt, utc: UtcFields): string {
  const time = `${pad(Math.floor(utc.minutes / 60), 2)}:${pad(utc.minutes % 60, 2)}`;
  return `-${pad(utc.month, 2)}-${pad(utc.day, 2)}T${time}:${raw.slice(17, at.fractionEnd)}Z`;
}

function daysIn(year: number, month: number): number {
  const leap = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return (DAYS_IN_MONTH[month - 1] as number) + (leap ? 1 : 0);
}

function anyTemporal(kind: "date" | "time" | "datetime"): CellParser {
  const strict = defaultTemporal(kind);
  return (raw) => {
    const exact = strict(raw);
    if (exact || kind === "time") return exact;
    const read = looseTemporal(raw);
    if (!read) return null;
    // A date is the one written; a datetime with a zone is its instant in UTC, as the default
    // format writes offsets, and one without is its wall clock, marked UTC.
    const value = new Date(kind === "date" || !read.zoned ? read.wall : read.instant);
    const year = value.getUTCFullYear();
    if (year < 1 || year > 9999) return null;
    const iso = value.toISOString();
    const text = kind === "date" ? iso.slice(0, 10) : `${iso.slice(0, 19)}Z`;
    return { value: text, text };
  };
}

/**
 * A word as V8's date parser reads one (a run of characters from "A" up that are not white
 * space: "utc_" is one word, and no zone), and a digit, after which a zone word counts. The
 * line and paragraph separators, white space to `\s`, are word characters to V8 (`Jun\u2028UTC`
 * is one month word).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: V8's words start at "A", so every character below it ends one.
const WORD_OR_DIGIT = /(?:[^\x00-\x40\s]|[\u2028\u2029])+|\d/g;
/** The zone names V8's date parser reads, a whole word each. */
const ZONE_NAMES = new Set([
  "ut",
  "utc",
  "gmt",
  "z",
  "est",
  "edt",
  "cst",
  "cdt",
  "mst",
  "mdt",
  "pst",
  "pdt",
]);
/** A time as V8's date parser reads one, and the offset after it if any (captured). */
const TIME_AND_OFFSET =
  /\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d+)?)?(?:\s*[ap]m)?(?:\s*(?:gmt|utc))?(?:\s*([+-]\d{1,2}(?::?\d\d)?))?/gi;
const NAMED_OFFSET = /(?:gmt|utc)\s*[+-]\d\d(?::?\d\d)?/gi;
/** An ISO form's own offset, which takes no other zone after it. */
const ISO_OFFSET = /[+-]\d\d(?::?\d\d)?$/;
/** Longer than any date a cell writes: such a cell is not read (bounds the work on it). */
const MAX_LOOSE_CHARS = 256;
const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/**
 * What JavaScript's Date.parse reads in a cell, when the date it reads is the one written: a
 * four-digit year from 1 to 9999, the month (a number or its English name) and the day, each
 * in the cell. Date.parse alone takes "1" for 2001-01-01, rolls 2020-02-30 over to March, and
 * reads a time without a zone in the worker's own time zone: a cell would then be worth one
 * value on one worker and another on the next, and a resumed job would not be byte-identical.
 * `wall` is the date and time as written, read as UTC; `instant` is the moment, when `zoned`.
 */
function looseTemporal(raw: string): { wall: number; instant: number; zoned: boolean } | null {
  // Date.parse stops at a NUL, before the zone appended below: the rest would be read in the
  // worker's own zone.
  if (raw.length > MAX_LOOSE_CHARS || raw.includes("\0")) return null;
  const instant = Date.parse(raw);
  if (Number.isNaN(instant)) return null;
  // A zone appended to a cell overrides any it has, so this reads the wall clock as written
  // whatever the worker's zone; an ISO form takes "Z" instead, in place of its own offset.
  // Without its comments, so that the zone appended is not inside an unclosed one.
  const text = withoutComments(raw);
  let wall = Date.parse(`${text} UTC`);
  if (Number.isNaN(wall)) wall = Date.parse(`${raw}Z`);
  // The date's numbers: the cell's own, less its time and offset (2020-02-30 03:01, rolled over
  // to March 1, would otherwise find its month and day in the hour and the minute).
  let offset = false;
  const dateText = text
    .replace(TIME_AND_OFFSET, (_time, sign: string | undefined) => {
      offset ||= sign !== undefined;
      return " ";
    })
    .replace(NAMED_OFFSET, " ");
  const zoned = Number.isNaN(wall) || offset || namesZone(text);
  if (Number.isNaN(wall)) wall = Date.parse(`${raw.replace(ISO_OFFSET, "")}Z`);
  if (Number.isNaN(wall)) return null;
  const date = new Date(wall);
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) return null;
  const numbers = (dateText.match(/\d+/g) ?? []).map((n) => ({ n: Number(n), digits: n.length }));
  const written = (value: number) => numbers.some(({ n }) => n === value);
  const month = date.getUTCMonth();
  const lower = text.toLowerCase();
  if (!numbers.some(({ n, digits }) => n === year && digits === 4)) return null;
  if (!written(month + 1) && !lower.includes(MONTHS[month] as string)) return null;
  if (!written(date.getUTCDate())) return null;
  return { wall, instant, zoned };
}

/**
 * The cell as V8's date parser reads it, its comments each made one space: a comment runs from
 * "(" to the ")" that balances it, or to the end of the cell (`GMT+0100 (CET)`, `10:00 ((a) b)`,
 * `10:00 (UTC`).
 */
function withoutComments(raw: string): string {
  const open = raw.indexOf("(");
  if (open < 0) return raw;
  let text = raw.slice(0, open);
  let depth = 0;
  for (let i = open; i < raw.length; i++) {
    const c = raw[i];
    if (c === "(") {
      if (depth === 0) text += " ";
      depth++;
    } else if (depth > 0) {
      if (c === ")") depth--;
    } else {
      text += c;
    }
  }
  return text;
}

/** Whether V8's date parser reads a zone name in the text: one counts only after a number. */
function namesZone(text: string): boolean {
  let number = false;
  for (const [token] of text.matchAll(WORD_OR_DIGIT)) {
    if (token.length === 1 && token >= "0" && token <= "9") number = true;
    else if (number && token.length <= 3 && ZONE_NAMES.has(token.toLowerCase())) return true;
  }
  return false;
}

/** Python strptime directives, the form Frictionless patterns use (`%d/%m/%Y`). */
const DIRECTIVES: Record<string, { re: string; key: string }> = {
  Y: { re: "(\\d{4})", key: "Y" },
  y: { re: "(\\d{2})", key: "y" },
  m: { re: "(\\d{1,2})", key: "m" },
  d: { re: "(\\d{1,2})", key: "d" },
  H: { re: "(\\d{1,2})", key: "H" },
  M: { re: "(\\d{1,2})", key: "M" },
  S: { re: "(\\d{1,2})", key: "S" },
  f: { re: "(\\d{1,6})", key: "f" },
  z: { re: "(Z|[+-]\\d{2}:?\\d{2})", key: "z" },
};

function patternTemporal(format: string, kind: "date" | "time" | "datetime"): CellParser {
  const keys: string[] = [];
  let source = "^";
  for (let i = 0; i < format.length; i++) {
    const c = format[i] as string;
    const directive = c === "%" ? DIRECTIVES[format[i + 1] ?? ""] : undefined;
    if (directive) {
      source += directive.re;
      keys.push(directive.key);
      i++;
    } else {
      source += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }
  }
  const re = new RegExp(`${source}$`);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return (raw) => {
    const m = re.exec(raw);
    if (!m) return null;
    const parts: Record<string, string> = {};
    keys.forEach((key, index) => {
      parts[key] = m[index + 1] as string;
    });
    const year = parts.Y ? Number(parts.Y) : parts.y ? 2000 + Number(parts.y) : 1900;
    const month = parts.m ? Number(parts.m) : 1;
    const day = parts.d ? Number(parts.d) : 1;
    const h = Number(parts.H ?? 0);
    const mi = Number(parts.M ?? 0);
    const s = Number(parts.S ?? 0);
    if (!validDate(year, month, day) || !validTime(h, mi, s)) return null;
    const date = `${pad(year, 4)}-${pad(month)}-${pad(day)}`;
    const time = `${pad(h)}:${pad(mi)}:${pad(s)}${parts.f ? `.${parts.f}` : ""}`;
    const text =
      kind === "date" ? date : kind === "time" ? time : `${date}T${time}${parts.z ?? ""}`;
    return { value: text, text };
  };
}

/** JSON cells (object, array, geojson): canonical text is the compact JSON. */
function jsonParser(accept: (value: unknown) => boolean): CellParser {
  return (raw) => {
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      return null;
    }
    if (!accept(value)) return null;
    const text = JSON.stringify(value);
    const size = Array.isArray(value)
      ? value.length
      : typeof value === "object" && value !== null
        ? Object.keys(value).length
        : undefined;
    return size === undefined ? { value: text, text } : { value: text, text, size };
  };
}

function geopointParser(format: string): CellParser {
  const valid = (lon: number, lat: number) =>
    Number.isFinite(lon) && Number.isFinite(lat) && Math.abs(lon) <= 180 && Math.abs(lat) <= 90;
  return (raw) => {
    let lon: number;
    let lat: number;
    if (format === "array" || format === "object") {
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch {
        return null;
      }
      if (format === "array") {
        if (!Array.isArray(value) || value.length !== 2) return null;
        [lon, lat] = value as [number, number];
      } else {
        const o = value as { lon?: unknown; lat?: unknown } | null;
        if (typeof o?.lon !== "number" || typeof o.lat !== "number") return null;
        // Exactly the two keys the specification names.
        if (Object.keys(o).length !== 2) return null;
        [lon, lat] = [o.lon, o.lat];
      }
    } else {
      // "lon, lat", each what frictionless-py's Decimal reads once stripped: a sign, a bare
      // point, an exponent ("+1.50", ".5", "1e1"), as a number field takes them.
      const m = GEOPOINT.exec(raw);
      if (!m) return null;
      [lon, lat] = [Number(m[1]), Number(m[2])];
    }
    if (typeof lon !== "number" || typeof lat !== "number" || !valid(lon, lat)) return null;
    const text =
      format === "array"
        ? `[${lon},${lat}]`
        : format === "object"
          ? JSON.stringify({ lon, lat })
          : `${lon},${lat}`;
    return { value: text, text };
  };
}
