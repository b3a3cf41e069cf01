import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalDecimal, fieldType, type TypedCell } from "../../worker/judge/fieldTypes.ts";

// Cells read by position and character code where they were read by regular expressions: a
// datetime (fieldTypes.ts's datetimeAt) and a decimal's canonical text (canonicalDecimal). The
// expressions and what was built from them are kept here as the specification: on cells of
// that shape and near it, both give the same value and text, or both refuse the cell.

const DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/;
const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const daysIn = (y: number, m: number) =>
  (DAYS[m - 1] as number) + (m === 2 && y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 1 : 0);
const validDate = (y: number, m: number, d: number) =>
  y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, m);
const pad = (n: number, width: number) => String(n).padStart(width, "0");

/**
 * The parser as the regular expression read it (0.4.1), but for two things that release got
 * wrong: a fraction moved to UTC is kept as written (it was cut to milliseconds, so one instant
 * had two texts and two instants one), and an instant whose UTC year leaves 1-9999 keeps its
 * offset (it was refused before year 1, and written as `+010000-…`, which no schema reads,
 * after 9999).
 */
function specification(raw: string): TypedCell | null {
  const m = DATETIME.exec(raw);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  if (!validDate(Number(y), Number(mo), Number(d))) return null;
  if (!(Number(h) <= 23 && Number(mi) <= 59 && Number(s) <= 59)) return null;
  if (zone === "Z" && raw.charCodeAt(10) === 84) return { value: raw, text: raw };
  const local = `${y}-${mo}-${d}T${h}:${mi}:${s}${frac ?? ""}`;
  if (!zone) return { value: local, text: local };
  if (zone === "Z") return { value: `${local}Z`, text: `${local}Z` };
  const [zoneHours, zoneMinutes] = [Number(zone.slice(1, 3)), Number(zone.slice(-2))];
  if (zoneHours > 23 || zoneMinutes > 59) return null;
  const east = zone.charCodeAt(0) === 43;
  let minutes = Number(h) * 60 + Number(mi) + (east ? -1 : 1) * (zoneHours * 60 + zoneMinutes);
  let [year, month, day] = [Number(y), Number(mo), Number(d)];
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
  const text =
    year >= 1 && year <= 9999
      ? `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(Math.floor(minutes / 60), 2)}:${pad(minutes % 60, 2)}:${s}${frac ?? ""}Z`
      : `${local}${zone.slice(0, 3)}:${zone.slice(-2)}`;
  return { value: text, text };
}

const digits = (count: number) =>
  fc.array(fc.constantFrom(..."0123456789"), { minLength: count, maxLength: count });
const two = (max: number) => fc.integer({ min: 0, max }).map((n) => pad(n, 2));

/** Cells of the datetime's shape with edge values in every field, some of them bent. */
const datetimeCell = fc
  .record({
    year: fc.oneof(
      fc.constantFrom("0000", "0001", "1900", "2000", "2024", "9999"),
      digits(4).map((d) => d.join("")),
    ),
    month: two(13),
    day: two(32),
    sep: fc.constantFrom("T", " ", "t", "_"),
    hours: two(25),
    minutes: two(60),
    seconds: two(60),
    frac: fc.oneof(
      fc.constant(""),
      fc.constant("."),
      digits(1).map((d) => `.${d.join("")}`),
      fc
        .array(fc.constantFrom(..."0123456789"), { minLength: 2, maxLength: 12 })
        .map((d) => `.${d.join("")}`),
    ),
    zone: fc.oneof(
      { weight: 1, arbitrary: fc.constantFrom("", "Z") },
      {
        weight: 1,
        arbitrary: fc.constantFrom("z", "+", "-", "+2", "+02", "+02:", "+02:0", "+02:00:", "Z "),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.constantFrom("+", "-"), two(25), fc.constantFrom(":", ""), two(60))
          .map(([s, h, c, m]) => `${s}${h}${c}${m}`),
      },
    ),
    // One cell in four is bent: a character replaced or dropped anywhere.
    bend: fc.oneof(
      { weight: 3, arbitrary: fc.constant(null) },
      {
        weight: 1,
        arbitrary: fc.tuple(fc.nat(40), fc.constantFrom("x", "٣", "-", ":", " ", "", "0")),
      },
    ),
  })
  .map(({ year, month, day, sep, hours, minutes, seconds, frac, zone, bend }) => {
    const text = `${year}-${month}-${day}${sep}${hours}:${minutes}:${seconds}${frac}${zone}`;
    if (!bend) return text;
    const [at, by] = bend;
    const i = at % (text.length + 1);
    return text.slice(0, i) + by + text.slice(i + 1);
  });

