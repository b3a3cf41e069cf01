import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { PartBudget } from "./partBudget.ts";
import { PartBuffer } from "./partBuffer.ts";

// An output's text on its way to parts. Plain text is cut into a part once a part's worth is
// written. gzip output is compressed into members of about a part's worth of text each, and a
// part is cut once the members reach the part size, so that compressed parts still meet S3's
// minimum and every part holds whole members (which a resumed job writes again the same).

const gzipAsync = promisify(gzip);

export class PartSink {
  readonly #text: PartBuffer;
  readonly #partSize: number;
  readonly #gzip: boolean;
  #members: Buffer[] = [];
  #memberBytes = 0;

  /** `budget`: the job's part buffers kept for reuse, shared with its other output. */
  constructor(partSize: number, budget: PartBudget, gzip: boolean) {
    this.#partSize = partSize;
    this.#gzip = gzip;
    this.#text = new PartBuffer(partSize, budget);
  }

  write(text: string): void {
    this.#text.append(text);
  }

  writeBytes(bytes: Uint8Array, suffix?: Uint8Array): void {
    this.#text.appendBytes(bytes, suffix);
  }

  /** Nothing written that is not yet in a part. */
  get isEmpty(): boolean {
    return this.#text.isEmpty && this.#members.length === 0;
  }

  /** Text written since the last part (or member). */
  get holdsText(): boolean {
    return !this.#text.isEmpty;
  }

  /** A part's worth of text (in bytes) is written: to cut, or for gzip to compress. */
  get textDue(): boolean {
    return this.#text.holds(this.#partSize);
  }

  /** gzip members wait for a part (while they do, the text after them cannot be carried). */
  get holdsMembers(): boolean {
    return this.#members.length > 0;
  }

  /** The members reach a part's worth: time to cut one. */
  get membersDue(): boolean {
    return this.#memberBytes >= this.#partSize;
  }

  get gzip(): boolean {
    return this.#gzip;
  }

  /** Encoded bytes of the text, and a copy of them from `from` on (for a carry). */
  get textBytes(): number {
    return this.#text.bytes;
  }

  copyText(from: number): Buffer {
    return this.#text.copyFrom(from);
  }

  /** Compresses the text so far into one gzip member (off the event loop). */
  async compress(): Promise<void> {
    const text = this.#text.take();
    const member = await gzipAsync(text);
    this.#text.release(text);
    this.#members.push(member);
    this.#memberBytes += member.length;
  }

  /** The next part's body: the text, or the gzip members; release() it once sent. */
  takeBody(): Buffer {
    if (!this.#gzip) return this.#text.take();
    const body = Buffer.concat(this.#members, this.#memberBytes);
    this.#members = [];
    this.#memberBytes = 0;
    return body;
  }

  /** A body S3 is done with: its buffer is filled again. */
  release(body: Buffer): void {
    this.#text.release(body);
  }
}
