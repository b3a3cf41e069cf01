import type { TableSchemaField } from "../../shared/tableSchema.ts";
import { fieldType } from "./fieldTypes.ts";

// A Table Schema checked against the specification beyond its JSON shape, at enqueue and by the
// worker alike (shared/tableSchema.ts runs it): constraint values the field's own type reads
// (the same parser that judges its cells), constraints only where the specification applies
// them, no constraint s3csv would silently ignore, and no property one typo away from a known
// one (a misspelt "constraint" would drop its rules). Other custom properties are allowed, as
// the specification allows them.

export interface SchemaProblem {
  path: Array<string | number>;
  message: string;
}

/** The constraints s3csv enforces, and those of the specification it does not. */
const CONSTRAINTS = [
  "required",
  "unique",
  "minLength",
  "maxLength",
  "minimum",
  "maximum",
  "pattern",
  "enum",
] as const;
const UNSUPPORTED = ["exclusiveMinimum", "exclusiveMaximum", "jsonSchema"];

const FIELD_PROPERTIES = [
  "name",
  "title",
  "description",
  "type",
  "format",
  "constraints",
  "missingValues",
  "rdfType",
  "example",
  "trueValues",
  "falseValues",
  "bareNumber",
  "decimalChar",
  "groupChar",
  "categories",
  "categoriesOrdered",
];
export const SCHEMA_PROPERTIES = [
  "fields",
  "missingValues",
  "primaryKey",
  "foreignKeys",
  "fieldsMatch",
  "$schema",
  "name",
  "title",
  "description",
];

/** Types whose values have an order (minimum, maximum), per the specification. */
const ORDERED = new Set(["integer", "number", "date", "time", "datetime", "year", "yearmonth"]);
/** Types whose values have a length (minLength, maxLength). */
const SIZED = new Set(["string", "array", "object"]);

/**
 * The formats each type has: any other name would be read as the default, its rule silently
 * not applied. Dates, times and datetimes also take a strptime pattern (with a directive).
 */
const FORMATS: Record<string, readonly string[]> = {
  string: ["default", "email", "uri", "uuid", "binary"],
  geopoint: ["default", "array", "object"],
  geojson: ["default", "topojson"],
  date: ["default", "any"],
  time: ["default", "any"],
  datetime: ["default", "any"],
};
/** The strptime directives s3csv reads (Frictionless's date patterns). */
const DIRECTIVES = /%[YymdHMSfz]/;
const UNKNOWN_DIRECTIVE = /%(?![YymdHMSfz%])/;

/** Every problem of one field, with paths relative to the field. */
export function fieldProblems(field: TableSchemaField): SchemaProblem[] {
  const problems: SchemaProblem[] = [];
  for (const key of Object.keys(field)) {
    const near = typo(key, FIELD_PROPERTIES);
    if (near)
      problems.push({ path: [key], message: `is not a field property: did you mean "${near}"?` });
  }
  return [...problems, ...formatProblems(field), ...constraintProblems(field)];
}

/** A format the field's type has, or for dates and times a pattern s3csv reads. */
function formatProblems(field: TableSchemaField): SchemaProblem[] {
  const format = field.format;
  if (format === undefined || format === "default") return [];
  const known = FORMATS[field.type] ?? ["default"];
  const temporal = field.type === "date" || field.type === "time" || field.type === "datetime";
  const pattern = temporal && !known.includes(format);
  if (pattern && (!DIRECTIVES.test(format) || UNKNOWN_DIRECTIVE.test(format))) {
    return [
      {
        path: ["format"],
        message: `${JSON.stringify(format)} is not a date pattern s3csv reads: use %Y %y %m %d %H %M %S %f %z (or "default", "any")`,
      },
    ];
  }
  if (!pattern && !known.includes(format)) {
    return [
      {
        path: ["format"],
        message: `${JSON.stringify(format)} is not a format of ${field.type} (${known.join(", ")})`,
      },
    ];
  }
  return [];
}

