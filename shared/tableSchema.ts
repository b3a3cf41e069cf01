import { z } from "zod";
// The rules a schema's values must follow are the judge's own (the parsers that read its cells).
import { fieldProblems, SCHEMA_PROPERTIES, typo } from "../worker/judge/schemaCheck.ts";

// Frictionless Table Schema (v1): the declarative way a job says how rows are judged.
// Unknown descriptive properties (title, description, rdfType, ...) are allowed, as the spec
// allows them; everything that changes a verdict is typed, and checked against the spec
// (worker/judge/schemaCheck.ts): constraint values of the field's type, no unknown constraint,
// no property one typo away from a known one.

const FieldConstraints = z.looseObject({
  required: z.boolean().optional(),
  unique: z.boolean().optional(),
  minLength: z.number().int().nonnegative().optional(),
  maxLength: z.number().int().nonnegative().optional(),
  minimum: z.union([z.number(), z.string()]).optional(),
  maximum: z.union([z.number(), z.string()]).optional(),
  pattern: z
    .string()
    .refine((p) => {
      try {
        new RegExp(p, "u");
        return true;
      } catch {
        return false;
      }
    }, "must be a valid regular expression")
    .optional(),
  enum: z
    .array(z.union([z.string(), z.number(), z.boolean()]))
    .min(1)
    .optional(),
});

const base = {
  name: z.string().min(1, "field names must not be empty"),
  title: z.string().optional(),
  description: z.string().optional(),
  format: z.string().optional(),
  constraints: FieldConstraints.optional(),
  missingValues: z.array(z.string()).optional(),
};

export const TableSchemaField = z.discriminatedUnion("type", [
  z.looseObject({ ...base, type: z.literal("string") }),
  z.looseObject({ ...base, type: z.literal("any") }),
  z.looseObject({
    ...base,
    type: z.literal("integer"),
    bareNumber: z.boolean().optional(),
    groupChar: z.string().length(1).optional(),
  }),
  z.looseObject({
    ...base,
    type: z.literal("number"),
    bareNumber: z.boolean().optional(),
    decimalChar: z.string().length(1).optional(),
    groupChar: z.string().length(1).optional(),
  }),
  z.looseObject({
    ...base,
    type: z.literal("boolean"),
    trueValues: z.array(z.string()).optional(),
    falseValues: z.array(z.string()).optional(),
  }),
  z.looseObject({ ...base, type: z.literal("date") }),
  z.looseObject({ ...base, type: z.literal("time") }),
  z.looseObject({ ...base, type: z.literal("datetime") }),
  z.looseObject({ ...base, type: z.literal("year") }),
  z.looseObject({ ...base, type: z.literal("yearmonth") }),
  z.looseObject({ ...base, type: z.literal("duration") }),
  z.looseObject({ ...base, type: z.literal("object") }),
  z.looseObject({ ...base, type: z.literal("array") }),
  z.looseObject({ ...base, type: z.literal("geopoint") }),
  z.looseObject({ ...base, type: z.literal("geojson") }),
]);
export type TableSchemaField = z.infer<typeof TableSchemaField>;

export const TableSchema = z
  .looseObject({
    fields: z.array(TableSchemaField).min(1, "a schema needs at least one field"),
    missingValues: z.array(z.string()).optional(),
    primaryKey: z.union([z.string(), z.array(z.string())]).optional(),
    /**
     * How the file's header meets the fields (Table Schema v2): "exact" same labels in the same
     * order, matched by position; "equal" (s3csv's default) same labels in any order, by name;
     * "subset" the file may have more columns; "superset" it may lack some (their cells are
     * missing values); "partial" at least one label matches.
     */
    fieldsMatch: z.enum(["exact", "equal", "subset", "superset", "partial"]).optional(),
  })
  .superRefine((schema, ctx) => {
    for (const key of Object.keys(schema)) {
      const near = typo(key, SCHEMA_PROPERTIES);
      if (near)
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `is not a schema property: did you mean "${near}"?`,
        });
    }
    const seen = new Set<string>();
    schema.fields.forEach((field, index) => {
      if (seen.has(field.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["fields", index, "name"],
          message: `duplicate field name "${field.name}"`,
        });
      }
      seen.add(field.name);
      for (const problem of fieldProblems(field)) {
        ctx.addIssue({
          code: "custom",
          path: ["fields", index, ...problem.path],
          message: problem.message,
        });
      }
    });
  });
export type TableSchema = z.infer<typeof TableSchema>;
