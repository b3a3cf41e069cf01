import type { JobOptions } from "../../shared/job.ts";
import type { TableSchema, TableSchemaField } from "../../shared/tableSchema.ts";
import { type ByteRules, byteJudge, byteRules } from "./byteJudge.ts";
import { type Constraint, constraintsOf } from "./constraints.ts";
import { fieldType, type TypedCell } from "./fieldTypes.ts";
import { fieldPatterns, type PatternAutomaton } from "./patternBytes.ts";
import type { RowError, RowErrorCode } from "./rowErrors.ts";
import type { JsonType } from "./rowJudge.ts";
import {
  type JudgeFactory,
  matchHeader,
  type RowJudge,
  shapeCheck,
  type Verdict,
} from "./rowJudge.ts";
import { UniqueIndex } from "./uniqueIndex.ts";

// Compiles a Table Schema, once per job, into one validator per field: a closure that takes the
// cell's text and yields its canonical text, or a `type-error` or `constraint-error`. The schema
// itself is checked by zod at enqueue (shared/tableSchema.ts); per cell, plain closures are six
// times faster than a zod schema per cell (measured on the benchmark file), and the cell loop is
// the pipeline's hot path.

/** The cell's canonical text when it is valid, else its error (no allocation on the happy path). */
type FieldValidator = (raw: string) => string | RowError;

function compileField(
  field: TableSchemaField,
  missingValues: ReadonlySet<string>,
  pattern: PatternAutomaton | undefined,
): FieldValidator {
  const type = fieldType(field);
  const required = field.constraints?.required === true;
  const checks = constraintsOf(field, pattern);
  const fail = (code: RowErrorCode, message: string): RowError => ({
    field: field.name,
    code,
    message,
  });
  const plainString = field.type === "string" && (field.format ?? "default") === "default";
  // The usual missingValues, [""], without hashing every cell.
  const onlyEmpty = missingValues.size === 1 && missingValues.has("");
  return (raw) => {
    if (onlyEmpty ? raw.length === 0 : missingValues.has(raw)) {
      return required ? fail("constraint-error", "a value is required") : "";
    }
    let value: TypedCell["value"] = raw;
    let text = raw;
    let size: number | undefined;
    // A plain string is its own value and text: no typed cell to build for it.
    if (!plainString) {
      const cell = type.parse(raw);
      if (!cell) return fail("type-error", `"${raw}" is not of type ${type.label}`);
      ({ value, text, size } = cell);
    }
    for (let i = 0; i < checks.length; i++) {
      const message = (checks[i] as Constraint)(value, text, size);
      if (message !== undefined) return fail("constraint-error", message);
    }
    return text;
  };
}

function jsonType(field: TableSchemaField): JsonType {
  if (field.type === "integer" || field.type === "year") return "integer";
  if (field.type === "number") return "number";
  if (field.type === "boolean") return "boolean";
  if (field.type === "object" || field.type === "array" || field.type === "geojson") return "json";
  return "string";
}

export function compileTableSchema(
  schema: TableSchema,
  options: { maxUniqueValues: number; values: JobOptions["values"] } = {
    maxUniqueValues: 5_000_000,
    values: "canonical",
  },
): JudgeFactory {
  const asRead = options.values === "as-read";
  const schemaMissing = new Set(schema.missingValues ?? [""]);
  const names = schema.fields.map((f) => f.name);
  const missing = schema.fields.map((field) =>
    field.missingValues ? new Set(field.missingValues) : schemaMissing,
  );
  // Each pattern compiled once, for its validator and its byte check alike.
  const patterns = fieldPatterns(schema.fields);
  const validators = schema.fields.map((field, i) =>
    compileField(field, missing[i] as ReadonlySet<string>, patterns[i]),
  );

  // Built at the first bind whose rows take the byte path, then shared by later binds.
  let onBytes: ByteRules | undefined;
  const rulesOnBytes = (): ByteRules => {
    onBytes ??= byteRules({ fields: schema.fields, validators, missing, asRead, patterns });
    return onBytes;
  };

  return {
    bind(header): RowJudge {
      // Output columns follow the schema's order; input columns are found per fieldsMatch.
      const columnOf = header
        ? matchHeader(header, names, schema.fieldsMatch)
        : names.map((_, i) => i);
      const unique = UniqueIndex.for(schema, options.maxUniqueValues);
      const labels = header ?? names;
      const width = labels.length;
      const checkShape = shapeCheck(labels);
      return {
        outputHeader: names,
        outputTypes: schema.fields.map(jsonType),
        stateful: unique !== undefined,
        // Uniqueness needs every row's values as text: those jobs stay on the string path.
        ...(unique ? {} : { bytes: () => byteJudge(rulesOnBytes(), columnOf, width) }),
        judge(fields): Verdict {
          const shape = checkShape(fields);
          const first = shape.at(0);
          if (first) {
            const blank = unique && first.code === "blank-row";
            return { ok: false, errors: blank ? [first, ...unique.blankRowErrors()] : shape };
          }
          const cells: string[] = new Array(validators.length);
          const read: string[] | undefined = asRead ? new Array(validators.length) : undefined;
          let errors: RowError[] | undefined;
          for (let i = 0; i < validators.length; i++) {
            const column = columnOf[i] as number;
            // A field the file lacks (fieldsMatch superset/partial) reads as an empty cell.
            const raw = column === -1 ? "" : (fields[column] as string);
            const result = (validators[i] as FieldValidator)(raw);
            if (read) read[i] = raw;
            if (typeof result === "string") cells[i] = result;
            else {
              errors ??= [];
              errors.push(result);
            }
          }
          // Uniqueness is of values: "05" and "5" are one integer, whichever form is written.
          const duplicates = unique?.check(cells);
          if (duplicates) {
            errors ??= [];
            errors.push(...duplicates);
          }
          return errors ? { ok: false, errors } : { ok: true, cells: read ?? cells };
        },
      };
    },
  };
}
