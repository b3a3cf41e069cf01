import type { ResumeMark, UploadedPart } from "../../shared/job.ts";

// An output's parts in flight and its durable prefix. Parts upload at once (as many as the
// job's PartBudget has slots for) and may finish in any order; only the contiguous run of
// finished parts after the durable ones is durable (a part still in flight is a gap), each with
// the input position its last row ends at.

export interface FinishedPart {
  part: UploadedPart;
  mark: ResumeMark;
}

export class PartWindow {
  readonly #inFlight = new Map<number, Promise<void>>();
  readonly #finished = new Map<number, FinishedPart>();
  #failure: unknown;

  /** The first failure of a part: every later step of the output rethrows it. */
  get failure(): unknown {
    return this.#failure;
  }

  /** Parts uploading, or finished and waiting behind a gap. */
  get busy(): boolean {
    return this.#inFlight.size > 0 || this.#finished.size > 0;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Tracks a part's upload; `upload` resolves once the part is finished (and recorded). Then
   * `settled` is called, a failure already recorded: a part waiting for the slot it frees sees
   * the failure.
   */
  track(partNumber: number, upload: Promise<void>, settled: () => void): void {
    const tracked = upload.then(
      () => {
        this.#inFlight.delete(partNumber);
        settled();
      },
      (error: unknown) => {
        this.#inFlight.delete(partNumber);
        this.#failure ??= error;
        settled();
      },
    );
    this.#inFlight.set(partNumber, tracked);
  }

  /** Records a finished part; returns the parts now durable after `durable` of them. */
  finished(partNumber: number, part: FinishedPart, durable: number): FinishedPart[] {
    this.#finished.set(partNumber, part);
    const advanced: FinishedPart[] = [];
    for (let next = durable + 1; this.#finished.has(next); next++) {
      advanced.push(this.#finished.get(next) as FinishedPart);
      this.#finished.delete(next);
    }
    return advanced;
  }

  /** Waits until no part is in flight; throws the first failure. */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight.values());
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Waits for every part upload started so far to end, however it ends. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#inFlight.values());
  }
}
