// A CSV built so that the seams of a split job (multiples of a shard size) fall exactly on the
// places a byte-range split can get wrong: inside a quoted field many lines long whose lines
// look like rows, between the CR and LF of a row's end, inside a multi-byte character, between
// the two quotes of a doubled quote, and exactly at a row's start. It starts with a BOM, ends
// rows with CRLF, and has invalid rows of several kinds throughout.

export const seamSchema = {
  fields: [
    { name: "id", type: "integer", constraints: { required: true } },
    { name: "name", type: "string" },
    { name: "note", type: "string" },
    { name: "amount", type: "number", constraints: { minimum: 0 } },
  ],
};

const HEADER = "id,name,note,amount\r\n";

/** What lands on a seam, and where in it the seam falls. */
interface Construct {
  text: string;
  /** The seam falls this many bytes into `text`. */
  at: number;
}

function construct(id: number, kind: number): Construct {
  switch (kind % 5) {
    case 0: {
      // A quoted note of many lines that read as rows of this file: a wrong guess.
      const fake = Array.from({ length: 40 }, (_, i) => `${900000 + i},fake,row,${i}.5\n`).join("");
      const head = `${id},looks,"`;
      return { text: `${head}${fake}end of note",1.5\r\n`, at: head.length + 5 * 18 + 3 };
    }
    case 1: {
      const row = `${id},crlf,plain,2.5\r\n`;
      return { text: row, at: row.length - 1 };
    }
    case 2: {
      const head = `${id},caf`;
      return { text: `${head}é 😀 ünï,mb,3.25\r\n`, at: Buffer.byteLength(`${head}é 😀`) - 2 };
    }
    case 3: {
      const head = `${id},quote,"he said ""`;
      return { text: `${head}hi"", then left",4\r\n`, at: Buffer.byteLength(head) - 1 };
    }
    default:
      return { text: `${id},start,exact,5\r\n`, at: 0 };
  }
}

function ordinaryRow(id: number, invalid: boolean): string {
  if (!invalid)
    return `${id},name-${id},"a ""quoted"" note ${"y".repeat(id % 30)}",${id % 500}.5\r\n`;
  if (id % 97 === 0) return `${id},bad,amount,abc\r\n`;
  if (id % 89 === 0) return `${id},too,many,1,2\r\n`;
  if (id % 83 === 0) return `,missing,id,1\r\n`;
  if (id % 31 === 0) return `${id},"multi\r\nline ""quoted""",ü€,${id}.25\r\n`;
  return `${id},name-${id},note ${"x".repeat(id % 40)},${id % 1000}.5\r\n`;
}

/** A padding row of exactly `bytes` bytes (at least 16). */
function paddingRow(id: number, bytes: number): string {
  const head = `${id},pad,`;
  const tail = ",1\r\n";
  return `${head}${"p".repeat(bytes - Buffer.byteLength(head) - tail.length)}${tail}`;
}

/**
 * The file, with the seams of `shardSize` landing on each kind of construct in turn; without
 * `invalid`, every row is valid.
 */
export function seamCsv(shardSize: number, shards: number, invalid = true): Buffer {
  const parts: string[] = ["\uFEFF", HEADER];
  let bytes = 3 + HEADER.length;
  let id = 1;
  for (let seam = 1; seam < shards; seam++) {
    const c = construct(id++, seam - 1);
    const target = seam * shardSize - c.at;
    while (bytes + 200 < target) {
      const row = ordinaryRow(id++, invalid);
      parts.push(row);
      bytes += Buffer.byteLength(row);
    }
    const pad = paddingRow(id++, target - bytes);
    parts.push(pad, c.text);
    bytes += Buffer.byteLength(pad) + Buffer.byteLength(c.text);
  }
  for (let i = 0; i < 500; i++) parts.push(ordinaryRow(id++, invalid));
  return Buffer.from(parts.join(""));
}
