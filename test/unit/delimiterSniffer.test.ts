import { describe, expect, it } from "vitest";
import { sniffDelimiter } from "../../worker/source/delimiterSniffer.ts";

describe("sniffDelimiter", () => {
  it("finds the delimiter that splits the lines consistently, ignoring quoted text", () => {
    expect(sniffDelimiter('a;b;c\n1;"x, y, z";3\n4;5;6\n')).toBe(";");
    expect(sniffDelimiter("a\tb\n1\t2\n")).toBe("\t");
    expect(sniffDelimiter("a|b|c\r\n1|2|3\r\n")).toBe("|");
    expect(sniffDelimiter('name,note\n"Smith; John","a|b"\n')).toBe(",");
    expect(sniffDelimiter("single column\nvalue\n")).toBe(",");
  });
});
