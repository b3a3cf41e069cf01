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
  const header = benchSchema.fields.map((f) => f.name).join(",");
  // Built in batches: a 1 GB file is more than one JavaScript string can hold.
  const buffers: Buffer[] = [];
  let chunks: string[] = [`${header}\n`];
  let size = chunks[0]?.length ?? 0;
  for (let i = 1; size < bytes; i++) {
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
    const line = `${row.map(cell).join(",")}\n`;
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
