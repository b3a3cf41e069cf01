import { describe, expect, it } from "vitest";
import { RowParser } from "../../worker/csv/rowParser.ts";

/** A row given as text, as the framer would give its UTF-8 bytes. */
const parse = (parser: RowParser, text: string, quoted: boolean) =>
  parser.parseRow(Buffer.from(text, "utf8"), text, quoted);

describe("RowParser", () => {
  it("splits RFC 4180 rows with doubled quotes", () => {
    const parser = new RowParser({ delimiter: ",", quote: '"' });
    expect(parse(parser, '1,"a ""b"", c",', true)).toEqual({
      ok: true,
      fields: ["1", 'a "b", c', ""],
    });
  });

  it("splits rows whose quotes are escaped by another character", () => {
    const parser = new RowParser({ delimiter: ",", quote: '"', escape: "\\" });
    expect(parse(parser, '1,"a \\"b\\", c\\\\",x', true)).toEqual({
      ok: true,
      fields: ["1", 'a "b", c\\', "x"],
    });
    // Outside quotes the escape character is an ordinary one.
    expect(parse(parser, 'a\\b,"q"', true)).toEqual({ ok: true, fields: ["a\\b", "q"] });
    // With an escape character, a doubled quote closes the field and is then malformed.
    expect(parse(parser, '"a""b"', true)).toMatchObject({ ok: false });
  });

  it("names irregular quoting", () => {
    const parser = new RowParser({ delimiter: ",", quote: '"' });
    expect(parse(parser, '1,"open', true)).toEqual({
      ok: false,
      message: "malformed quoting: a quoted field is not closed",
    });
  });
});
