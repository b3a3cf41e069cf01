// Test data with its own oracle: the generator knows, row by row, what the output must contain
// and which rows must be rejected (and on which line they start), independently of the product.

export const peopleSchema = {
  fields: [
    { name: "id", type: "integer", constraints: { required: true, minimum: 1 } },
    { name: "email", type: "string", format: "email", constraints: { required: true } },
    { name: "score", type: "number", constraints: { minimum: 0, maximum: 100 } },
    { name: "active", type: "boolean" },
    { name: "joined", type: "date" },
    { name: "note", type: "string" },
  ],
};

const HEADER = ["id", "email", "score", "active", "joined", "note"];
const NOTES = [
  "plain",
  "with, comma",
  'say "hi"',
  "two\nlines",
  "café ☕ 日本語",
  "",
  "emoji 😀 end",
];

export interface PeopleData {
  csv: Buffer;
  /** The exact bytes the output must have (RFC 4180, CRLF). */
  expectedOutput: Buffer;
  /** row_number and line_number of every rejected row, in order. */
  rejected: Array<{ row: number; line: number; code: string }>;
  rows: number;
}

function cell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * `rows` data rows; every `invalidEvery`-th row is invalid in one of several ways. `pad` makes
 * rows longer (to reach part sizes with fewer rows).
 */
export function peopleData(options: {
  rows: number;
  invalidEvery?: number;
  newline?: "\n" | "\r\n";
  pad?: number;
}): PeopleData {
  const { rows, invalidEvery = 5, newline = "\n", pad = 0 } = options;
  const input: Buffer[] = [Buffer.from(HEADER.join(",") + newline)];
  const output: string[] = [`${HEADER.join(",")}\r\n`];
  const rejected: PeopleData["rejected"] = [];
  let line = 2;
  const filler = "x".repeat(pad);
  for (let i = 1; i <= rows; i++) {
    const note = `${NOTES[i % NOTES.length]}${filler}`;
    const cells = [
      String(i),
      `user${i}@example.com`,
      String((i * 7) % 101),
      i % 2 ? "true" : "false",
      `2024-${String((i % 12) + 1).padStart(2, "0")}-${String((i % 28) + 1).padStart(2, "0")}`,
      note,
    ];
    let raw: Buffer;
    if (i % invalidEvery === 0) {
      const kind = (i / invalidEvery) % 6;
      const bad = [...cells];
      const code = [
        "type-error",
        "constraint-error",
        "type-error",
        "missing-cell",
        "extra-cell",
        "encoding-error",
      ][kind] as string;
      if (kind === 0) bad[1] = "not-an-email";
      if (kind === 1) bad[2] = "150";
      if (kind === 2) bad[4] = "2024-02-30";
      if (kind === 3) bad.pop();
      if (kind === 4) bad.push("surplus");
      raw = Buffer.from(bad.map(cell).join(","));
      if (code === "encoding-error") raw = Buffer.concat([raw, Buffer.from([0xff, 0xfe])]);
      rejected.push({ row: i, line, code });
    } else {
      raw = Buffer.from(cells.map(cell).join(","));
      output.push(`${cells.map(cell).join(",")}\r\n`);
    }
    input.push(raw, Buffer.from(newline));
    line += 1 + (raw.toString("latin1").match(/\n/g)?.length ?? 0);
  }
  return {
    csv: Buffer.concat(input),
    expectedOutput: Buffer.from(output.join("")),
    rejected,
    rows,
  };
}

/** Parses the reject report's row_number, line_number and error columns (simple rows only). */
export function rejectedRows(report: Buffer): Array<{ row: number; line: number; code: string }> {
  const text = report.toString("utf8");
  const result: Array<{ row: number; line: number; code: string }> = [];
  // Every record starts with "row,line,field,error," at the start of a physical line.
  for (const m of text.matchAll(/(?:^|\r\n)(\d+),(\d+),[^,\r\n]*,([a-z-]+),/g)) {
    result.push({ row: Number(m[1]), line: Number(m[2]), code: m[3] as string });
  }
  return result;
}