describe("a datetime read by position", () => {
  const parse = fieldType({ name: "t", type: "datetime" }).parse;

  it("gives what the regular expression gave, on cells of its shape and near it", () => {
    let valid = 0;
    fc.assert(
      fc.property(datetimeCell, (cell) => {
        const expected = specification(cell);
        expect(parse(cell), cell).toEqual(expected);
        if (expected) valid++;
      }),
      { numRuns: 20_000 },
    );
    // The cells are not mostly refused: both sides of the verdict are compared.
    expect(valid).toBeGreaterThan(1_500);
  });

  it("agrees on cells at the edges of the calendar, the day and the offsets", () => {
    const cells = [
      "2024-02-29T00:00:00",
      "2023-02-29T00:00:00",
      "2000-02-29 12:00:00",
      "1900-02-29T00:00:00",
      "0001-01-01T00:30:00+01:00",
      "0001-01-01T00:00:00Z",
      "9999-12-31T23:30:00-01:00",
      "9999-12-31T23:59:59.999-00:01",
      "2026-12-31T23:59:59.5-0001",
      "2026-01-01T00:00:00.123456789+23:59",
      "2026-01-01T00:00:00+24:00",
      "2026-01-01T00:00:00+00:60",
      "2026-01-01T00:00:00.Z",
      "2026-01-01T00:00:00Z",
      "2026-01-01 00:00:00Z",
      "2026-1-01T00:00:00",
      "2026-01-01T00:00:00+02:000",
      "2026-01-01T00:00:00+0200",
      "20260101T000000Z",
      "",
    ];
    for (const cell of cells) expect(parse(cell), cell).toEqual(specification(cell));
  });
});

describe("a decimal's canonical text", () => {
  const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
  /** As the regular expressions wrote it (0.4.1). */
  const specification = (text: string) =>
    (text.startsWith("+") ? text.slice(1) : text)
      .replace(/^(-?)\./, "$10.")
      .replace(/^(-?)0+(?=\d)/, "$1");
  const decimal = fc
    .tuple(
      fc.constantFrom("", "+", "-"),
      fc.array(fc.constantFrom("0", "0", "0", "1", "5", "9"), { maxLength: 6 }),
      fc.option(fc.array(fc.constantFrom("0", "3", "9"), { maxLength: 4 })),
      fc.option(fc.tuple(fc.constantFrom("e", "E"), fc.constantFrom("", "+", "-"), digits(2))),
    )
    .map(([sign, whole, fraction, exponent]) => {
      const point = fraction === null ? "" : `.${fraction.join("")}`;
      const e = exponent === null ? "" : `${exponent[0]}${exponent[1]}${exponent[2].join("")}`;
      return `${sign}${whole.join("")}${point}${e}`;
    })
    .filter((text) => DECIMAL.test(text));

  it("is what the regular expressions wrote, for every decimal", () => {
    fc.assert(
      fc.property(decimal, (text) => {
        expect(canonicalDecimal(text), text).toBe(specification(text));
      }),
      { numRuns: 20_000 },
    );
    for (const text of [
      ".5",
      "+.5",
      "-.5",
      "000",
      "-000",
      "007.50",
      "-00.5",
      "0.0",
      "+0",
      "5.",
      "00e5",
    ]) {
      expect(canonicalDecimal(text), text).toBe(specification(text));
    }
  });
});

