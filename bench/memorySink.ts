import type { ResumeMark } from "../shared/job.ts";
import type { RowSink } from "../worker/pipeline/rowProcessor.ts";
import { PartBuffer } from "../worker/upload/partBuffer.ts";

// An output kept in memory the way an uploader keeps it: text encoded into part buffers, a part
// cut once a part's worth is written, its bytes counted and the buffer reused instead of
// uploaded. What the CPU-only benchmark writes to.

export class MemorySink implements RowSink {
  readonly #part: PartBuffer;
  readonly #partSize: number;
  /** Copies of the parts, when kept (to compare the output with another's). */
  readonly #kept: Buffer[] | undefined;
  #written = false;
  bytes = 0;
  parts = 0;

  constructor(partSize: number, options: { keep?: boolean } = {}) {
    this.#partSize = partSize;
    this.#part = new PartBuffer(partSize, 2);
    this.#kept = options.keep ? [] : undefined;
  }

  /** The whole output, if its parts were kept. */
  get body(): Buffer {
    return Buffer.concat(this.#kept ?? []);
  }

  get empty(): boolean {
    return !this.#written;
  }

  write(text: string): void {
    this.#written = true;
    this.#part.append(text);
  }

  endRow(_mark: () => ResumeMark): undefined {
    if (this.#part.units >= this.#partSize) this.#cut();
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
    this.#kept?.push(Buffer.from(body));
    this.#part.release(body);
  }
}
