import type { RowError, RowErrors } from "../../worker/judge/rowErrors.ts";

/** A row's errors as an array, each made (a short row's missing cells are made when read). */
export function listErrors(errors: RowErrors): RowError[] {
  return Array.from({ length: errors.length }, (_, i) => errors.at(i) as RowError);
}
