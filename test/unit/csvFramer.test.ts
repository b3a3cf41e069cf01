import { describe, expect, it } from "vitest";
import { CsvFramer, type FramedRow } from "../../worker/csv/csvFramer.ts";

const decoder = new TextDecoder();

interface Seen {
  text: string;
  start: number;
  end: number;
  line: number;
  nextLine: number;
  unterminated: boolean;
}

function frame(
  input: Uint8Array,
  cuts: number[],
  options: Partial<{ startOffset: number; startLine: number; escape: string }> = {},
): Seen[] {
  const framer = new CsvFramer({
    delimiter: ",",
    quote: '"',
    escape: options.escape,
    maxRowBytes: 1 << 20,
    startOffset: options.startOffset ?? 0,
    startLine: options.startLine ?? 1,
  });
  const rows: FramedRow[] = [];
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    rows.push(...framer.push(input.slice(at, cut)));
    at = cut;
  }
  rows.push(...framer.end());
  return rows.map((r) => ({
    text: decoder.decode(r.bytes),
    start: r.start,
    end: r.end,
    line: r.line,
    nextLine: r.nextLine,
    unterminated: r.unterminated,
  }));
}

const bytes = (s: string) => new TextEncoder().encode(s);

describe("CsvFramer", () => {
  it("honours an escape character inside quotes, wherever the chunks are cut", () => {
    const input = bytes('1,"a \\" b\\\\",x\n2,"c\\\n",y\r\n3,"\\""\n');
    const whole = frame(input, [], { escape: "\\" });
    expect(whole.map((r) => [r.text, r.line, r.nextLine])).toEqual([
      ['1,"a \\" b\\\\",x', 1, 2],
      ['2,"c\\\n",y', 2, 4],
      ['3,"\\""', 4, 5],
    ]);
    for (let cut = 1; cut < input.length; cut++) {
      expect(frame(input, [cut], { escape: "\\" }), `cut at ${cut}`).toEqual(whole);
    }
  });

  it("yields rows with exact byte offsets and physical line numbers", () => {
    const pieces = [
      "\uFEFF",
      "id,name\r\n",
      '1,"a\r\nb"\r\n',
      "2,é☕\n",
      '3,"say ""hi"""\r',
      "4,x",
    ];
    const at = (i: number) => Buffer.byteLength(pieces.slice(0, i).join(""));
    expect(at(1)).toBe(3);
    expect(frame(bytes(pieces.join("")), [])).toEqual([
      { text: "id,name", start: at(1), end: at(2), line: 1, nextLine: 2, unterminated: false },
      { text: '1,"a\r\nb"', start: at(2), end: at(3), line: 2, nextLine: 4, unterminated: false },
      { text: "2,é☕", start: at(3), end: at(4), line: 4, nextLine: 5, unterminated: false },
      {
        text: '3,"say ""hi"""',
        start: at(4),
        end: at(5),
        line: 5,
        nextLine: 6,
        unterminated: false,
      },
      { text: "4,x", start: at(5), end: at(6), line: 6, nextLine: 6, unterminated: false },
    ]);
  });

  const cases: Record<string, string> = {
    "CRLF with quoted newlines and a BOM": '\uFEFFa,b\r\n"x\r\ny",2\r\n"",""\r\n',
    "LF, multi-byte text and a quoted delimiter": 'h1,h2\nαβγ,"d,e"\n€uro,日本語\n',
    "lone CR endings and a quote inside a quoted field": 'a,b\r"q""uote",1\r\rlast,"\n"',
    "a quote that is not at a field start": 'a,b"c\nd,e\n',
    "an unterminated quote": 'a,b\n"never closed,\nmore\n',
    "a trailing CR at the very end": "x,y\r",
    "blank lines": "a\n\n\nb\n",
  };

  for (const [name, text] of Object.entries(cases)) {
    it(`gives the same rows for every split position: ${name}`, () => {
      const input = bytes(text);
      const whole = frame(input, []);
      for (let a = 0; a <= input.length; a++) {
        expect(frame(input, [a]), `cut at ${a}`).toEqual(whole);
        for (let b = a; b <= input.length; b++) {
          expect(frame(input, [a, b]), `cuts at ${a}, ${b}`).toEqual(whole);
        }
      }
    });
  }

  it("never splits a multi-byte character, wherever the chunks end", () => {
    const input = bytes("k,v\n1,日本語テキスト\n2,😀😀\n");
    for (let a = 0; a <= input.length; a++) {
      for (const row of frame(input, [a])) expect(row.text).not.toContain("\uFFFD");
    }
  });

  it("resumes from a row boundary with the same offsets and lines as a whole read", () => {
    const input = bytes('h\n"multi\nline"\nnext\nlast\n');
    const whole = frame(input, []);
    const from = whole[2] as Seen; // "next"
    const resumed = frame(input.slice(from.start), [], {
      startOffset: from.start,
      startLine: from.line,
    });
    expect(resumed).toEqual(whole.slice(2));
  });

  it("marks the row that an unterminated quote runs to the end of the file", () => {
    const rows = frame(bytes('a\n"open\nb\n'), []);
    expect(rows.at(-1)).toMatchObject({ text: '"open\nb\n', line: 2, unterminated: true });
  });

  it("keeps only a bounded head of a row longer than maxRowBytes", () => {
    const framer = new CsvFramer({
      delimiter: ",",
      quote: '"',
      maxRowBytes: 2048,
      startOffset: 0,
      startLine: 1,
    });
    const huge = bytes(`a\n"${"x".repeat(100_000)}"\nb\n`);
    const rows: FramedRow[] = [];
    for (let i = 0; i < huge.length; i += 1000) rows.push(...framer.push(huge.slice(i, i + 1000)));
    rows.push(...framer.end());
    expect(rows.map((r) => [r.oversize, r.line])).toEqual([
      [false, 1],
      [true, 2],
      [false, 3],
    ]);
    expect((rows[1] as FramedRow).bytes.length).toBeLessThanOrEqual(2048);
    expect((rows[2] as FramedRow).start).toBe(huge.length - 2);
  });
});
