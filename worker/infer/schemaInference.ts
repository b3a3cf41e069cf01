import { TableSchema, type TableSchemaField } from "../../shared/tableSchema.ts";
import { compileTableSchema } from "../judge/validatorCompiler.ts";

// Infers a Table Schema from sampled rows. Every type is decided by the job's own validator (a
// one-field schema compiled by compileTableSchema), and the finished schema is checked against
// every sampled row with the job's judge: a sampled value that fails under the inferred schema
// is impossible by construction, not by a second implementation of the types agreeing with the
// first.

/** The rules, in one place: the README documents these numbers. */
export const INFERENCE_RULES = {
  /** A string field gets an `enum` when it has at least this many values... */
  enumMinValues: 50,
  /** ...at most this many distinct ones... */
  enumMaxDistinct: 10,
  /** ...and every distinct value is seen at least this often. */
  enumMinCount: 2,
  /** Fields decided on fewer values than this are named in the notes. */
  fewValues: 20,
  /** A string field that a narrower type fits for this share of its values is named too. */
  mostlyShare: 0.8,
  /**
   * Tokens read as missing values (besides the empty cell), for a field only when they are
   * what keeps it from a narrower type than string.
   */
  missingTokens: ["NA", "N/A", "n/a", "NULL", "null", "None", "-"],
} as const;

type Candidate = { type: TableSchemaField["type"]; format?: string };

/**
 * Types in the order they are tried; the first that takes every value wins, string when none
 * does. Within a type, the default (ISO 8601) format comes first, then common patterns.
 */
const CANDIDATES: readonly Candidate[] = [
  { type: "integer" },
  { type: "number" },
  { type: "boolean" },
  { type: "date" },
  { type: "date", format: "%d/%m/%Y" },
  { type: "date", format: "%m/%d/%Y" },
  { type: "date", format: "%Y/%m/%d" },
  { type: "date", format: "%d.%m.%Y" },
  { type: "datetime" },
  { type: "datetime", format: "%Y-%m-%d %H:%M" },
  { type: "datetime", format: "%d/%m/%Y %H:%M:%S" },
  { type: "datetime", format: "%m/%d/%Y %H:%M:%S" },
  { type: "datetime", format: "%d/%m/%Y %H:%M" },
  { type: "datetime", format: "%m/%d/%Y %H:%M" },
  { type: "time" },
  { type: "time", format: "%H:%M" },
];

/** Digits with a leading zero: a job would write them as a number without it. */
const LEADING_ZERO = /^[+-]?0\d/;

export type NoteCode =
  | "sample"
  | "delimiter"
  | "few-values"
  | "no-values"
  | "missing-values"
  | "other-formats-fit"
  | "leading-zeros"
  | "mostly-type"
  | "rejected-anyway";

export interface InferenceNote {
  code: NoteCode;
  /** The field the note is about; absent for the sample as a whole. */
  field?: string;
  /** The non-missing values the field was decided on (few-values). */
  values?: number;
  message: string;
}

export interface InferenceInput {
  header: readonly string[];
  /** Rows of as many cells as the header has labels. */
  rows: readonly (readonly string[])[];
  /** Sampled rows a job rejects whatever the schema (blank, wrong cell count, malformed). */
  unusable: Partial<Record<string, number>>;
}

export interface Inference {
  schema: TableSchema;
  notes: InferenceNote[];
}

type Accepts = (value: string) => boolean;

/** Whether a value passes a one-field schema of the candidate's type, as a job judges it. */
function acceptor(candidate: Candidate): Accepts {
  const field = { name: "value", ...candidate };
  const judge = compileTableSchema(TableSchema.parse({ fields: [field] })).bind(null);
  const numeric = candidate.type === "integer" || candidate.type === "number";
  return (value) => judge.judge([value]).ok && !(numeric && LEADING_ZERO.test(value));
}

/** The first candidate that takes every value, with the index it has in the order. */
function narrowest(
  values: Iterable<string>,
  acceptors: readonly Accepts[],
): { index: number; others: number[] } {
  const list = [...values];
  const fits = (i: number) => list.every((v) => (acceptors[i] as Accepts)(v));
  // No values: every type fits vacuously, and string is the one that claims nothing.
  const index = list.length === 0 ? -1 : acceptors.findIndex((_, i) => fits(i));
  if (index === -1) return { index: CANDIDATES.length, others: [] };
  // Patterned formats of the same type that fit too (day-first and month-first dates, say).
  const others: number[] = [];
  for (let i = index + 1; i < CANDIDATES.length; i++) {
    if (CANDIDATES[i]?.type !== CANDIDATES[index]?.type) break;
    if (fits(i)) others.push(i);
  }
  return { index, others };
}

function candidateAt(index: number): Candidate {
  return CANDIDATES[index] ?? { type: "string" };
}

function describe(candidate: Candidate): string {
  return candidate.format ? `${candidate.type} "${candidate.format}"` : candidate.type;
}

