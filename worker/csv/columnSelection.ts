import type { JobOptions } from "../../shared/job.ts";
import { PermanentJobError } from "../errors.ts";
import type { JsonType } from "../judge/rowJudge.ts";

// The output's columns: the judge's, optionally selected and reordered (options.select) and
// relabelled (options.rename). A Table Schema's names are checked at enqueue; a transform's
// columns are known only here, so an unknown name fails the job before anything is uploaded.

export interface ColumnSelection {
  header: string[];
  types: JsonType[] | undefined;
  /** Every column, in order: rows are written as judged. */
  all: boolean;
  /** Per output column, the judge's column it shows. */
  indexes: readonly number[];
  pick(cells: readonly string[]): string[];
}

export function selectColumns(
  names: readonly string[],
  types: readonly JsonType[] | undefined,
  options: Pick<JobOptions, "select" | "rename">,
): ColumnSelection {
  const { select, rename } = options;
  const missing = [...(select ?? []), ...Object.keys(rename ?? {})].filter(
    (name) => !names.includes(name),
  );
  if (missing.length) {
    throw new PermanentJobError(
      `options.select/rename name ${missing.map((n) => `"${n}"`).join(", ")}, not among the output columns (${names.map((n) => `"${n}"`).join(", ")})`,
    );
  }
  const indexes = (select ?? names).map((name) => names.indexOf(name));
  const header = indexes.map((i) => {
    const name = names[i] as string;
    return rename?.[name] ?? name;
  });
  if (new Set(header).size !== header.length) {
    throw new PermanentJobError(`options.rename gives two output columns the same label`);
  }
  const all = indexes.length === names.length && indexes.every((at, i) => at === i);
  return {
    header,
    types: types && indexes.map((i) => types[i] as JsonType),
    all,
    indexes,
    pick: (cells) => indexes.map((i) => cells[i] as string),
  };
}
