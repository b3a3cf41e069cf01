// UTF-8 read on bytes: one definition of how a character's bytes begin and run on, for the
// framer (which keeps a character cut by a chunk's end whole) and the byte checks that read
// characters past ASCII (patterns, emails).

/** The bytes of the character that `lead` begins (1 for ASCII), or 0: no character begins so. */
export function sequenceLength(lead: number): number {
  return lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 0;
}

/**
 * The character at `at` in bytes[, end): its code point times 8 plus its length in bytes (one
 * number, nothing allocated a character), or -1 for a byte that begins none, a byte that does
 * not continue it, or a character cut by `end`. Overlong forms and encoded surrogates are not
 * looked for (the byte row path checks a row's UTF-8 first).
 */
export function codePointAt(bytes: Uint8Array, at: number, end: number): number {
  const lead = bytes[at] as number;
  const length = sequenceLength(lead);
  if (length === 0 || at + length > end) return -1;
  if (length === 1) return lead * 8 + 1;
  let code = lead & (0x7f >> length);
  for (let k = 1; k < length; k++) {
    const c = bytes[at + k] as number;
    if ((c & 0xc0) !== 0x80) return -1;
    code = (code << 6) | (c & 0x3f);
  }
  return code * 8 + length;
}
