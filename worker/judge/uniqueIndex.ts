import type { TableSchema } from "../../shared/tableSchema.ts";
import { PermanentJobError } from "../errors.ts";
import type { RowError } from "./rowErrors.ts";

// The values seen so far for `unique` fields and the primary key, for one job. Memory grows
// with the number of distinct values (about their length plus ~50 bytes each), never with the
// file's size otherwise; past `limit` values the job fails rather than exhaust the worker.
// A resumed job rebuilds the index by re-reading the rows before its resume point.

export class UniqueIndex {
  readonly #unique: Array<{ column: number; name: string; seen: Set<string> }>;
  readonly #primary: { columns: number[]; names: string[]; seen: Set<string> } | undefined;
  readonly #limit: number;
  #size = 0;

  static for(schema: TableSchema, limit: number): UniqueIndex | undefined {
    const names = schema.fields.map((f) => f.name);
    const unique = schema.fields.flatMap((f, column) =>
      f.constraints?.unique ? [{ column, name: f.name, seen: new Set<string>() }] : [],
    );
    const keyNames =
      typeof schema.primaryKey === "string" ? [schema.primaryKey] : (schema.primaryKey ?? []);
    for (const name of keyNames) {
      if (!names.includes(name))
        throw new PermanentJobError(`schema.primaryKey names "${name}", which is not a field`);
    }
    const primary = keyNames.length
      ? { columns: keyNames.map((n) => names.indexOf(n)), names: keyNames, seen: new Set<string>() }
      : undefined;
    return unique.length || primary ? new UniqueIndex(unique, primary, limit) : undefined;
  }

  private constructor(
    unique: Array<{ column: number; name: string; seen: Set<string> }>,
    primary: { columns: number[]; names: string[]; seen: Set<string> } | undefined,
    limit: number,
  ) {
    this.#unique = unique;
    this.#primary = primary;
    this.#limit = limit;
  }

  /**
   * Checks a row's canonical cells (undefined where the cell was invalid) and remembers them.
   * Missing values ("") are never duplicates of each other.
   */
  check(cells: ReadonlyArray<string | undefined>): RowError[] | undefined {
    const errors: RowError[] = [];
    for (const u of this.#unique) {
      const value = cells[u.column];
      if (value === undefined || value === "") continue;
      if (u.seen.has(value)) {
        errors.push({
          field: u.name,
          code: "unique-error",
          message: `"${value}" is not unique in "${u.name}"`,
        });
      } else this.#add(u.seen, value);
    }
    const p = this.#primary;
    if (p) {
      const parts = p.columns.map((c) => cells[c]);
      // As Frictionless: a key with no value is an error; one with some is compared, nulls and
      // all (an invalid cell counts as null).
      if (parts.every((v) => v === undefined || v === "")) errors.push(this.#nullKey(p.names));
      else {
        const key = JSON.stringify(parts.map((v) => (v === undefined || v === "" ? null : v)));
        if (p.seen.has(key)) {
          errors.push({
            field: p.names.join(","),
            code: "primary-key",
            message: `the primary key (${p.names.join(", ")}) ${parts.map((v) => (v ? `"${v}"` : "null")).join(", ")} is not unique`,
          });
        } else this.#add(p.seen, key);
      }
    }
    return errors.length ? errors : undefined;
  }

  /**
   * A blank row's errors beyond blank-row: a null primary key (as Frictionless reports it), or
   * none when the schema has no primary key.
   */
  blankRowErrors(): RowError[] {
    return this.#primary ? [this.#nullKey(this.#primary.names)] : [];
  }

  #nullKey(names: readonly string[]): RowError {
    return {
      field: names.join(","),
      code: "primary-key",
      message: `the primary key (${names.join(", ")}) is null: none of its cells has a valid value`,
    };
  }

  #add(set: Set<string>, value: string): void {
    if (++this.#size > this.#limit) {
      throw new PermanentJobError(
        `more than ${this.#limit} distinct unique/primaryKey values; raise options.maxUniqueValues (memory: about 50 bytes plus the value per entry)`,
      );
    }
    set.add(value);
  }
}
