import type { RowSink } from "../../worker/pipeline/rowProcessor.ts";

/** An output collected as bytes, text and bytes alike. */
export class CollectSink implements RowSink {
  readonly parts: Buffer[] = [];
  /** Rows written as bytes: the byte path's (the string path writes text). */
  rowsAsBytes = 0;
  get empty() {
    return this.parts.length === 0;
  }
  write(text: string) {
    this.parts.push(Buffer.from(text));
  }
  writeBytes(bytes: Uint8Array, suffix?: Uint8Array) {
    this.rowsAsBytes++;
    this.parts.push(Buffer.from(bytes));
    if (suffix) this.parts.push(Buffer.from(suffix));
  }
  endRow() {
    return undefined;
  }
  text() {
    return Buffer.concat(this.parts).toString("latin1");
  }
}
