// CSV files of the shapes real exports take and a byte-range split finds hardest: ragged rows
// (a trailing comma on every row, or any number of fields), no quotes at all, every field
// quoted, CR-only line ends, quoted notes full of lines that read as rows, a row longer than a
// shard, blank and comment lines, multi-byte text, stray and unclosed quotes. Each is made to a
// size from a seeded generator, so a split of it puts seams wherever they fall: the test and the
// benchmark compare a split run with a whole one, not with an expected text.

export const messySchema = {
  fields: [
    { name: "id", type: "integer", constraints: { required: true } },
    { name: "name", type: "string" },
    { name: "note", type: "string" },
    { name: "amount", type: "number", constraints: { minimum: 0 } },
  ],
};

export interface MessyShape {
  /** The job options the shape needs besides its schema (maxRowBytes, commentChar). */
  options: Record<string, unknown>;
  /** A row spans a whole 5 MiB shard, which a split job must skip. */
  coversAShard?: boolean;
  /** The file, at least `bytes` long. */
  make(bytes: number): Buffer;
}

function random(seed: number) {
  let s = seed;
  return (n: number) => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s >> 8) % n;
  };
}

/** Rows from `row(i, r)` after `header`, to at least `bytes` (the last row ends the file). */
function rows(
  bytes: number,
  header: string,
  row: (i: number, r: (n: number) => number) => string,
): Buffer {
  const r = random(bytes);
  const parts = [header];
  let size = header.length;
  for (let i = 1; size < bytes; i++) {
    const text = row(i, r);
    parts.push(text);
    size += Buffer.byteLength(text);
  }
  return Buffer.from(parts.join(""));
}

const WORDS = ["alpha", "beta", "gamma", "delta", "café", "日本語", "😀", "naïve", "x"];
const word = (r: (n: number) => number) => WORDS[r(WORDS.length)] as string;
const amount = (i: number, r: (n: number) => number) =>
  i % 53 === 0 ? "abc" : `${r(10_000)}.${r(100)}`;

export const messyShapes: Record<string, MessyShape> = {
  "a trailing comma on every row, no quotes": {
    options: {},
    make: (bytes) =>
      rows(
        bytes,
        "id,name,note,amount\n",
        (i, r) => `${i},${word(r)},${word(r)} ${i},${amount(i, r)},\n`,
      ),
  },
  "ragged every way (1 to 6 fields)": {
    options: {},
    make: (bytes) =>
      rows(bytes, "id,name,note,amount\n", (i, r) => {
        const fields = [String(i), word(r), word(r), amount(i, r), word(r), word(r)];
        return `${fields.slice(0, 1 + (i % 6)).join(",")}\n`;
      }),
  },
  "every field quoted, doubled quotes inside": {
    options: {},
    make: (bytes) =>
      rows(
        bytes,
        '"id","name","note","amount"\r\n',
        (i, r) =>
          `"${i}","${word(r)}","say ""${word(r)}"", then ""${word(r)}""","${amount(i, r)}"\r\n`,
      ),
  },
  "CR-only line ends": {
    options: {},
    make: (bytes) =>
      rows(bytes, "id,name,note,amount\r", (i, r) =>
        i % 7 === 0
          ? `${i},${word(r)},"two\rlines",${amount(i, r)}\r`
          : `${i},${word(r)},${word(r)},${amount(i, r)}\r`,
      ),
  },
  "quoted notes of many lines that read as rows": {
    options: {},
    make: (bytes) =>
      rows(bytes, "\uFEFFid,name,note,amount\r\n", (i, r) => {
        if (i % 40 !== 0) return `${i},${word(r)},${word(r)},${amount(i, r)}\r\n`;
        const fake = Array.from({ length: 30 + r(60) }, (_, k) => `${900_000 + k},fake,row,${k}.5`);
        return `${i},looks,"${fake.join("\n")}",1.5\r\n`;
      }),
  },
  "a row longer than a shard": {
    // Half a MiB of rows, then a note of 9.75 MiB: the row spans the whole second 5 MiB shard
    // (and its part stays under the emulator's 11 MiB request limit).
    options: { maxRowBytes: 16 * 1024 * 1024 },
    coversAShard: true,
    make: (bytes) => {
      const mib = 1024 * 1024;
      const head = "id,name,note,amount\n";
      const before = rows(mib / 2, head, (i, r) => `${i},${word(r)},x,${amount(i, r)}\n`);
      const long = `0,long,"${"line of a long note\n".repeat((9.75 * mib) / 20)}",1\n`;
      const rest = bytes - before.length - long.length;
      const after = rows(
        rest,
        "",
        (i, r) => `${i + 1_000_000},${word(r)},"a ""b""",${amount(i, r)}\n`,
      );
      return Buffer.concat([before, Buffer.from(long), after]);
    },
  },
  "blank lines, comment lines and no final line break": {
    options: { commentChar: "#" },
    make: (bytes) => {
      const file = rows(bytes, "id,name,note,amount\n", (i, r) => {
        if (i % 11 === 0) return "\n";
        if (i % 13 === 0) return `# comment ${i}, "with a quote\n`;
        return `${i},${word(r)},${word(r)},${amount(i, r)}\n`;
      });
      return file.subarray(0, file.length - 1);
    },
  },
  "stray quotes inside fields and an unclosed quote at the end": {
    options: {},
    make: (bytes) =>
      Buffer.concat([
        rows(bytes, "id,name,note,amount\n", (i, r) =>
          i % 17 === 0
            ? `${i},${word(r)}"s,5" disk,${amount(i, r)}\n`
            : `${i},${word(r)},"${word(r)}, ${word(r)}",${amount(i, r)}\n`,
        ),
        Buffer.from('99999999,end,"never closed\nand more\n'),
      ]),
  },
};
