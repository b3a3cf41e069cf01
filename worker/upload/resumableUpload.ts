import { promisify } from "node:util";
import { gzip } from "node:zlib";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import type { OutputCheckpoint, ResumeMark, UploadedPart } from "../../shared/job.ts";
import { OutputLostError, PermanentJobError } from "../errors.ts";
import { expectedMultipartEtag } from "./multipartEtag.ts";
import { openUploads } from "./multipartUploads.ts";
import { PartBuffer } from "./partBuffer.ts";
import { isS3Error } from "./s3Errors.ts";

// The resumable uploader: one per output object per job attempt, never shared. It cuts the
// output into parts at row boundaries, uploads up to `partsInFlight` of them at once, and
// reports the contiguous prefix of uploaded parts, with the input position it covers, as its
// durable state. A new attempt starts from that state and continues with the next part number.

const MAX_PARTS = 10_000;
const CLOCK_LEEWAY_MS = 60_000;
/** How long a CreateMultipartUpload may take, its SDK retries included. */
const CREATE_WINDOW_MS = 5 * 60_000;
const gzipAsync = promisify(gzip);

export interface UploaderOptions {
  s3: S3Client;
  state: OutputCheckpoint;
  partSize: number;
  partsInFlight: number;
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
  /**
   * The job's record of the uploads it creates: told before CreateMultipartUpload and after
   * it, so that a checkpoint may name only the job's own uploads and a stray can be found.
   */
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
  seconds: number;
}

/** The buffered output, for the checkpoint to carry: `delta` is what the key does not hold yet. */
export interface CarrySnapshot {
  key: string;
  delta: Buffer;
  bytes: number;
  parts: number;
}

interface SealedPart {
  part: UploadedPart;
  mark: ResumeMark;
}

export class ResumableUpload {
  readonly #o: UploaderOptions;
  #state: OutputCheckpoint;
  readonly #part: PartBuffer;
  // gzip output: members compressed from the text and not yet in a part (a part is cut once
  // they reach partSize, so that compressed parts meet S3's minimum).
  #members: Buffer[] = [];
  #memberBytes = 0;
  #nextPart: number;
  readonly #inFlight = new Map<number, Promise<void>>();
  readonly #finished = new Map<number, SealedPart>();
  #failure: unknown;
  // Bytes taken from the buffer and not yet in flight or durable: no carry can be taken then.
  #handingOver = false;
  // Carry keys this attempt restored or wrote: each is deleted once no saved checkpoint names it.
  readonly #carryKeys = new Set<string>();
  // The key snapshots append to now (one per attempt and durable part count), and how much of
  // it is stored.
  #carryKey: string | undefined;
  #carried = 0;

  constructor(options: UploaderOptions) {
    this.#o = options;
    // The durable state keeps its carry until a part or a newer carry covers that text: until
    // then a checkpoint that cannot take a new carry of this output must still name the old one.
    this.#state = options.state;
    this.#nextPart = options.state.parts.length + 1;
    // One buffer filling, the ones in flight, and one to spare.
    this.#part = new PartBuffer(options.partSize, options.partsInFlight + 1);
  }

