import { PermanentJobError } from "../errors.ts";

// UTF-16 sources are transcoded to UTF-8 before framing: the framer finds rows on ASCII bytes,
// and in UTF-16 a 0x0A or 0x22 byte may be half of any character. Offsets in the checkpoint
// then count the UTF-8 text, so a UTF-16 source is read from its start on a resume, like gzip.

export type Utf16Order = "le" | "be";

/** The byte order a UTF-16 byte order mark at the head of `bytes` names, if there is one. */
export function utf16Order(bytes: Uint8Array): Utf16Order | undefined {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return "le";
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return "be";
  return undefined;
}

/** UTF-16 bytes (BOM first) as UTF-8; unpaired surrogates become U+FFFD. */
export async function* utf16ToUtf8(
  bytes: AsyncIterable<Uint8Array>,
  order: Utf16Order,
): AsyncGenerator<Uint8Array> {
  // The decoder drops the BOM and keeps a code unit split across chunks for the next one.
  const decoder = new TextDecoder(order === "le" ? "utf-16le" : "utf-16be");
  for await (const chunk of bytes) {
    const text = decoder.decode(chunk, { stream: true });
    if (text.length > 0) yield Buffer.from(text, "utf8");
  }
  const rest = decoder.decode();
  if (rest.length > 0) yield Buffer.from(rest, "utf8");
}

/**
 * Passes a source read from its first byte through, transcoding it when it starts with a UTF-16
 * byte order mark (`found` is told which). With `required` (encoding "utf-16"), a source
 * without one fails the job.
 */
export async function* detectUtf16(
  bytes: AsyncIterable<Uint8Array>,
  found: (order: Utf16Order) => void,
  required: boolean,
  describe: string,
): AsyncGenerator<Uint8Array> {
  const iterator = bytes[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let headBytes = 0;
  let ended = false;
  while (headBytes < 2) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    head.push(next.value);
    headBytes += next.value.length;
  }
  const first = Buffer.concat(head);
  const order = utf16Order(first);
  if (!order && required) {
    throw new PermanentJobError(
      `${describe} has no UTF-16 byte order mark; options.encoding "utf-16" needs one (FF FE or FE FF) to know the byte order`,
    );
  }
  async function* all(): AsyncGenerator<Uint8Array> {
    if (first.length > 0) yield first;
    if (ended) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  if (!order) {
    yield* all();
    return;
  }
  found(order);
  yield* utf16ToUtf8(all(), order);
}
