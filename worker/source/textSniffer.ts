import { TextDecoder } from "node:util";

// What a source's first bytes and lines say about it before any row is judged: not text at all
// (binary, compressed, another encoding), or text whose lines use another delimiter than the
// one given. s3csv infer refuses such a head with these words; a job whose header cannot be
// read or matched says them too.

/** More control bytes than this share of the head: binary. */
const MAX_CONTROL_SHARE = 0.01;
/** More invalid UTF-8 sequences than this share of the head's characters: not UTF-8 text. */
const MAX_INVALID_SHARE = 0.01;
/** A delimiter that splits at least this share of the lines evenly is what the lines use. */
const EVEN_SPLIT_SHARE = 0.8;
/** The first bytes of files people upload by mistake, and what they are. */
const FILE_KINDS: Array<[string, string]> = [
  ["\x89PNG", "a PNG image"],
  ["\xFF\xD8\xFF", "a JPEG image"],
  ["GIF8", "a GIF image"],
  ["%PDF", "a PDF document"],
  ["\xD0\xCF\x11\xE0", "an old Excel or Word file (.xls, .doc)"],
];
/** What the single-column check tries; a space only when it splits a line twice or more. */
const OTHER_DELIMITERS = [",", ";", "\t", "|", " "] as const;

/**
 * Why the first bytes of an object are not text (a predicate for the object's name): empty,
 * gzip, ZIP, NUL or many control bytes, not UTF-8; undefined when they are.
 */
export function nonTextReason(
  sample: Buffer,
  encoding: "utf-8" | "utf-16" | "windows-1252",
): string | undefined {
  const bom = sample[0] === 0xef && sample[1] === 0xbb && sample[2] === 0xbf ? 3 : 0;
  if (/^\s*$/.test(sample.subarray(bom).toString("latin1"))) {
    return sample.length === 0 ? "is empty" : "is empty: it holds only blank lines";
  }
  if (sample[0] === 0x1f && sample[1] === 0x8b) {
    return `is gzip-compressed: name it .gz or pass --options '{"compression":"gzip"}'`;
  }
  const magic = sample.subarray(0, 8).toString("latin1");
  const kind = FILE_KINDS.find(([signature]) => magic.startsWith(signature))?.[1];
  if (kind) return `is ${kind}, not CSV text`;
  if (sample.subarray(0, 4).toString("latin1") === "PK\x03\x04") {
    return "is a ZIP archive (an .xlsx workbook, say), not CSV text: export CSV";
  }
  let nul = 0;
  let control = 0;
  for (const byte of sample) {
    if (byte === 0) nul++;
    // Tab, LF, FF and CR are the control characters text files have.
    else if (
      (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0c && byte !== 0x0d) ||
      byte === 0x7f
    )
      control++;
  }
  if (nul > 0 || control > sample.length * MAX_CONTROL_SHARE) {
    return `looks binary, not like CSV text: its first ${sample.length} bytes hold ${nul} NUL and ${control} other control bytes`;
  }
  if (encoding === "windows-1252") return undefined;
  // Streaming: a character the sample's end cuts in two is not an error.
  const text = new TextDecoder("utf-8").decode(sample, { stream: true });
  const invalid = text.split("\uFFFD").length - 1;
  if (invalid > text.length * MAX_INVALID_SHARE) {
    return `is not UTF-8 text: ${invalid} invalid byte sequences in its first ${sample.length} bytes (if it is windows-1252, pass --options '{"encoding":"windows-1252"}')`;
  }
  return undefined;
}

/**
 * Lines read as one column, yet another delimiter (or runs of spaces) splits most of them the
 * same number of times: the dialect is wrong. Says which delimiter to pass, or undefined.
 */
export function otherDelimiterReason(
  lines: readonly string[],
  delimiter: string,
  quote: string,
): string | undefined {
  for (const candidate of OTHER_DELIMITERS) {
    if (candidate === delimiter) continue;
    const least = candidate === " " ? 2 : 1;
    const byCount = new Map<number, number>();
    for (const line of lines) {
      const n = countOutsideQuotes(line, candidate, quote);
      if (n >= least) byCount.set(n, (byCount.get(n) ?? 0) + 1);
    }
    const even = Math.max(0, ...byCount.values());
    if (even >= lines.length * EVEN_SPLIT_SHARE) {
      const name = candidate === "\t" ? "tab" : JSON.stringify(candidate);
      const flag = candidate === "\t" ? "tab" : `'${candidate}'`;
      return `reads as a single column: no ${JSON.stringify(delimiter)} was found, but its lines look ${name}-separated (pass --delimiter ${flag})`;
    }
  }
  return undefined;
}

function countOutsideQuotes(line: string, char: string, quote: string): number {
  let count = 0;
  let quoted = false;
  for (const c of line) {
    if (c === quote) quoted = !quoted;
    else if (c === char && !quoted) count++;
  }
  return count;
}