describe("dates and datetimes of format any", () => {
  const date = fieldType({ name: "d", type: "date", format: "any" });
  const datetime = fieldType({ name: "t", type: "datetime", format: "any" });
  const read = (cells: readonly string[]) =>
    cells.map((cell) => [cell, date.parse(cell)?.text ?? null, datetime.parse(cell)?.text ?? null]);

  /** Runs `work` with the process's time zone set to `zone` (Node reads TZ as it changes). */
  function inZone<T>(zone: string, work: () => T): T {
    const before = process.env.TZ;
    process.env.TZ = zone;
    try {
      return work();
    } finally {
      if (before === undefined) delete process.env.TZ;
      else process.env.TZ = before;
    }
  }

  it("read the date and time the cell writes, whatever the worker's time zone", () => {
    const cells = [
      "Tue, 1 Jan 2030 00:00:00",
      "Tue, 1 Jan 2030 00:00:00 GMT",
      "Tue, 1 Jan 2030 00:00:00 +0200",
      "March 7, 2020 10:00",
      "2020/03/07 10:00",
      "2020-03-07T10:00",
      "2020-03-07T01:00+02:00",
      "2020-03-07 10:00 EST",
      "Sat Mar 07 2020 10:00:00 GMT+0100 (CET)",
      "7 March 2020",
      "2020-03-07 10:00 PM",
      "2021-03-14 02:30",
      "2020-06-15 10:00 (UTC)",
      "Jun 15 2020 10:00 PM (GMT+0530)",
      // A comment runs to the ")" that balances it, or to the end of the cell.
      "2020-06-15 10:00 (UTC",
      "2020-06-15 10:00 ((a) UTC)",
      "2020-06-15 10:00 (a (b) c) GMT+0100",
      // A zone name before the first number is no zone to Date.parse.
      "UTC 2020-06-15 10:00",
      "z 2020-06-15",
      // The line separator is part of a word to Date.parse: "Jun\u2028UTC" names no zone.
      "15 Jun\u2028UTC 2020 10:00",
    ];
    const zones = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"];
    // The zones do move Date.parse: without the care taken, the readings would differ.
    const local = zones.map((zone) => inZone(zone, () => Date.parse("2020/03/07 10:00")));
    expect(new Set(local).size).toBe(zones.length);
    const readings = zones.map((zone) => inZone(zone, () => read(cells)));
    for (const reading of readings.slice(1)) expect(reading).toEqual(readings[0]);
    expect(readings[0]).toEqual([
      ["Tue, 1 Jan 2030 00:00:00", "2030-01-01", "2030-01-01T00:00:00Z"],
      ["Tue, 1 Jan 2030 00:00:00 GMT", "2030-01-01", "2030-01-01T00:00:00Z"],
      // A date is the one written; a datetime with a zone is its instant, in UTC.
      ["Tue, 1 Jan 2030 00:00:00 +0200", "2030-01-01", "2029-12-31T22:00:00Z"],
      ["March 7, 2020 10:00", "2020-03-07", "2020-03-07T10:00:00Z"],
      ["2020/03/07 10:00", "2020-03-07", "2020-03-07T10:00:00Z"],
      ["2020-03-07T10:00", "2020-03-07", "2020-03-07T10:00:00Z"],
      ["2020-03-07T01:00+02:00", "2020-03-07", "2020-03-06T23:00:00Z"],
      ["2020-03-07 10:00 EST", "2020-03-07", "2020-03-07T15:00:00Z"],
      ["Sat Mar 07 2020 10:00:00 GMT+0100 (CET)", "2020-03-07", "2020-03-07T09:00:00Z"],
      ["7 March 2020", "2020-03-07", "2020-03-07T00:00:00Z"],
      ["2020-03-07 10:00 PM", "2020-03-07", "2020-03-07T22:00:00Z"],
      // A wall clock New York skips (its clocks went from 2:00 to 3:00 that night).
      ["2021-03-14 02:30", "2021-03-14", "2021-03-14T02:30:00Z"],
      // Text in parentheses is a comment to Date.parse: no zone.
      ["2020-06-15 10:00 (UTC)", "2020-06-15", "2020-06-15T10:00:00Z"],
      ["Jun 15 2020 10:00 PM (GMT+0530)", "2020-06-15", "2020-06-15T22:00:00Z"],
      ["2020-06-15 10:00 (UTC", "2020-06-15", "2020-06-15T10:00:00Z"],
      ["2020-06-15 10:00 ((a) UTC)", "2020-06-15", "2020-06-15T10:00:00Z"],
      ["2020-06-15 10:00 (a (b) c) GMT+0100", "2020-06-15", "2020-06-15T09:00:00Z"],
      ["UTC 2020-06-15 10:00", "2020-06-15", "2020-06-15T10:00:00Z"],
      ["z 2020-06-15", "2020-06-15", "2020-06-15T00:00:00Z"],
      ["15 Jun\u2028UTC 2020 10:00", "2020-06-15", "2020-06-15T10:00:00Z"],
    ]);
  });

  it("read any cell alike in every time zone (cells made from the pieces of dates, zones and comments)", () => {
    const pieces = [
      ..."2020 06 15 1 31 12 1999 0930 9999 0001 10:00 10:00:30 24:00 T10".split(" "),
      ..."2020-06-15 2020-06-15T10:00 +0200 -05:00 -0700 GMT+0100 GMT-3 UTC+1 utc+05:30".split(" "),
      ..."UTC GMT Z z ut EST pdt edt CST utc_ _utc utcx Jun June Junk March Tue Sat T PM am x".split(
        " ",
      ),
      ..."( ) (( )) (a(b)c) (CET) - / , + . : @ [ `".split(" "),
      " ",
      " ",
      "\t",
      "\u00a0",
      "\ufeff",
      "\u2028",
      "\u2029",
      "\u0000",
      "\u00e9",
      "EST\u00e9",
      "\u{1F600}",
    ];
    let seed = 7;
    const next = (below: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      // The high bits: an LCG's low bits repeat with short periods.
      return Math.floor((seed / 0x80000000) * below);
    };
    const cells = Array.from({ length: 20_000 }, () =>
      Array.from({ length: 1 + next(8) }, () => pieces[next(pieces.length)]).join(""),
    );
    const zones = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"];
    const readings = zones.map((zone) => inZone(zone, () => read(cells)));
    for (const reading of readings.slice(1)) {
      const differs = reading.filter(
        (cell, i) => JSON.stringify(cell) !== JSON.stringify(readings[0]?.[i]),
      );
      expect(differs).toEqual([]);
    }
    // Enough of them are dates for the comparison to say something.
    expect(
      readings[0]?.filter(([, day, instant]) => day !== null && instant !== null).length,
    ).toBeGreaterThan(100);
  });

  it("refuse a cell without a four-digit year, a month and a day of its own, or outside years 1 to 9999", () => {
    const refused = [
      "1",
      "12",
      "March 7",
      "x 2020",
      "2020-02-30",
      "2021-02-29 10:00",
      "2020-02-30 03:01",
      "2020-02-30 (3 1)",
      "Feb 30 2020 (Mar 1)",
      "2020-04-31 5:1",
      // Longer than any date: not read (the zone and time expressions never see it).
      `2020-06-15 10:00${" ".repeat(300)}`,
      "2020-02-30T03:01+01:00",
      "0000-01-01",
      "0000-01-01T00:00:00Z",
      "-000001-01-01",
      "+010000-01-01",
      "20 March 99",
      // Date.parse stops at a NUL, before the zone it would be read in.
      "2020-06-15 10:00\u0000",
      "Jun 15 2020 23:00\u0000 UTC",
      "2020-06-15 (\u0000) 10:00",
    ];
    for (const zone of ["UTC", "America/New_York"]) {
      const readings = inZone(zone, () => read(refused));
      expect(readings).toEqual(refused.map((cell) => [cell, null, null]));
    }
    // An instant before year 1 has no date to write, as in the default format.
    expect(read(["0001-01-01T00:00+01:00"])).toEqual([
      ["0001-01-01T00:00+01:00", "0001-01-01", null],
    ]);
  });
});
