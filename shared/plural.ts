/** "1 part", "2 parts": a count and its noun, for what the CLI prints. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
