// Text from a user's file shown in a one-line message: what a terminal would not show, or would
// show as a line break, is written as an escape instead, so that "\uFEFFid" does not look like
// "id" and a NUL or a newline cannot cut the line.

/**
 * Control characters (C0, DEL, C1), format characters (U+FEFF, zero-width spaces and joiners,
 * bidirectional marks) and the line and paragraph separators.
 */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/** A character as JavaScript writes it escaped: \u0000, \uFEFF, or \u{E0001} past U+FFFF. */
function escaped(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  const hex = code.toString(16).toUpperCase();
  return code > 0xffff ? `\\u{${hex}}` : `\\u${hex.padStart(4, "0")}`;
}

/** `text` with each invisible character escaped (a NUL reads \u0000, a newline \u000A). */
export function visible(text: string): string {
  return text.replace(INVISIBLE, escaped);
}
