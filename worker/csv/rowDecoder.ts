import { isUtf8 } from "node:buffer";
import type { JobOptions } from "../../shared/job.ts";

// A row's bytes as text. UTF-8 rows are checked (undefined: invalid bytes, an encoding-error);
// windows-1252 has no invalid bytes. UTF-16 sources arrive transcoded to UTF-8.

export type RowDecoder = (bytes: Buffer) => string | undefined;

export function rowDecoder(encoding: JobOptions["encoding"]): RowDecoder {
  if (encoding === "windows-1252") {
    const latin = new TextDecoder("windows-1252");
    return (bytes) => latin.decode(bytes);
  }
  return (bytes) => {
    const text = bytes.toString("utf8");
    // Invalid bytes decode to U+FFFD: only a row that has one (rare) is checked byte by byte.
    return text.includes("\uFFFD") && !isUtf8(bytes) ? undefined : text;
  };
}

/** A Buffer over the same memory (the framer hands out plain Uint8Array views). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
