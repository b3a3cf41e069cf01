import type { Checkpoint, OutputCheckpoint, OutputSide, ResumeMark } from "../../shared/job.ts";
import type { CarrySnapshot } from "../upload/carriedText.ts";

// The checkpoint coordinator: one job attempt's checkpoint writes, for its two outputs. When one
// output's durable state changes (an upload created, a part uploaded, the object completed), it
// writes the checkpoint with both outputs' states; the other output's text since its last part
// goes to Redis first (its carry), so that its resume mark moves up to the live position and
// both outputs resume from one recent point. Writes run one at a time, in order, so that none
// overwrites a newer one.

/** What the coordinator needs of an output's uploader. */
export interface CoordinatedOutput {
  readonly state: OutputCheckpoint;
  carrySnapshot(): CarrySnapshot | "busy";
  adoptCarry(snapshot: CarrySnapshot, mark: ResumeMark): void;
  /** Forgets every carry key of this attempt but `kept` (a saved checkpoint's), returning them. */
  retireCarryKeys(kept: string | undefined): string[];
}

/** What the coordinator needs of the checkpoint store. */
export interface CoordinatedStore {
  readonly current: Checkpoint;
  save(checkpoint: Checkpoint): Promise<void>;
  writeCarry(key: string, offset: number, bytes: Buffer): Promise<void>;
  deleteCarry(key: string): Promise<void>;
}

export class CheckpointCoordinator {
  readonly #store: CoordinatedStore;
  readonly #start: Checkpoint;
  #outputs: Record<OutputSide, CoordinatedOutput> | undefined;
  #live: (() => ResumeMark) | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  /** `start` is the checkpoint the attempt began from. */
  constructor(store: CoordinatedStore, start: Checkpoint) {
    this.#store = store;
    this.#start = start;
  }

  /** The outputs, once their uploaders exist (they persist through this coordinator). */
  attach(outputs: Record<OutputSide, CoordinatedOutput>): void {
    this.#outputs = outputs;
  }

  /**
   * The live position, once reading has started: from then on it is a row boundary whenever a
   * write runs, since writes run only while the row loop awaits, between rows.
   */
  follow(live: () => ResumeMark): void {
    this.#live = live;
  }

  /** Writes the checkpoint after a change to `side`'s durable state; resolves once stored. */
  persist(side: OutputSide): Promise<void> {
    const run = this.#queue.then(() => this.#write(side));
    this.#queue = run.catch(() => {});
    return run;
  }

  /** At the end: every carry key of the attempt is dropped (the outputs are complete). */
  async retireAll(): Promise<void> {
    const { output, rejects } = this.#attached();
    const keys = [...output.retireCarryKeys(undefined), ...rejects.retireCarryKeys(undefined)];
    await Promise.all(keys.map((key) => this.#store.deleteCarry(key)));
  }

  #attached(): Record<OutputSide, CoordinatedOutput> {
    if (!this.#outputs) throw new Error("the checkpoint coordinator has no outputs attached");
    return this.#outputs;
  }

  async #write(changed: OutputSide): Promise<void> {
    const outputs = this.#attached();
    const { output, rejects } = outputs;
    // Until a multipart upload exists, a first attempt has made nothing a retry could resume:
    // whole-object PUTs are simply repeated. A small job writes no checkpoint at all.
    if (this.#start.resumes === 0 && !output.state.uploadId && !rejects.state.uploadId) return;
    const otherSide: OutputSide = changed === "output" ? "rejects" : "output";
    await this.#carry(otherSide);
    const saved = { ...this.#store.current, output: output.state, rejects: rejects.state };
    await this.#store.save(saved);
    // Keys of earlier parts (or attempts) are named by no saved checkpoint from here on. (The
    // outputs' states may have moved on while it was written: what was saved decides.)
    const retired = [
      ...output.retireCarryKeys(saved.output.carry?.key),
      ...rejects.retireCarryKeys(saved.rejects.carry?.key),
    ];
    await Promise.all(retired.map((key) => this.#store.deleteCarry(key)));
  }

  /** Moves `side`'s resume mark up to the live position, its text since its last part carried. */
  async #carry(side: OutputSide): Promise<void> {
    const live = this.#live?.();
    // Until reading passes an output's own start mark, its buffer runs ahead of the position.
    if (!live || live.offset < this.#start[side].mark.offset) return;
    const output = this.#attached()[side];
    const snapshot = output.carrySnapshot();
    if (snapshot === "busy") return;
    if (snapshot.delta.length > 0) {
      const offset = snapshot.bytes - snapshot.delta.length;
      await this.#store.writeCarry(snapshot.key, offset, snapshot.delta);
    }
    output.adoptCarry(snapshot, live);
  }
}
