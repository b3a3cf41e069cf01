import type { TableSchemaField } from "../../shared/tableSchema.ts";
import type { FieldIndex } from "../csv/fieldIndex.ts";
import { ByteSet } from "./byteSet.ts";
import { type CellRule, cellRule, checkCell, checkEscapedCell, emailLetters } from "./cellBytes.ts";
import type { PatternAutomaton } from "./patternBytes.ts";
import type { RowError } from "./rowErrors.ts";

// A Table Schema's verdict on a row read in place: its cells judged on their bytes where the
// bytes decide (cellBytes.ts), decoded and put through the field's validator where they do not.
// A row of the right shape whose cells the validators refuse is a reject with their errors: a
// byte check only ever accepts a cell its validator accepts, so the errors are those the string
// path finds, from the same validators, in the same order. A row with a wrong shape (blank, too
// few or too many cells), and every row of a file that lacks a field which may not be empty, is
// handed back, and the string path judges it.

/** Every cell valid and written as it came. */
export const SAME = 0;
/** Every cell valid, some in another canonical form: `changes` holds their text. */
export const CHANGED = 1;
/** Not decided here: the string path judges the row. */
export const UNDECIDED = 2;
/** Not valid: `errors` holds the row's errors. */
export const INVALID = 3;
export type ByteVerdict = typeof SAME | typeof CHANGED | typeof UNDECIDED | typeof INVALID;

export interface ByteJudge {
  /** The verdict on the row `index` was last given (`row` its bytes). */
  judge(row: Buffer, index: FieldIndex): ByteVerdict;
  /**
   * After CHANGED, per field, its canonical text where that differs from the cell, else
   * undefined (reused: read it before the next row).
   */
  readonly changes: (string | undefined)[];
  /** After INVALID, the row's errors in field order (a new array for each invalid row). */
  readonly errors: readonly RowError[];
  /** Per field, the column of the file it is read from (-1: the file lacks it). */
  readonly columnOf: readonly number[];
}

/** What a job's schema says of cells' bytes, built once per job (`byteRules`). */
export interface ByteRules {
  /** Per field, its byte check, if its rules have one. */
  readonly rules: readonly (CellRule | undefined)[];
  /** Per field, its missing values other than "" as bytes (none: undefined). */
  readonly missing: readonly (ByteSet | undefined)[];
  /** Per field, whether an empty cell is valid as it is (the same in every row). */
  readonly emptyValid: readonly boolean[];
  readonly validators: readonly ((raw: string) => string | RowError)[];
  readonly asRead: boolean;
}

export function byteRules(input: {
  fields: readonly TableSchemaField[];
  /** Per field, the validator's verdict on a cell's text: its canonical text, or an error. */
  validators: readonly ((raw: string) => string | RowError)[];
  /** Per field, the missing values (the schema's or the field's own: fields share one set). */
  missing: readonly ReadonlySet<string>[];
  /** Valid values are written as read: no cell is ever CHANGED. */
  asRead: boolean;
  /** Per field, its pattern compiled (fieldPattern), shared with its validator. */
  patterns: readonly (PatternAutomaton | undefined)[];
}): ByteRules {
  const { validators, asRead } = input;
  // One byte set per set of missing values, however many fields share it.
  const sets = new Map<ReadonlySet<string>, ByteSet | undefined>();
  const missing = input.missing.map((set) => {
    if (!sets.has(set)) {
      const values = new ByteSet([...set].filter((v) => v !== ""));
      sets.set(set, values.size > 0 ? values : undefined);
    }
    return sets.get(set);
  });
  // One table of email letters for the job, however many email fields share it.
  const letters = emailLetters();
  return {
    rules: input.fields.map((field, i) => cellRule(field, asRead, input.patterns[i], letters)),
    missing,
    emptyValid: validators.map((validate) => validate("") === ""),
    validators,
    asRead,
  };
}

/**
 * The judge for one file: `columnOf` per field, the column it is read from (-1: the file lacks
 * it), and `width` cells in a row.
 */
export function byteJudge(
  schema: ByteRules,
  columnOf: readonly number[],
  width: number,
): ByteJudge {
  const { rules, missing: missingBytes, emptyValid, validators, asRead } = schema;
  const n = validators.length;
  const changes: (string | undefined)[] = new Array(n).fill(undefined);
  // A field the file lacks reads as an empty cell in every row.
  const lacking = columnOf.some((column, i) => column === -1 && !emptyValid[i]);

  /** Whether field i's cell (in `column`) is valid as its bytes stand, no text made for it. */
  const validOnBytes = (i: number, row: Buffer, index: FieldIndex, column: number): boolean => {
    const start = index.starts[column] as number;
    const end = index.ends[column] as number;
    // An empty cell is valid as it is, or its validator says what it is.
    if (start === end) return emptyValid[i] as boolean;
    const rule = rules[i];
    if (rule === undefined) return false;
    const missing = missingBytes[i];
    const escaped = index.escaped(column);
    // A missing value is compared with the cell's value, which an escaped cell's bytes are not
    // yet: such a cell goes to the validator, unless its value (at least half its bytes: an
    // escape and what it escapes make one) is longer than any missing value.
    const maybeMissing =
      missing !== undefined &&
      (escaped ? end - start <= 2 * missing.maxLength : missing.has(row, start, end));
    if (maybeMissing) return false;
    return escaped ? checkEscapedCell(rule, start, end) : checkCell(rule, row, start, end);
  };

  let errors: RowError[] = [];
  return {
    changes,
    get errors() {
      return errors;
    },
    columnOf,
    judge(row, index) {
      if (lacking || index.count !== width) return UNDECIDED;
      const { starts, ends } = index;
      let blank = true;
      for (let c = 0; c < width; c++) {
        if ((ends[c] as number) > (starts[c] as number)) {
          blank = false;
          break;
        }
      }
      // A blank row is a reject (blank-row).
      if (blank) return UNDECIDED;
      let changed = false;
      let invalid: RowError[] | undefined;
      for (let i = 0; i < n; i++) {
        const column = columnOf[i] as number;
        changes[i] = undefined;
        if (column === -1 || validOnBytes(i, row, index, column)) continue;
        const text = index.value(row, column);
        const result = (validators[i] as (raw: string) => string | RowError)(text);
        if (typeof result !== "string") {
          invalid ??= [];
          invalid.push(result);
        } else if (result !== text && !asRead) {
          changes[i] = result;
          changed = true;
        }
      }
      if (invalid) {
        errors = invalid;
        return INVALID;
      }
      return changed ? CHANGED : SAME;
    },
  };
}