/** Constraints that exist, apply to the field's type, and hold values of that type. */
function constraintProblems(field: TableSchemaField): SchemaProblem[] {
  const problems: SchemaProblem[] = [];
  if (field.constraints?.pattern !== undefined && field.type !== "string") {
    problems.push({
      path: ["constraints", "pattern"],
      message: `applies to string fields, not ${field.type}`,
    });
  }
  const constraints = (field.constraints ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(constraints)) {
    if ((CONSTRAINTS as readonly string[]).includes(key)) continue;
    const near = typo(key, CONSTRAINTS);
    const why = UNSUPPORTED.includes(key)
      ? "is a Table Schema constraint s3csv does not enforce: it would be ignored; leave it out or use minimum, maximum or pattern"
      : near
        ? `is not a constraint: did you mean "${near}"?`
        : `is not a constraint (Table Schema has ${CONSTRAINTS.join(", ")})`;
    problems.push({ path: ["constraints", key], message: why });
  }
  const { minimum, maximum, minLength, maxLength } = field.constraints ?? {};
  for (const [name, value] of [
    ["minimum", minimum],
    ["maximum", maximum],
  ] as const) {
    if (value === undefined) continue;
    if (!ORDERED.has(field.type)) {
      problems.push({
        path: ["constraints", name],
        message: `applies to ordered types (${[...ORDERED].join(", ")}), not ${field.type}`,
      });
    } else if (!reads(field, value)) {
      problems.push({
        path: ["constraints", name],
        message: `${JSON.stringify(value)} is not a value of type ${fieldType(field).label}`,
      });
    }
  }
  for (const [name, value] of [
    ["minLength", minLength],
    ["maxLength", maxLength],
  ] as const) {
    if (value !== undefined && !SIZED.has(field.type)) {
      problems.push({
        path: ["constraints", name],
        message: `applies to string, array and object fields, not ${field.type}`,
      });
    }
  }
  for (const [i, value] of (field.constraints?.enum ?? []).entries()) {
    if (!reads(field, value)) {
      problems.push({
        path: ["constraints", "enum", i],
        message: `${JSON.stringify(value)} is not a value of type ${fieldType(field).label}`,
      });
    }
  }
  return problems;
}

/**
 * An integer field's bounds and enum values given as JSON numbers beyond ±(2^53 - 1): JSON.parse
 * has already put each on the nearest double, so the job would judge cells against another
 * number than the one written (9007199254740993 reads as 9007199254740992). Their text keeps
 * every digit. A producer's check (JobInput), not the worker's: a job an older producer
 * enqueued runs as it did.
 */
export function roundedIntegers(field: TableSchemaField): SchemaProblem[] {
  if (field.type !== "integer" && field.type !== "year") return [];
  const { minimum, maximum, enum: values = [] } = field.constraints ?? {};
  const named: Array<[Array<string | number>, unknown]> = [
    [["constraints", "minimum"], minimum],
    [["constraints", "maximum"], maximum],
    ...values.map((v, i): [Array<string | number>, unknown] => [["constraints", "enum", i], v]),
  ];
  return named
    .filter(([, v]) => typeof v === "number" && Number.isInteger(v) && !Number.isSafeInteger(v))
    .map(([path, v]) => ({
      path,
      message: `${JSON.stringify(v)} is beyond ±(2^53 - 1), where a JSON number loses digits: write the integer as a string ("${BigInt(v as number)}" or the digits you meant) to keep every one`,
    }));
}

/** Whether the field's own type reads a constraint value (given as JSON). */
function reads(field: TableSchemaField, value: string | number | boolean): boolean {
  if (typeof value === "number" && !Number.isFinite(value)) return false;
  if (typeof value === "number" && (field.type === "integer" || field.type === "year")) {
    return Number.isInteger(value);
  }
  if (typeof value === "boolean" && field.type === "boolean") return true;
  return fieldType(field).parse(String(value)) !== null;
}

/** A known name one or two edits from `key` (but not `key` itself), or undefined. */
export function typo(key: string, known: readonly string[]): string | undefined {
  if (known.includes(key)) return undefined;
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const name of known) {
    const d = distance(key.toLowerCase(), name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  // One edit for short names (a custom "nam" is as likely as a typo), two for longer ones.
  return best !== undefined && bestDistance <= (key.length > 5 ? 2 : 1) ? best : undefined;
}

/** Levenshtein distance, for names of a few dozen characters. */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(
        (previous[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (previous[j - 1] as number) + cost,
      );
    }
    previous = row;
  }
  return previous[b.length] as number;
}