function inferField(
  name: string,
  cells: readonly string[],
  acceptors: readonly Accepts[],
  notes: InferenceNote[],
): TableSchemaField {
  const counts = new Map<string, number>();
  for (const cell of cells) if (cell !== "") counts.set(cell, (counts.get(cell) ?? 0) + 1);
  let verdict = narrowest(counts.keys(), acceptors);
  // Missing-value tokens count as missing only where that makes a narrower type fit.
  const tokens: string[] = INFERENCE_RULES.missingTokens.filter((t) => counts.has(t));
  let missingTokens: string[] = [];
  if (tokens.length > 0) {
    const rest = [...counts.keys()].filter((v) => !tokens.includes(v));
    const without = narrowest(rest, acceptors);
    if (without.index < verdict.index) {
      verdict = without;
      missingTokens = tokens;
      for (const token of tokens) counts.delete(token);
      notes.push({
        code: "missing-values",
        field: name,
        message: `${tokens.map((t) => JSON.stringify(t)).join(", ")} read as missing values (the other values are ${candidateAt(without.index).type})`,
      });
    }
  }
  const candidate = candidateAt(verdict.index);
  let present = 0;
  for (const n of counts.values()) present += n;

  const constraints: { required?: true; enum?: string[] } = {};
  if (present === cells.length) constraints.required = true;
  const { enumMinValues, enumMaxDistinct, enumMinCount } = INFERENCE_RULES;
  if (
    candidate.type === "string" &&
    present >= enumMinValues &&
    counts.size <= enumMaxDistinct &&
    [...counts.values()].every((n) => n >= enumMinCount)
  ) {
    constraints.enum = [...counts.keys()].sort();
  }

  if (present === 0) {
    notes.push({
      code: "no-values",
      field: name,
      message: "every sampled value is missing: typed string, not required",
    });
  } else if (present < INFERENCE_RULES.fewValues) {
    notes.push({
      code: "few-values",
      field: name,
      values: present,
      message: `decided on ${present} value${present === 1 ? "" : "s"}: ${describe(candidate)}`,
    });
  }
  if (verdict.others.length > 0) {
    notes.push({
      code: "other-formats-fit",
      field: name,
      message: `${describe(candidate)} chosen; ${verdict.others.map((i) => describe(candidateAt(i))).join(", ")} fits every value too: check which the file uses`,
    });
  }
  if (candidate.type === "string") notes.push(...stringNotes(name, counts, present, acceptors));
  return {
    name,
    type: candidate.type,
    ...(candidate.format ? { format: candidate.format } : {}),
    ...(missingTokens.length ? { missingValues: ["", ...missingTokens] } : {}),
    ...(Object.keys(constraints).length ? { constraints } : {}),
  } as TableSchemaField;
}

/**
 * Why a field with values is a string, where a reader may want to narrow it: digits kept for
 * their leading zeros, or a type most values fit, with the values that keep it from fitting.
 */
function stringNotes(
  name: string,
  counts: ReadonlyMap<string, number>,
  present: number,
  acceptors: readonly Accepts[],
): InferenceNote[] {
  const values = [...counts.keys()];
  if (values.some((v) => LEADING_ZERO.test(v)) && values.every((v) => /^\d+$/.test(v))) {
    return [
      {
        code: "leading-zeros",
        field: name,
        message: "digits with leading zeros: kept as string (as a number they would lose them)",
      },
    ];
  }
  let best = { index: -1, fit: 0 };
  acceptors.forEach((accepts, index) => {
    let fit = 0;
    for (const [value, n] of counts) if (accepts(value)) fit += n;
    if (fit > best.fit) best = { index, fit };
  });
  if (best.index === -1 || best.fit < present * INFERENCE_RULES.mostlyShare) return [];
  const type = describe(candidateAt(best.index));
  const accepts = acceptors[best.index] as Accepts;
  const misfits = values.filter((v) => !accepts(v));
  const shown = misfits.slice(0, 3).map((v) => JSON.stringify(v));
  const unfit = present - best.fit;
  return [
    {
      code: "mostly-type",
      field: name,
      message: `string: ${best.fit} of ${present} values are ${type} but ${unfit} ${unfit === 1 ? "is" : "are"} not (${shown.join(", ")}${misfits.length > shown.length ? ", …" : ""}); typed ${type}, a job would reject ${unfit === 1 ? "its row" : "their rows"}`,
    },
  ];
}

/** A Table Schema that every sampled row passes, and what a reader should check in it. */
export function inferSchema(input: InferenceInput): Inference {
  const acceptors = CANDIDATES.map(acceptor);
  const notes: InferenceNote[] = [];
  const fields = input.header.map((name, column) =>
    inferField(
      name,
      input.rows.map((row) => row[column] as string),
      acceptors,
      notes,
    ),
  );
  // Checked as enqueue checks it, then judged as a job judges the rows; printed as built,
  // its properties in the order people write them.
  const schema: TableSchema = { fields };
  const judge = compileTableSchema(TableSchema.parse(schema)).bind(input.header);
  for (const row of input.rows) {
    const verdict = judge.judge(row);
    if (!verdict.ok) {
      throw new Error(
        `the inferred schema rejects a sampled row (${verdict.errors.at(0)?.message}${verdict.errors.length > 1 ? `, and ${verdict.errors.length - 1} more` : ""}): a bug in inference`,
      );
    }
  }
  const unusable = Object.entries(input.unusable).filter(([, n]) => (n ?? 0) > 0);
  if (unusable.length > 0) {
    const total = unusable.reduce((sum, [, n]) => sum + (n ?? 0), 0);
    notes.push({
      code: "rejected-anyway",
      message: `${total} sampled row${total === 1 ? "" : "s"} would be rejected whatever the schema (${unusable.map(([code, n]) => `${code} ${n}`).join(", ")}); their values were not used`,
    });
  }
  return { schema, notes };
}