  /** Puts back the output a previous attempt carried in its checkpoint. */
  async restore(): Promise<void> {
    const carry = this.#state.carry;
    if (!carry || this.#state.completed || this.#carryKeys.has(carry.key)) return;
    this.#carryKeys.add(carry.key);
    const text = await this.#o.readCarry(carry.key, carry.bytes);
    if (!text) {
      throw new OutputLostError(
        this.#state,
        `the text carried in the checkpoint (${carry.bytes} bytes in ${carry.key}) expired or was removed`,
      );
    }
    this.write(text.toString("utf8"));
  }

  get state(): OutputCheckpoint {
    return this.#state;
  }

  /** True when nothing of this output has been uploaded yet (it still needs its header). */
  get empty(): boolean {
    return (
      !this.#state.completed &&
      this.#state.parts.length === 0 &&
      this.#part.isEmpty &&
      this.#members.length === 0
    );
  }

  /**
   * The buffered output for the checkpoint to carry, or "busy" when output is on its way to S3
   * (a part in flight or being handed over) or a part is due: then only the durable state is
   * consistent. A carry never holds a part's worth, so a resumed attempt, which seals parts only
   * on rows it writes, cuts its first part where an uninterrupted run would.
   */
  carrySnapshot(): CarrySnapshot | "busy" {
    if (
      this.#state.completed ||
      // A part that failed took its text out of the buffer: what is left does not follow the
      // durable parts.
      this.#failure !== undefined ||
      this.#handingOver ||
      this.#members.length > 0 ||
      this.#inFlight.size > 0 ||
      this.#finished.size > 0 ||
      this.#part.units >= this.#o.partSize
    ) {
      return "busy";
    }
    const parts = this.#state.parts.length;
    const key = this.#o.carryKey(parts);
    if (key !== this.#carryKey) {
      this.#carryKey = key;
      this.#carried = 0;
      this.#carryKeys.add(key);
    }
    const bytes = this.#part.bytes;
    const delta = this.#part.copyFrom(Math.min(this.#carried, bytes));
    return { key, delta, bytes, parts };
  }

  /**
   * Records that a snapshot's delta is stored, and makes it the durable state: the output is
   * then uploaded parts plus carried text up to `mark`. A part that became durable meanwhile
   * already holds that text, and stays the state.
   */
  adoptCarry(snapshot: CarrySnapshot, mark: ResumeMark): void {
    if (snapshot.key === this.#carryKey) this.#carried = Math.max(this.#carried, snapshot.bytes);
    if (snapshot.parts !== this.#state.parts.length) return;
    const { carry: _covered, ...state } = this.#state;
    this.#state =
      snapshot.bytes > 0
        ? { ...state, mark, carry: { key: snapshot.key, bytes: snapshot.bytes } }
        : { ...state, mark };
  }

  /** Carry keys that no checkpoint can need any more: all but the durable state's (or all). */
  retireCarryKeys(all = false): string[] {
    const kept = all ? undefined : this.#state.carry?.key;
    const retired = [...this.#carryKeys].filter((key) => key !== kept);
    for (const key of retired) this.#carryKeys.delete(key);
    if (this.#carryKey !== undefined && retired.includes(this.#carryKey)) {
      this.#carryKey = undefined;
      this.#carried = 0;
    }
    return retired;
  }

  /** Waits for every part upload started so far to end, however it ends. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#inFlight.values());
  }

  write(text: string): void {
    this.#part.append(text);
  }

  /**
   * Called after each row: when a part's worth is buffered, it is sealed here, on a row
   * boundary, with `mark` as the input position its last row ends at.
   */
  endRow(mark: () => ResumeMark): Promise<void> | undefined {
    if (this.#failure) throw this.#failure;
    // No promise per row: the row loop awaits only when a part is sealed.
    if (this.#part.units < this.#o.partSize) return undefined;
    return this.#o.gzip ? this.#compress(mark) : this.#seal(mark());
  }

  /**
   * Compresses the text so far into one gzip member (off the event loop) and cuts a part once
   * the members reach partSize. The row loop waits: a member ends after the same row in every
   * attempt, so a resumed job writes the same members as an uninterrupted one.
   */
  async #compress(mark?: () => ResumeMark): Promise<void> {
    this.#handingOver = true;
    const text = this.#part.take();
    const member = await gzipAsync(text);
    this.#part.release(text);
    this.#members.push(member);
    this.#memberBytes += member.length;
    this.#handingOver = false;
    if (mark && this.#memberBytes >= this.#o.partSize) await this.#seal(mark());
  }

  /** The next part's body: the buffered text, or the gzip members. */
  #takeBody(): Buffer {
    if (!this.#o.gzip) return this.#part.take();
    const body = Buffer.concat(this.#members, this.#memberBytes);
    this.#members = [];
    this.#memberBytes = 0;
    return body;
  }

  /**
   * On a resume: aborts the uploads of this object that an earlier attempt created but died
   * before recording (between CreateMultipartUpload and its record), where the server can list
   * them. `creating` is when that attempt was about to create one: only uploads started around
   * then are its own (a minute of leeway either side for the S3 server's clock against Redis's,
   * and the create request's own time after).
   */
  async abortStrays(creating: Date): Promise<void> {
    const { bucket, key, uploadId } = this.#state;
    const from = creating.getTime() - CLOCK_LEEWAY_MS;
    const until = creating.getTime() + CLOCK_LEEWAY_MS + CREATE_WINDOW_MS;
    const strays: string[] = [];
    try {
      for await (const upload of openUploads(this.#o.s3, bucket, key)) {
        if (upload.Key !== key || !upload.UploadId || upload.UploadId === uploadId) continue;
        const at = upload.Initiated?.getTime();
        if (at !== undefined && at >= from && at <= until) strays.push(upload.UploadId);
      }
    } catch {
      return; // not supported here: `s3csv sweep` and a lifecycle rule are the backstop
    }
    for (const stray of strays) {
      await this.#o.assertOwner();
      await abortUpload(this.#o.s3, { ...this.#state, uploadId: stray, completed: undefined });
    }
  }

  /**
   * Cross-checks the checkpointed parts against the server, where it can list them. An upload
   * the server no longer has was either completed by an earlier attempt (the object is there,
   * as this job uploaded it: the output is done) or is gone (OutputLostError).
   */
  async verify(): Promise<void> {
    const { uploadId, parts } = this.#state;
    if (!uploadId || this.#state.completed) return;
    let listed: Map<number, string>;
    try {
      listed = await this.#listParts(uploadId);
    } catch (error) {
      if (await this.#uploadGone(error, uploadId)) {
        await this.#recordCompleted(await this.#recognizeCompleted());
      }
      // Otherwise the server has no ListParts: no cross-check, the checkpoint is the source of
      // truth (an upload gone meanwhile shows at its next part).
      return;
    }
    const differs = parts.find((part) => !sameEtag(listed.get(part.PartNumber), part.ETag));
    if (differs) {
      // Not the upload the checkpoint describes: nothing of it can be trusted. The job holds
      // the key, so the upload is its own to abort.
      await this.#o.assertOwner();
      await abortUpload(this.#o.s3, this.#state);
      throw new OutputLostError(
        this.#state,
        `part ${differs.PartNumber} of upload ${uploadId} is not on the server as checkpointed (ListParts); the upload was aborted`,
      );
    }
  }

  /**
   * Whether ListParts failed because the upload is gone. S3 says NoSuchUpload; Ceph RGW says
   * NoSuchKey, which is also what a server without ListParts answers (it reads the request as
   * a GET of the object): then the server's list of open uploads decides, where it has one.
   */
  async #uploadGone(error: unknown, uploadId: string): Promise<boolean> {
    if (isS3Error(error, "NoSuchUpload")) return true;
    if (!isS3Error(error, "NoSuchKey")) return false;
    try {
      for await (const upload of openUploads(this.#o.s3, this.#state.bucket, this.#state.key)) {
        if (upload.UploadId === uploadId) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  async #listParts(uploadId: string): Promise<Map<number, string>> {
    const { bucket, key } = this.#state;
    const listed = new Map<number, string>();
    let marker: string | undefined;
    do {
      const page = await this.#o.s3.send(
        new ListPartsCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumberMarker: marker,
        }),
      );
      for (const p of page.Parts ?? []) listed.set(p.PartNumber ?? 0, p.ETag ?? "");
      marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
    } while (marker);
    return listed;
  }

  /** Uploads what is left and completes the object; `mark` is the end of the input. */
  async finish(mark: ResumeMark): Promise<{ etag: string; bytes: number; parts: number }> {
    if (this.#state.completed) {
      return { ...this.#state.completed, parts: Math.max(1, this.#state.parts.length) };
    }
    const nothingUploaded = this.#state.parts.length + this.#inFlight.size === 0;
    // Even an empty output is a valid gzip file: one empty member.
    if (this.#o.gzip && (!this.#part.isEmpty || (nothingUploaded && this.#members.length === 0)))
      await this.#compress();
    if (!this.#state.uploadId && this.#inFlight.size === 0) {
      return this.#putWhole(mark);
    }
    if (!this.#part.isEmpty || this.#members.length > 0 || nothingUploaded) {
      await this.#seal(mark);
    }
    await this.#drain();
    return this.#complete();
  }

  async #putWhole(mark: ResumeMark): Promise<{ etag: string; bytes: number; parts: number }> {
    this.#handingOver = true;
    const body = this.#takeBody();
    await this.#o.assertOwner();
    const { bucket, key } = this.#state;
    const response = await toDestination(this.#state, () =>
      this.#o.s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentType: this.#o.contentType,
          ...(this.#o.checksums ? { ChecksumAlgorithm: "CRC32" as const } : {}),
        }),
      ),
    );
    const completed = {
      etag: response.ETag ?? "",
      bytes: body.length,
      ...(this.#o.checksums && response.ChecksumCRC32
        ? { checksumCRC32: response.ChecksumCRC32 }
        : {}),
    };
    const { carry: _covered, ...state } = this.#state;
    this.#state = { ...state, bytes: body.length, mark, completed };
    this.#handingOver = false;
    await this.#o.persist(this.#state);
    return { ...completed, parts: 1 };
  }

  async #seal(mark: ResumeMark): Promise<void> {
    const partNumber = this.#nextPart++;
    if (partNumber > MAX_PARTS) {
      throw new Error(
        `output s3://${this.#state.bucket}/${this.#state.key} needs more than ${MAX_PARTS} parts; raise PART_SIZE or the job's options.partSize`,
      );
    }
    this.#handingOver = true;
    const body = this.#takeBody();
    while (this.#inFlight.size >= this.#o.partsInFlight) {
      await Promise.race(this.#inFlight.values());
    }
    if (this.#failure) throw this.#failure;
    await this.#ensureUpload();
    const upload = this.#uploadPart(partNumber, body, mark).then(
      () => {
        this.#inFlight.delete(partNumber);
      },
      (error: unknown) => {
        this.#inFlight.delete(partNumber);
        this.#failure ??= error;
      },
    );
    this.#inFlight.set(partNumber, upload);
    this.#handingOver = false;
  }

  async #ensureUpload(): Promise<void> {
    if (this.#state.uploadId) return;
    await this.#o.assertOwner();
    const { bucket, key } = this.#state;
    // Marked first: an attempt that dies before recording the upload leaves a mark the next
    // attempt looks for (abortStrays).
    await this.#o.uploads.creating();
    const created = await toDestination(this.#state, () =>
      this.#o.s3.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: this.#o.contentType,
          ...(this.#o.checksums ? { ChecksumAlgorithm: "CRC32" as const } : {}),
        }),
      ),
    );
    if (!created.UploadId) throw new Error(`no UploadId for s3://${bucket}/${key}`);
    await this.#o.uploads.created(created.UploadId);
    this.#state = { ...this.#state, uploadId: created.UploadId };
    // Checkpointed before any part, so a crash from here on never orphans the upload.
    await this.#o.persist(this.#state);
  }

  async #uploadPart(partNumber: number, body: Buffer, mark: ResumeMark): Promise<void> {
    await this.#o.assertOwner();
    const { bucket, key, uploadId } = this.#state;
    const started = performance.now();
    const response = await this.#o.s3
      .send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: body,
          ...(this.#o.checksums ? { ChecksumAlgorithm: "CRC32" as const } : {}),
        }),
      )
      .catch((error: unknown) => {
        if (!isS3Error(error, "NoSuchUpload")) throw error;
        throw new OutputLostError(
          this.#state,
          `upload ${uploadId} no longer exists (aborted, or expired by a lifecycle rule)`,
        );
      });
    this.#o.onPartUploaded?.({
      key: this.#state.key,
      partNumber,
      bytes: body.length,
      seconds: (performance.now() - started) / 1000,
    });
    // The SDK is done with the body once the request has settled.
    this.#part.release(body);
    const part: UploadedPart = {
      PartNumber: partNumber,
      ETag: response.ETag ?? "",
      size: body.length,
      ...(this.#o.checksums && response.ChecksumCRC32
        ? { ChecksumCRC32: response.ChecksumCRC32 }
        : {}),
    };
    this.#finished.set(partNumber, { part, mark });
    // Only the contiguous prefix is durable: a gap (a part still in flight) stops it.
    let advanced = false;
    let next = this.#state.parts.length + 1;
    let sealed = this.#finished.get(next);
    while (sealed) {
      this.#finished.delete(next);
      // The part holds whatever text was carried before it.
      const { carry: _covered, ...state } = this.#state;
      this.#state = {
        ...state,
        parts: [...state.parts, sealed.part],
        bytes: state.bytes + sealed.part.size,
        mark: sealed.mark,
      };
      advanced = true;
      next++;
      sealed = this.#finished.get(next);
    }
    if (advanced) await this.#o.persist(this.#state);
  }

  async #drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight.values());
    if (this.#failure) throw this.#failure;
  }

  async #complete(): Promise<{ etag: string; bytes: number; parts: number }> {
    const { bucket, key, uploadId, parts } = this.#state;
    await this.#o.assertOwner();
    let etag: string;
    try {
      const response = await this.#o.s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: {
            Parts: parts.map((p) => ({
              PartNumber: p.PartNumber,
              ETag: p.ETag,
              ...(p.ChecksumCRC32 ? { ChecksumCRC32: p.ChecksumCRC32 } : {}),
            })),
          },
        }),
      );
      // Some servers (Ceph RGW) answer an empty ETag: the object's own is asked for instead.
      etag = response.ETag || (await this.#objectEtag());
    } catch (error) {
      // A previous attempt may have completed the upload and crashed before recording it.
      if (!isS3Error(error, "NoSuchUpload")) throw error;
      etag = await this.#recognizeCompleted();
    }
    await this.#recordCompleted(etag);
    return { etag, bytes: this.#state.bytes, parts: parts.length };
  }

  async #recordCompleted(etag: string): Promise<void> {
    const { carry: _covered, ...state } = this.#state;
    this.#state = { ...state, completed: { etag, bytes: state.bytes } };
    await this.#o.persist(this.#state);
  }

  /** The completed object's ETag from HeadObject, or the multipart ETag its parts give. */
  async #objectEtag(): Promise<string> {
    const { bucket, key, parts } = this.#state;
    const head = await this.#o.s3
      .send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
      .catch(() => undefined);
    return head?.ETag || expectedMultipartEtag(parts.map((p) => p.ETag)) || "";
  }

  /**
   * The upload is gone: the object there is the one this job completed (same size, and the
   * multipart ETag where the server's ETags allow computing it), or the upload was lost.
   */
  async #recognizeCompleted(): Promise<string> {
    const { bucket, key, uploadId, parts, bytes } = this.#state;
    const gone = `upload ${uploadId} no longer exists`;
    let head: { ETag?: string; ContentLength?: number };
    try {
      head = await this.#o.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    } catch (error) {
      if (isS3Error(error, "NotFound") || isS3Error(error, "NoSuchKey")) {
        throw new OutputLostError(this.#state, `${gone} and no object is there: it was aborted`);
      }
      throw error;
    }
    const expected = expectedMultipartEtag(parts.map((p) => p.ETag));
    const etagMatches = expected === undefined || head.ETag === expected;
    if (parts.length === 0 || head.ContentLength !== bytes || !etagMatches) {
      throw new OutputLostError(
        this.#state,
        `${gone}, and the object there (${head.ContentLength} bytes, ETag ${head.ETag}) is not the one this job uploaded (${bytes} bytes, ETag ${expected ?? "unknown"})`,
      );
    }
    return head.ETag ?? "";
  }
}

/** ETags compared as S3 means them: quotes and letter case are the server's style. */
function sameEtag(a: string | undefined, b: string): boolean {
  const plain = (etag: string) => etag.replaceAll('"', "").toLowerCase();
  return a !== undefined && plain(a) === plain(b);
}

/** Runs a request that creates the object, naming a missing bucket as a permanent error. */
async function toDestination<T>(state: OutputCheckpoint, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    if (isS3Error(error, "NoSuchBucket")) {
      throw new PermanentJobError(
        `bucket "${state.bucket}" for s3://${state.bucket}/${state.key} does not exist; create it or fix the job's destination`,
      );
    }
    throw error;
  }
}

/** Aborts an output's multipart upload, if it has one that is not complete. */
export async function abortUpload(s3: S3Client, state: OutputCheckpoint): Promise<void> {
  const { uploadId, bucket, key } = state;
  if (!uploadId || state.completed) return;
  try {
    await s3.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
    );
  } catch (error) {
    if (!isS3Error(error, "NoSuchUpload")) throw error;
  }
}
