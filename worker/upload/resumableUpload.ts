import type { S3Client } from "@aws-sdk/client-s3";
import type { OutputCheckpoint, ResumeMark } from "../../shared/job.ts";
import { OutputLostError } from "../errors.ts";
import { CarriedText, type CarrySnapshot } from "./carriedText.ts";
import { MultipartSession } from "./multipartSession.ts";
import type { PartBudget } from "./partBudget.ts";
import { PartSink } from "./partSink.ts";
import { type FinishedPart, PartWindow } from "./partWindow.ts";

// The resumable uploader: one per output object per job attempt, never shared. It cuts the
// output into parts at row boundaries (PartSink), uploads them as the job's PartBudget has slots
// (PartWindow, through the MultipartSession), and reports the contiguous prefix of uploaded
// parts, with the input position it covers, as its durable state; between parts, the text
// written since the last one can ride in the checkpoint (CarriedText). A new attempt starts
// from that state and continues with the next part number.

const MAX_PARTS = 10_000;

export interface UploaderOptions {
  s3: S3Client;
  state: OutputCheckpoint;
  partSize: number;
  /** The job's upload slots and part buffers, shared with its other output. */
  budget: PartBudget;
  checksums: boolean;
  contentType: string;
  /** The object is gzip: members of about partSize text each, every part whole members. */
  gzip: boolean;
  /** Persists the durable state; resolves once it is stored. */
  persist(state: OutputCheckpoint): Promise<void>;
  /** Throws when this worker no longer owns the job (checked before writes to S3). */
  assertOwner(): Promise<void>;
  /** Names the Redis key for this attempt's carried text after `parts` durable parts. */
  carryKey(parts: number): string;
  /** The job's record of the uploads it creates (see MultipartSession). */
  uploads: { creating(): Promise<void>; created(uploadId: string): Promise<void> };
  /** Reads a carry a previous attempt checkpointed; undefined when it is gone. */
  readCarry(key: string, bytes: number): Promise<Buffer | undefined>;
  /** Told of every part uploaded: its number, size and latency. */
  onPartUploaded?(part: PartUploaded): void;
}

export interface PartUploaded {
  key: string;
  partNumber: number;
  bytes: number;
  /** From the check that this worker still owns the job to S3's answer. */
  seconds: number;
}

/** The durable state with what a part or a completion covers: no carried text before it. */
function covered(state: OutputCheckpoint): OutputCheckpoint {
  const { carry: _covered, ...rest } = state;
  return rest;
}

export class ResumableUpload {
  readonly #o: UploaderOptions;
  readonly #session: MultipartSession;
  readonly #sink: PartSink;
  readonly #window: PartWindow;
  readonly #carried: CarriedText;
  #state: OutputCheckpoint;
  #nextPart: number;
  // Text taken from the sink and not yet in flight or durable: no carry can be taken then.
  #handingOver = false;

