import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import type { UploadedPart } from "../../shared/job.ts";
import { isS3Error } from "../../shared/s3Errors.ts";
import { OutputLostError, PermanentJobError } from "../errors.ts";
import { expectedMultipartEtag } from "./multipartEtag.ts";
import { abortUpload, abortUploadsStartedNear, openUploads } from "./multipartUploads.ts";

// The multipart session: every S3 request about one output object, each behind the check that
// this worker still owns the job, and each S3 server's way of answering turned into what the
// uploader needs to know (a missing bucket, an upload gone, an object already completed).

export interface SessionOptions {
  s3: S3Client;
  bucket: string;
  key: string;
  contentType: string;
  checksums: boolean;
  /** Throws when this worker no longer owns the job (checked before writes to S3). */
  assertOwner(): Promise<void>;
  /**
   * The job's record of the uploads it creates: told before CreateMultipartUpload and after
   * it, so that a checkpoint may name only the job's own uploads and a stray can be found.
   */
  uploads: { creating(): Promise<void>; created(uploadId: string): Promise<void> };
}

/** An object's durable record: its upload, its parts and their bytes. */
export interface UploadRecord {
  uploadId: string | undefined;
  parts: readonly UploadedPart[];
  bytes: number;
}

export class MultipartSession {
  readonly #o: SessionOptions;

  constructor(options: SessionOptions) {
    this.#o = options;
  }

