import { z } from "zod";
import type { TableSchema, TableSchemaField } from "../shared/tableSchema.ts";
import { fieldType, type TypedCell } from "./fieldTypes.ts";
import type { RowError, RowErrorCode } from "./rowErrors.ts";
import {
  checkHeader,
  type JudgeFactory,
  type RowJudge,
  shapeErrors,
  type Verdict,
} from "./rowJudge.ts";

// Compiles a Table Schema, once per job, into one zod validator per field. A field's validator
// takes the cell's text and yields its canonical text; a type failure is a `type-error`, a
// failed constraint a `constraint-error`.

type FieldValidator = (raw: string) => { ok: true; text: string } | { ok: false; error: RowError };

const MISSING: unique symbol = Symbol("missing");

function issueCode(issue: z.core.$ZodIssue): RowErrorCode {
  return issue.code === "custom" && issue.params?.code === "type-error"
    ? "type-error"
    : "constraint-error";
}

function compare(a: TypedCell["value"], b: TypedCell["value"]): number {
  if (typeof a === "string" || typeof b === "string") {
    const [x, y] = [String(a), String(b)];
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const [x, y] = [a as number | bigint, b as number | bigint];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A constraint bound from the schema, parsed with the field's own type when it is text. */
function bound(
  field: TableSchemaField,
  value: number | string | undefined,
): TypedCell["value"] | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "number") return value;
  const typed = fieldType(field).parse(value);
  return typed ? typed.value : value;
}

function compileField(field: TableSchemaField, missingValues: ReadonlySet<string>): FieldValidator {
  const type = fieldType(field);
  const c = field.constraints ?? {};
  const minimum = bound(field, c.minimum);
  const maximum = bound(field, c.maximum);
  const pattern = c.pattern === undefined ? undefined : new RegExp(`^(?:${c.pattern})$`, "u");
  const enumValues = c.enum?.map((v) => (typeof v === "string" ? bound(field, v) : v));

  const schema = z
    .string()
    .transform((raw, ctx): TypedCell | typeof MISSING => {
      if (missingValues.has(raw)) return MISSING;
      const typed = type.parse(raw);
      if (typed) return typed;
      ctx.issues.push({
        code: "custom",
        input: raw,
        params: { code: "type-error" },
        message: `"${raw}" is not of type ${type.label}`,
      });
      return z.NEVER;
    })
    .check((ctx) => {
      const cell = ctx.value;
      const fail = (message: string) =>
        ctx.issues.push({
          code: "custom",
          input: cell,
          message,
          params: { code: "constraint-error" },
        });
      if (cell === MISSING) {
        if (c.required) fail("a value is required");
        return;
      }
      const length = [...String(cell.value)].length;
      if (c.minLength !== undefined && length < c.minLength) {
        fail(`"${cell.text}" is shorter than minLength ${c.minLength}`);
      }
      if (c.maxLength !== undefined && length > c.maxLength) {
        fail(`"${cell.text}" is longer than maxLength ${c.maxLength}`);
      }
      if (minimum !== undefined && compare(cell.value, minimum) < 0) {
        fail(`${cell.text} is below the minimum ${String(c.minimum)}`);
      }
      if (maximum !== undefined && compare(cell.value, maximum) > 0) {
        fail(`${cell.text} is above the maximum ${String(c.maximum)}`);
      }
      if (pattern && !pattern.test(String(cell.value))) {
        fail(`"${cell.text}" does not match the pattern ${c.pattern}`);
      }
      if (enumValues && !enumValues.some((v) => v !== undefined && compare(cell.value, v) === 0)) {
        fail(`"${cell.text}" is not one of ${JSON.stringify(c.enum)}`);
      }
    });

  return (raw) => {
    const result = schema.safeParse(raw);
    if (result.success) {
      return { ok: true, text: result.data === MISSING ? "" : result.data.text };
    }
    const issue = result.error.issues[0] as z.core.$ZodIssue;
    return {
      ok: false,
      error: { field: field.name, code: issueCode(issue), message: issue.message },
    };
  };
}

export function compileTableSchema(schema: TableSchema): JudgeFactory {
  const schemaMissing = new Set(schema.missingValues ?? [""]);
  const names = schema.fields.map((f) => f.name);
  const validators = schema.fields.map((field) =>
    compileField(field, field.missingValues ? new Set(field.missingValues) : schemaMissing),
  );

  return {
    bind(header): RowJudge {
      if (header) checkHeader(header, names);
      // Output columns follow the schema's order; input columns are found by name.
      const columnOf = header ? names.map((name) => header.indexOf(name)) : names.map((_, i) => i);
      const labels = header ?? names;
      const width = labels.length;
      return {
        outputHeader: names,
        judge(fields): Verdict {
          const shape = shapeErrors(fields, width, labels);
          if (shape.length) return { ok: false, errors: shape };
          const cells: string[] = new Array(validators.length);
          let errors: RowError[] | undefined;
          for (let i = 0; i < validators.length; i++) {
            const result = (validators[i] as FieldValidator)(
              fields[columnOf[i] as number] as string,
            );
            if (result.ok) cells[i] = result.text;
            else {
              errors ??= [];
              errors.push(result.error);
            }
          }
          return errors ? { ok: false, errors } : { ok: true, cells };
        },
      };
    },
  };
}
