// The benchmark schema's rules the strict way, for the peers: every cell is text, an empty cell
// is a missing value (valid unless required), and each field's type and constraints are checked
// as s3csv's Table Schema judge checks them (its regular expressions, its ranges). Written once
// as data, turned into SQL for DuckDB and into expressions for Polars.

const INTEGER = "^[+-]?[0-9]+$";
const DECIMAL = "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$";
const EMAIL = "^[^\\s@]+@[^\\s@]+[.][^\\s@]+$";
const DATETIME =
  "^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-5][0-9]:[0-5][0-9]([.][0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?$";

/** One check per field: its name, required, and what a non-missing value must satisfy. */
export const RULES = [
  { name: "id", required: true, integer: { min: 1 } },
  { name: "email", required: true, pattern: EMAIL },
  { name: "name", length: { min: 1, max: 60 } },
  { name: "age", integer: { min: 0, max: 120 } },
  { name: "status", oneOf: ["new", "active", "suspended", "closed"] },
  { name: "amount", number: { min: 0, max: 1_000_000 } },
  { name: "created_at", datetime: true },
  { name: "verified", oneOf: ["true", "True", "TRUE", "1", "false", "False", "FALSE", "0"] },
  { name: "note", length: { max: 200 } },
  { name: "country", pattern: "^[A-Z]{2}$" },
];

export const PATTERNS = { INTEGER, DECIMAL, DATETIME };
