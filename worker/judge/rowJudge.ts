import type { ByteJudge } from "./byteJudge.ts";
import { MissingCells, type RowError, type RowErrors } from "./rowErrors.ts";

// What both ways of judging rows (a Table Schema, a registered transform) give the pipeline.

/** How an output cell is typed in NDJSON output. */
export type JsonType = "string" | "integer" | "number" | "boolean" | "json";

export type Verdict = { ok: true; cells: string[] } | { ok: false; errors: RowErrors };

export interface RowJudge {
  /** Column names of the output file. */
  readonly outputHeader: readonly string[];
  /** JSON types of the output columns (all strings when absent). */
  readonly outputTypes?: readonly JsonType[];
  /** Verdicts depend on earlier rows (unique, primaryKey): a resume must replay those rows. */
  readonly stateful?: boolean;
  judge(fields: readonly string[]): Verdict;
  /**
   * The same verdicts on a row's bytes, where this judge can give them (byteJudge.ts): built
   * when asked, by a job whose rows take the byte path.
   */
  readonly bytes?: () => ByteJudge;
}

export interface JudgeFactory {
  /**
   * Binds the judge to the file's header (null when the file has none). Throws HeaderError when
   * the header cannot be matched: the job fails before anything is uploaded. Each judge starts
   * with nothing seen (a unique index of its own), so a run that reads the source again binds
   * a new one.
   */
  bind(header: readonly string[] | null): RowJudge;
}

export class HeaderError extends Error {
  override name = "HeaderError";
}

export type FieldsMatch = "exact" | "equal" | "subset" | "superset" | "partial";

const quoted = (labels: readonly string[]) => labels.map((l) => `"${l}"`).join(", ");

/**
 * Matches a header's labels to the names a judge expects, Frictionless-style: the column each
 * name is read from (-1: not in the file, its cells are missing values). Throws HeaderError
 * listing every problem.
 */
export function matchHeader(
  header: readonly string[],
  expected: readonly string[],
  mode: FieldsMatch = "equal",
): number[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  const duplicates = new Set<string>();
  header.forEach((label, i) => {
    if (label.trim() === "") problems.push(`blank-label: column ${i + 1} has no label`);
    if (seen.has(label)) duplicates.add(label);
    seen.add(label);
  });
  for (const label of duplicates)
    problems.push(`duplicate-label: "${label}" appears more than once`);
  const wanted = new Set(expected);
  const missing = expected.filter((name) => !seen.has(name));
  const extra = header.filter((label) => label.trim() !== "" && !wanted.has(label));
  if (mode === "exact") {
    if (header.length !== expected.length)
      problems.push(`the file has ${header.length} columns, the schema ${expected.length}`);
    expected.forEach((name, i) => {
      const label = header[i];
      if (label !== undefined && label !== name)
        problems.push(`incorrect-label: column ${i + 1} is "${label}", the schema says "${name}"`);
    });
  } else {
    if (missing.length && (mode === "equal" || mode === "subset"))
      problems.push(`missing-label: ${quoted(missing)}`);
    if (extra.length && (mode === "equal" || mode === "superset"))
      problems.push(`extra-label: ${quoted(extra)}`);
    if (mode === "partial" && missing.length === expected.length)
      problems.push(`no label matches a schema field (${quoted(expected)})`);
  }
  if (problems.length) {
    throw new HeaderError(
      `the header does not match the schema (${problems.join("; ")}); fix the file's header or the schema${mode === "equal" ? ' (or set its fieldsMatch: "subset", "superset" or "partial")' : ""}`,
    );
  }
  return mode === "exact"
    ? expected.map((_, i) => i)
    : expected.map((name) => header.indexOf(name));
}

const NO_ERRORS: readonly RowError[] = Object.freeze([]);

/**
 * The check of a row's shape that comes before any field is judged, for a header's labels: the
 * errors of a blank row, or of a row whose cell count differs from the header's (none: an empty
 * list). A short row's are MissingCells, whatever the header's width. A job's labels are
 * distinct (matchHeader refuses a header that repeats one, the schema a repeated field name,
 * and a transform's are an object's keys), which the summary's cost per row relies on; the
 * sampler of `s3csv infer` reads only a row's first error.
 */
export function shapeCheck(labels: readonly string[]): (fields: readonly string[]) => RowErrors {
  const width = labels.length;
  let columns: Map<string, number[]> | undefined;
  const columnsOf = (): ReadonlyMap<string, readonly number[]> => {
    if (columns === undefined) {
      const map = new Map<string, number[]>();
      labels.forEach((label, column) => {
        const list = map.get(label);
        if (list) list.push(column);
        else map.set(label, [column]);
      });
      columns = map;
    }
    return columns;
  };
  return (fields) => {
    if (fields.every((f) => f === "")) {
      return [{ field: "", code: "blank-row", message: "the row is blank" }];
    }
    if (fields.length > width) {
      return [
        {
          field: "",
          code: "extra-cell",
          message: `the row has ${fields.length} cells, the header has ${width}`,
        },
      ];
    }
    if (fields.length < width) return new MissingCells(labels, fields.length, columnsOf);
    return NO_ERRORS;
  };
}
