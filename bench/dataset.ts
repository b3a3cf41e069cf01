// The benchmark's data: a 10-column CSV (ids, emails, names, ranged integers, an enum, decimals,
// ISO datetimes, booleans, free text with quotes and commas, country codes) and a Table Schema
// that constrains every field. Deterministic, so runs compare.

export const benchSchema = {
  fields: [
    { name: "id", type: "integer", constraints: { required: true, minimum: 1 } },
    { name: "email", type: "string", format: "email", constraints: { required: true } },
    { name: "name", type: "string", constraints: { minLength: 1, maxLength: 60 } },
    { name: "age", type: "integer", constraints: { minimum: 0, maximum: 120 } },
    {
      name: "status",
      type: "string",
      constraints: { enum: ["new", "active", "suspended", "closed"] },
    },
    { name: "amount", type: "number", constraints: { minimum: 0, maximum: 1000000 } },
    { name: "created_at", type: "datetime" },
    { name: "verified", type: "boolean" },
    { name: "note", type: "string", constraints: { maxLength: 200 } },
    { name: "country", type: "string", constraints: { pattern: "[A-Z]{2}" } },
  ],
};

const FIRST = [
  "Ada",
  "Grace",
  "Linus",
  "Margaret",
  "Ken",
  "Barbara",
  "Dennis",
  "Frances",
  "José",
  "Zoë",
];
const LAST = [
  "Lovelace",
  "Hopper",
  "Torvalds",
  "Hamilton",
  "Thompson",
  "Liskov",
  "Ritchie",
  "Allen",
  "Núñez",
];
const STATUS = ["new", "active", "suspended", "closed"];
const NOTES = [
  "plain note",
  'said "call me back", twice',
  "prefers email, not phone",
  "",
  "VIP; renewal due",
  'quote "inside" only',
];
const COUNTRIES = ["GB", "US", "FR", "DE", "ES", "JP", "BR", "IN"];

function cell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A CSV of about `bytes` bytes; every `invalidEvery`-th row breaks one constraint. */
export function benchCsv(bytes: number, invalidEvery = 1000): Buffer {
  return csvOfRows(bytes, (i) => benchRow(i, invalidEvery));
}

function benchRow(i: number, invalidEvery: number): string[] {
  const first = FIRST[i % FIRST.length] as string;
  const last = LAST[(i * 7) % LAST.length] as string;
  const day = String((i % 28) + 1).padStart(2, "0");
  const row = [
    String(i),
    `${first.toLowerCase()}.${i}@example.com`,
    `${first} ${last}`,
    String(i % 97),
    STATUS[i % STATUS.length] as string,
    `${(i * 37) % 100000}.${String(i % 100).padStart(2, "0")}`,
    `2026-${String((i % 12) + 1).padStart(2, "0")}-${day}T${String(i % 24).padStart(2, "0")}:15:00Z`,
    i % 3 ? "true" : "false",
    NOTES[i % NOTES.length] as string,
    COUNTRIES[i % COUNTRIES.length] as string,
  ];
  if (i % invalidEvery === 0) row[3] = "150";
  return row;
}

/** The schema's header and rows `rowAt(1)`, `rowAt(2)`, ... until about `bytes` are written. */
function csvOfRows(bytes: number, rowAt: (i: number) => string[]): Buffer {
  const header = benchSchema.fields.map((f) => f.name).join(",");
  // Built in batches: a 1 GB file is more than one JavaScript string can hold.
  const buffers: Buffer[] = [];
  let chunks: string[] = [`${header}\n`];
  let size = chunks[0]?.length ?? 0;
  for (let i = 1; size < bytes; i++) {
    const line = `${rowAt(i).map(cell).join(",")}\n`;
    chunks.push(line);
    size += Buffer.byteLength(line);
    if (chunks.length === 10_000) {
      buffers.push(Buffer.from(chunks.join("")));
      chunks = [];
    }
  }
  buffers.push(Buffer.from(chunks.join("")));
  return Buffer.concat(buffers);
}

// The second dataset: what real exports look like. Non-canonical numbers and datetimes that are
// valid (`+5`, `05`, `.5`, `1e3`, offsets, a space for the T, fractions), long free text with
// commas, quotes, newlines and multi-byte characters, and 5 % invalid rows of every kind the
// schema can reject: type errors, broken constraints, a missing required value. (No broken row
// shapes or invalid UTF-8: the peers read CSV strictly and would stop there.)

const LONG = [
  "Kunde wünscht Rückruf, bitte vor 10 Uhr; Lieferadresse geändert",
  'wrote: "please cancel the renewal", then called again, "keep it"',
  "line one of a note\nline two, after a newline\nline three",
  "東京の支店から問い合わせ、返信済み ☕ follow-up next week, maybe",
  "Señora Núñez prefers café au lait; invoice sent, paid in full",
];
const VALID_AGE = ["+5", "05", "42", "0", "120"];
const VALID_AMOUNT = [".5", "+12.50", "1e3", "1.5E2", "999999.99", "0"];
const VALID_TIME = [
  "2026-01-02T03:04:05Z",
  "2026-01-02T03:04:05+02:00",
  "2026-01-02 23:59:59",
  "2026-03-04T05:06:07.123Z",
  "2026-12-31T00:00:00-05:30",
];
const VALID_BOOLEAN = ["true", "False", "TRUE", "1", "0"];

/** One row's cells for `i`; `breaks` (0-15) names the way an invalid row breaks the schema. */
function messyRow(i: number, breaks: number | undefined): string[] {
  const first = FIRST[i % FIRST.length] as string;
  const note = `${LONG[i % LONG.length]} #${i}${" ·".repeat(i % 40)}`;
  const row = [
    i % 50 === 7 ? `+${i}` : String(i),
    `${first.toLowerCase()}.${i}@example.com`,
    `${first} ${LAST[(i * 3) % LAST.length]}`,
    VALID_AGE[i % VALID_AGE.length] as string,
    STATUS[i % STATUS.length] as string,
    VALID_AMOUNT[i % VALID_AMOUNT.length] as string,
    VALID_TIME[i % VALID_TIME.length] as string,
    VALID_BOOLEAN[i % VALID_BOOLEAN.length] as string,
    note.slice(0, 200),
    COUNTRIES[i % COUNTRIES.length] as string,
  ];
  const broken: Array<[number, string]> = [
    [0, `x${i}`],
    [0, ""],
    [0, "0"],
    [1, "not-an-email"],
    [2, "n".repeat(61)],
    [3, "1e3"],
    [3, "150"],
    [4, "lost"],
    [5, "abc"],
    [5, "-1"],
    [5, "2e6"],
    [6, "2026-02-30T10:00:00Z"],
    [6, "yesterday"],
    [7, "yes"],
    [8, "x".repeat(201)],
    [9, "gb"],
  ];
  if (breaks !== undefined) {
    const [column, value] = broken[breaks % broken.length] as [number, string];
    row[column] = value;
  }
  return row;
}

/** The second dataset, about `bytes` long; one row in 20 is invalid. */
export function messyCsv(bytes: number): Buffer {
  return csvOfRows(bytes, (i) => messyRow(i, i % 20 === 0 ? i / 20 : undefined));
}
