import type { z } from "zod";
import type { RowError } from "../rowErrors.ts";
import { type JudgeFactory, matchHeader, shapeCheck } from "../rowJudge.ts";

// A registered transform: what a declarative schema cannot say, in TypeScript. `input` is a zod
// object over the header's column names (cells arrive as strings); `map` turns a parsed row
// into the output row, whose columns are `columns`.

export type OutputValue = string | number | boolean | null;

export interface Transform<Shape extends z.ZodRawShape = z.ZodRawShape> {
  name: string;
  description: string;
  input: z.ZodObject<Shape>;
  columns: readonly string[];
  map(row: z.infer<z.ZodObject<Shape>>): Record<string, OutputValue>;
}

/**
 * Marks what defineTransform made, so that a module's other exports (helpers, constants) are
 * told apart. A registered symbol: the same whichever copy of s3csv the module imported.
 */
export const TRANSFORM_BRAND = Symbol.for("s3csv.transform");

export function defineTransform<Shape extends z.ZodRawShape>(t: Transform<Shape>): Transform {
  return Object.defineProperty({ ...t }, TRANSFORM_BRAND, { value: true }) as unknown as Transform;
}

/** Every transform a worker can run, by name. */
export type TransformRegistry = ReadonlyMap<string, Transform>;

function cellText(value: OutputValue | undefined): string {
  return value === null || value === undefined ? "" : String(value);
}

/** The output cells `map` gives for a row; throws when it gives no row (or a promise). */
function mapped(transform: Transform, row: Record<string, unknown>): string[] {
  const out: unknown = transform.map(row as never);
  if (typeof out !== "object" || out === null || Array.isArray(out)) {
    throw new Error(`map returned ${Array.isArray(out) ? "an array" : String(out)}, not a row`);
  }
  if (typeof (out as { then?: unknown }).then === "function") {
    throw new Error("map returned a promise: transforms are synchronous");
  }
  const cells = out as Record<string, OutputValue | undefined>;
  return transform.columns.map((column) => cellText(cells[column]));
}

export function compileTransform(transform: Transform): JudgeFactory {
  const names = Object.keys(transform.input.shape);
  return {
    bind(header) {
      if (header) matchHeader(header, names);
      const labels = header ?? names;
      const width = labels.length;
      const checkShape = shapeCheck(labels);
      return {
        outputHeader: transform.columns,
        judge(fields) {
          const shape = checkShape(fields);
          if (shape.length) return { ok: false, errors: shape };
          const record: Record<string, string> = {};
          for (let i = 0; i < width; i++) record[labels[i] as string] = fields[i] as string;
          const parsed = transform.input.safeParse(record);
          if (!parsed.success) {
            const errors: RowError[] = parsed.error.issues.map((issue) => ({
              field: String(issue.path[0] ?? ""),
              code: errorCode(issue),
              message: issue.message,
            }));
            return { ok: false, errors };
          }
          // One row the transform cannot handle is that row's problem, not the job's.
          try {
            return { ok: true, cells: mapped(transform, parsed.data) };
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            return { ok: false, errors: [{ field: "", code: "transform-error", message }] };
          }
        },
      };
    },
  };
}

/**
 * A zod issue as Frictionless names it: a value not of its type (or not of a format, as
 * email is a format of string) is a type-error; a regex is a pattern constraint, and the rest
 * (bounds, lengths, enums, refinements) are constraint-errors.
 */
function errorCode(issue: z.core.$ZodIssue): RowError["code"] {
  if (issue.code === "invalid_type") return "type-error";
  if (issue.code === "invalid_format")
    return issue.format === "regex" ? "constraint-error" : "type-error";
  return "constraint-error";
}