  constructor(options: UploaderOptions) {
    this.#o = options;
    const { s3, state, contentType, checksums, assertOwner, uploads } = options;
    const { bucket, key } = state;
    this.#session = new MultipartSession({
      s3,
      bucket,
      key,
      contentType,
      checksums,
      assertOwner,
      uploads,
    });
    this.#sink = new PartSink(options.partSize, options.budget, options.gzip);
    this.#window = new PartWindow();
    this.#carried = new CarriedText(options.carryKey);
    // The durable state keeps its carry until a part or a newer carry covers that text: until
    // then a checkpoint that cannot take a new carry of this output must still name the old one.
    this.#state = state;
    this.#nextPart = state.parts.length + 1;
  }

  get state(): OutputCheckpoint {
    return this.#state;
  }

  /** True when nothing of this output has been uploaded yet (it still needs its header). */
  get empty(): boolean {
    return !this.#state.completed && this.#state.parts.length === 0 && this.#sink.isEmpty;
  }

  /** Puts back the output a previous attempt carried in its checkpoint. */
  async restore(): Promise<void> {
    const carry = this.#state.carry;
    if (!carry || this.#state.completed || !this.#carried.takeRestored(carry.key)) return;
    const text = await this.#o.readCarry(carry.key, carry.bytes);
    if (!text) {
      throw new OutputLostError(
        this.#state,
        `the text carried in the checkpoint (${carry.bytes} bytes in ${carry.key}) expired or was removed`,
      );
    }
    this.write(text.toString("utf8"));
  }

  /**
   * Cross-checks the checkpointed upload with the server (see MultipartSession.verify); an
   * upload an earlier attempt completed makes this output complete.
   */
  async verify(): Promise<void> {
    const { uploadId, parts, bytes, completed } = this.#state;
    if (!uploadId || completed) return;
    const etag = await this.#session.verify({ uploadId, parts, bytes });
    if (etag !== undefined) await this.#recordCompleted(etag);
  }

  /**
   * Aborts this object's uploads that the job created and its checkpoint does not name: those
   * recorded (`strays`), and, when an attempt died while creating one (`creating`), any
   * started then that it did not live to record.
   */
  abortStrays(strays: readonly string[], creating: Date | undefined): Promise<void> {
    return this.#session.abortStrays(strays, creating, this.#state.uploadId);
  }

  /**
   * The buffered output for the checkpoint to carry, or "busy" when output is on its way to S3
   * (a part in flight or being handed over, or one that failed) or a part is due: then only the
   * durable state is consistent. A carry never holds a part's worth, so a resumed attempt, which
   * seals parts only on rows it writes, cuts its first part where an uninterrupted run would.
   */
  carrySnapshot(): CarrySnapshot | "busy" {
    if (
      this.#state.completed ||
      this.#window.failure !== undefined ||
      this.#handingOver ||
      this.#sink.holdsMembers ||
      this.#window.busy ||
      this.#sink.textDue
    ) {
      return "busy";
    }
    const sink = this.#sink;
    return this.#carried.snapshot(this.#state.parts.length, {
      bytes: sink.textBytes,
      copy: (from) => sink.copyText(from),
    });
  }

  /**
   * Records that a snapshot's delta is stored, and makes it the durable state: the output is
   * then uploaded parts plus carried text up to `mark`. A part that became durable meanwhile
   * already holds that text, and stays the state.
   */
  adoptCarry(snapshot: CarrySnapshot, mark: ResumeMark): void {
    this.#carried.stored(snapshot);
    if (snapshot.parts !== this.#state.parts.length) return;
    const state = covered(this.#state);
    this.#state =
      snapshot.bytes > 0
        ? { ...state, mark, carry: { key: snapshot.key, bytes: snapshot.bytes } }
        : { ...state, mark };
  }

  /**
   * Forgets the carry keys no checkpoint can need any more (all but `kept`, a saved state's)
   * and returns them, for the caller to delete.
   */
  retireCarryKeys(kept: string | undefined): string[] {
    return this.#carried.retire(kept);
  }

  /** Waits for every part upload started so far to end, however it ends. */
  async settle(): Promise<void> {
    await this.#window.settle();
  }

  write(text: string): void {
    this.#sink.write(text);
  }

  writeBytes(bytes: Uint8Array, suffix?: Uint8Array): void {
    this.#sink.writeBytes(bytes, suffix);
  }

  /**
   * Called after each row the output wrote: when a part's worth is buffered, it is sealed here,
   * on a row boundary, with `mark` as the input position its last row ends at.
   */
  endRow(mark: () => ResumeMark): Promise<void> | undefined {
    if (this.#window.failure !== undefined) throw this.#window.failure;
    // No promise per row: the row loop awaits only when a part is sealed.
    if (!this.#sink.textDue) return undefined;
    return this.#sink.gzip ? this.#compress(mark) : this.#seal(mark());
  }

  /** Uploads what is left and completes the object; `mark` is the end of the input. */
  async finish(mark: ResumeMark): Promise<{ etag: string; bytes: number; parts: number }> {
    const { completed } = this.#state;
    if (completed) return { ...completed, parts: Math.max(1, this.#state.parts.length) };
    const nothingUploaded = this.#state.parts.length + this.#window.inFlight === 0;
    // Even an empty output is a valid gzip file: one empty member.
    if (this.#sink.gzip && (this.#sink.holdsText || (nothingUploaded && this.#sink.isEmpty)))
      await this.#compress();
    if (!this.#state.uploadId && this.#window.inFlight === 0) return this.#putWhole(mark);
    if (!this.#sink.isEmpty || nothingUploaded) await this.#seal(mark);
    await this.#window.drain();
    const { uploadId, parts, bytes } = this.#state;
    const etag = await this.#session.complete({ uploadId, parts, bytes });
    await this.#recordCompleted(etag);
    return { etag, bytes: this.#state.bytes, parts: parts.length };
  }

  /**
   * Compresses the text so far into one gzip member and cuts a part once the members reach
   * partSize. The row loop waits: a member ends after the same row in every attempt, so a
   * resumed job writes the same members as an uninterrupted one.
   */
  async #compress(mark?: () => ResumeMark): Promise<void> {
    this.#handingOver = true;
    await this.#sink.compress();
    this.#handingOver = false;
    if (mark && this.#sink.membersDue) await this.#seal(mark());
  }

  async #putWhole(mark: ResumeMark): Promise<{ etag: string; bytes: number; parts: number }> {
    this.#handingOver = true;
    const body = this.#sink.takeBody();
    const put = await this.#session.putWhole(body);
    const completed = { ...put, bytes: body.length };
    this.#state = { ...covered(this.#state), bytes: body.length, mark, completed };
    this.#handingOver = false;
    await this.#o.persist(this.#state);
    return { etag: put.etag, bytes: body.length, parts: 1 };
  }

  async #seal(mark: ResumeMark): Promise<void> {
    const partNumber = this.#nextPart++;
    if (partNumber > MAX_PARTS) {
      throw new Error(
        `output s3://${this.#state.bucket}/${this.#state.key} needs more than ${MAX_PARTS} parts; raise PART_SIZE or the job's options.partSize`,
      );
    }
    this.#handingOver = true;
    const body = this.#sink.takeBody();
    const { budget } = this.#o;
    await budget.acquire();
    let uploading = false;
    try {
      // A part of this output that failed meanwhile fails the row loop here.
      if (this.#window.failure !== undefined) throw this.#window.failure;
      if (!this.#state.uploadId) {
        const uploadId = await this.#session.create();
        this.#state = { ...this.#state, uploadId };
        // Checkpointed before any part, so a crash from here on never orphans the upload.
        await this.#o.persist(this.#state);
      }
      this.#window.track(partNumber, this.#upload(partNumber, body, mark), () => budget.release());
      uploading = true;
    } finally {
      if (!uploading) budget.release();
    }
    this.#handingOver = false;
  }

  async #upload(partNumber: number, body: Buffer, mark: ResumeMark): Promise<void> {
    const started = performance.now();
    const part = await this.#session.uploadPart(this.#state.uploadId ?? "", partNumber, body);
    this.#o.onPartUploaded?.({
      key: this.#state.key,
      partNumber,
      bytes: body.length,
      seconds: (performance.now() - started) / 1000,
    });
    // The SDK is done with the body once the request has settled.
    this.#sink.release(body);
    const durable = this.#window.finished(partNumber, { part, mark }, this.#state.parts.length);
    if (durable.length > 0) {
      this.#advance(durable);
      await this.#o.persist(this.#state);
    }
  }

  /** The durable state after the parts that became durable (each holds the carried text). */
  #advance(durable: readonly FinishedPart[]): void {
    let state = covered(this.#state);
    for (const { part, mark } of durable) {
      state = { ...state, parts: [...state.parts, part], bytes: state.bytes + part.size, mark };
    }
    this.#state = state;
  }

  async #recordCompleted(etag: string): Promise<void> {
    const state = covered(this.#state);
    this.#state = { ...state, completed: { etag, bytes: state.bytes } };
    await this.#o.persist(this.#state);
  }
}
