import { writeSync } from "node:fs";
import type { ResumeMark } from "../shared/job.ts";
import type { RowSink } from "../worker/pipeline/rowProcessor.ts";
import { PartBudget } from "../worker/upload/partBudget.ts";
import { PartBuffer } from "../worker/upload/partBuffer.ts";

// An output kept in memory the way an uploader keeps it: text encoded into part buffers, a part
// cut once a part's worth is written, its bytes counted and the buffer reused instead of
// uploaded, or written to a file (the peers' work writes files). What the CPU-only benchmark
// writes to.

export class MemorySink implements RowSink {
  readonly #part: PartBuffer;
  readonly #partSize: number;
  /** A file descriptor each part is written to as it is cut, if any. */
  readonly #file: number | undefined;
  #written = false;
  bytes = 0;
  parts = 0;

  constructor(partSize: number, options: { file?: number } = {}) {
    this.#partSize = partSize;
    this.#part = new PartBuffer(partSize, new PartBudget(2));
    this.#file = options.file;
  }

  get empty(): boolean {
    return !this.#written;
  }

  write(text: string): void {
    this.#written = true;
    this.#part.append(text);
  }

  writeBytes(bytes: Uint8Array, suffix?: Uint8Array): void {
    this.#written = true;
    this.#part.appendBytes(bytes, suffix);
  }

  endRow(_mark: () => ResumeMark): undefined {
    if (this.#part.holds(this.#partSize)) this.#cut();
    return undefined;
  }

  /** The last part, however small. */
  finish(): void {
    if (!this.#part.isEmpty) this.#cut();
  }

  #cut(): void {
    const body = this.#part.take();
    this.bytes += body.length;
    this.parts++;
    if (this.#file !== undefined) writeSync(this.#file, body);
    this.#part.release(body);
  }
}