  get #where(): string {
    return `s3://${this.#o.bucket}/${this.#o.key}`;
  }

  #checksum() {
    return this.#o.checksums ? { ChecksumAlgorithm: "CRC32" as const } : {};
  }

  /** Creates the upload, marked before and recorded after (see SessionOptions.uploads). */
  async create(): Promise<string> {
    const { s3, bucket, key, contentType } = this.#o;
    await this.#o.assertOwner();
    await this.#o.uploads.creating();
    const created = await this.#toDestination(() =>
      s3.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: contentType,
          ...this.#checksum(),
        }),
      ),
    );
    if (!created.UploadId) throw new Error(`no UploadId for ${this.#where}`);
    await this.#o.uploads.created(created.UploadId);
    return created.UploadId;
  }

  /** Uploads one part; an upload that no longer exists is an OutputLostError. */
  async uploadPart(uploadId: string, partNumber: number, body: Buffer): Promise<UploadedPart> {
    const { s3, bucket, key } = this.#o;
    await this.#o.assertOwner();
    const response = await s3
      .send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: body,
          ...this.#checksum(),
        }),
      )
      .catch((error: unknown) => {
        if (!isS3Error(error, "NoSuchUpload")) throw error;
        const location = { bucket, key };
        const why = `upload ${uploadId} no longer exists (aborted, or expired by a lifecycle rule)`;
        throw new OutputLostError(location, why);
      });
    return {
      PartNumber: partNumber,
      ETag: response.ETag ?? "",
      size: body.length,
      ...(this.#o.checksums && response.ChecksumCRC32
        ? { ChecksumCRC32: response.ChecksumCRC32 }
        : {}),
    };
  }

  /**
   * Makes a part of bytes [start, end) of another object, copied by the server; the whole
   * object when the range is all of it (S3 copies a range only from an object over 5 MiB).
   */
  async copyPart(
    uploadId: string,
    partNumber: number,
    from: { bucket: string; key: string; etag: string; size: number; start: number; end: number },
  ): Promise<UploadedPart> {
    const { s3, bucket, key } = this.#o;
    await this.#o.assertOwner();
    const whole = from.start === 0 && from.end === from.size;
    const response = await s3
      .send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          CopySource: `${from.bucket}/${encodeURIComponent(from.key)}`,
          CopySourceIfMatch: from.etag,
          ...(whole ? {} : { CopySourceRange: `bytes=${from.start}-${from.end - 1}` }),
        }),
      )
      .catch((error: unknown) => {
        if (!isS3Error(error, "NoSuchUpload")) throw error;
        throw new OutputLostError({ bucket, key }, `upload ${uploadId} no longer exists`);
      });
    return {
      PartNumber: partNumber,
      ETag: response.CopyPartResult?.ETag ?? "",
      size: from.end - from.start,
    };
  }

  /** A small output as one object: its ETag, and its CRC32 when the server returned it. */
  async putWhole(body: Buffer): Promise<{ etag: string; checksumCRC32?: string }> {
    const { s3, bucket, key, contentType } = this.#o;
    await this.#o.assertOwner();
    const response = await this.#toDestination(() =>
      s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentType: contentType,
          ...this.#checksum(),
        }),
      ),
    );
    return {
      etag: response.ETag ?? "",
      ...(this.#o.checksums && response.ChecksumCRC32
        ? { checksumCRC32: response.ChecksumCRC32 }
        : {}),
    };
  }

  /**
   * Completes the upload; resolves to the object's ETag. An upload already gone may be one an
   * earlier attempt completed and crashed before recording: the object there then decides.
   */
  async complete(record: UploadRecord): Promise<string> {
    const { s3, bucket, key } = this.#o;
    await this.#o.assertOwner();
    try {
      const response = await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: record.uploadId,
          MultipartUpload: {
            Parts: record.parts.map((p) => ({
              PartNumber: p.PartNumber,
              ETag: p.ETag,
              ...(p.ChecksumCRC32 ? { ChecksumCRC32: p.ChecksumCRC32 } : {}),
            })),
          },
        }),
      );
      // Some servers (Ceph RGW) answer an empty ETag: the object's own is asked for instead.
      return response.ETag || (await this.#objectEtag(record));
    } catch (error) {
      if (!isS3Error(error, "NoSuchUpload")) throw error;
      return this.#recognizeCompleted(record);
    }
  }

  /**
   * Cross-checks a recorded upload with ListParts, where the server has it. Resolves to the
   * object's ETag when the upload is gone because an earlier attempt completed it, undefined
   * when it is as recorded (or cannot be listed); throws OutputLostError when it is gone
   * otherwise, or differs (then it is aborted: the job holds the key, the upload is its own).
   */
  async verify(record: UploadRecord & { uploadId: string }): Promise<string | undefined> {
    let listed: Map<number, string>;
    try {
      listed = await this.#listParts(record.uploadId);
    } catch (error) {
      if (await this.#uploadGone(error, record.uploadId)) return this.#recognizeCompleted(record);
      // The server has no ListParts: the checkpoint is the source of truth (an upload gone
      // meanwhile shows at its next part).
      return undefined;
    }
    const differs = record.parts.find((p) => !sameEtag(listed.get(p.PartNumber), p.ETag));
    if (!differs) return undefined;
    await this.abort(record.uploadId);
    throw new OutputLostError(
      this.#o,
      `part ${differs.PartNumber} of upload ${record.uploadId} is not on the server as checkpointed (ListParts); the upload was aborted`,
    );
  }

  /**
   * The upload is gone: the object there is the one this job completed (same size, and the
   * multipart ETag where the server's ETags allow computing it), or the upload was lost.
   */
  async #recognizeCompleted(record: UploadRecord): Promise<string> {
    const { s3, bucket, key } = this.#o;
    const gone = `upload ${record.uploadId} no longer exists`;
    let head: { ETag?: string; ContentLength?: number };
    try {
      head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    } catch (error) {
      if (isS3Error(error, "NotFound") || isS3Error(error, "NoSuchKey")) {
        throw new OutputLostError(this.#o, `${gone} and no object is there: it was aborted`);
      }
      throw error;
    }
    const expected = expectedMultipartEtag(record.parts.map((p) => p.ETag));
    const etagMatches = expected === undefined || head.ETag === expected;
    if (record.parts.length === 0 || head.ContentLength !== record.bytes || !etagMatches) {
      throw new OutputLostError(
        this.#o,
        `${gone}, and the object there (${head.ContentLength} bytes, ETag ${head.ETag}) is not the one this job uploaded (${record.bytes} bytes, ETag ${expected ?? "unknown"})`,
      );
    }
    return head.ETag ?? "";
  }

  /**
   * Aborts this object's uploads that the job created and its checkpoint does not name: those
   * recorded (`strays`), and, when an earlier run died while creating one (`creating`), any
   * started then that it did not live to record (see abortUploadsStartedNear). `kept`, the
   * upload the checkpoint names, stays.
   */
  async abortStrays(
    strays: readonly string[],
    creating: Date | undefined,
    kept?: string,
  ): Promise<void> {
    for (const uploadId of strays) if (uploadId !== kept) await this.abort(uploadId);
    if (!creating) return;
    await this.#o.assertOwner();
    await abortUploadsStartedNear(this.#o.s3, this.#o, creating, kept);
  }

  /** Aborts an upload of this object (one already gone is fine). */
  async abort(uploadId: string): Promise<void> {
    await this.#o.assertOwner();
    await abortUpload(this.#o.s3, { bucket: this.#o.bucket, key: this.#o.key, uploadId });
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
      for await (const upload of openUploads(this.#o.s3, this.#o.bucket, this.#o.key)) {
        if (upload.UploadId === uploadId) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  async #listParts(uploadId: string): Promise<Map<number, string>> {
    const { s3, bucket, key } = this.#o;
    const listed = new Map<number, string>();
    let marker: string | undefined;
    do {
      const page = await s3.send(
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

  /** The completed object's ETag from HeadObject, or the multipart ETag its parts give. */
  async #objectEtag(record: UploadRecord): Promise<string> {
    const head = await this.#o.s3
      .send(new HeadObjectCommand({ Bucket: this.#o.bucket, Key: this.#o.key }))
      .catch(() => undefined);
    return head?.ETag || expectedMultipartEtag(record.parts.map((p) => p.ETag)) || "";
  }

  /** Runs a request that creates the object, naming a missing bucket as a permanent error. */
  async #toDestination<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      if (isS3Error(error, "NoSuchBucket")) {
        throw new PermanentJobError(
          `bucket "${this.#o.bucket}" for ${this.#where} does not exist; create it or fix the job's destination`,
        );
      }
      throw error;
    }
  }
}

/** ETags compared as S3 means them: quotes and letter case are the server's style. */
function sameEtag(a: string | undefined, b: string): boolean {
  const plain = (etag: string) => etag.replaceAll('"', "").toLowerCase();
  return a !== undefined && plain(a) === plain(b);
}
