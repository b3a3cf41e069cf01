// Guesses a file's delimiter from its first lines: the candidate that appears, outside quotes,
// the same non-zero number of times on the most lines.

const CANDIDATES = [",", ";", "\t", "|"] as const;

export function sniffDelimiter(sample: string, quote = '"'): string {
  const lines: string[] = [];
  let current = "";
  let quoted = false;
  for (const c of sample) {
    if (c === quote) quoted = !quoted;
    if (!quoted && (c === "\n" || c === "\r")) {
      if (current) lines.push(current);
      current = "";
      if (lines.length >= 50) break;
      continue;
    }
    if (!quoted) current += c;
  }
  // The last line of a sample may be cut short: use it only if it is the only one.
  if (current && lines.length === 0) lines.push(current);
  let best: { delimiter: string; score: number } = { delimiter: ",", score: 0 };
  for (const delimiter of CANDIDATES) {
    const counts = new Map<number, number>();
    for (const line of lines) {
      const n = line.split(delimiter).length - 1;
      if (n > 0) counts.set(n, (counts.get(n) ?? 0) + 1);
    }
    const [, lineCount] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? [0, 0];
    if (lineCount > best.score) best = { delimiter, score: lineCount };
  }
  return best.delimiter;
}
