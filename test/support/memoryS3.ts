import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import type { Steps } from "./steps.ts";

// An S3 in memory for unit tests of the uploader and the checkpoint protocol: the requests they
// make, with S3's rules (ascending part numbers and ETags at completion, NoSuchUpload, If-Match,
// ranged reads). A client's every request is a step of its process (which may crash there), and
// its answer comes a few ticks later, so that parts in flight finish in varied orders. A client
// can be made to see one request fail as S3 fails one (a 500), its process living on.

class S3Error extends Error {
  readonly $metadata: { httpStatusCode: number };
  constructor(code: string, status: number) {
    super(code);
    this.name = code;
    this.$metadata = { httpStatusCode: status };
  }
}

interface Upload {
  key: string;
  parts: Map<number, { body: Buffer; etag: string }>;
  initiated: Date;
}

/** The fields of the requests this S3 answers. */
interface Input {
  Bucket: string;
  Key: string;
  UploadId: string;
  PartNumber: number;
  Body: Buffer;
  IfMatch?: string;
  Range?: string;
  MultipartUpload: { Parts: Array<{ PartNumber: number; ETag: string }> };
}

/** The `nth` request named `command` (e.g. "UploadPartCommand") fails: S3's 500, no effect. */
export interface Failure {
  command: string;
  nth: number;
}

/** Told of every request that reaches the server, before it takes effect. */
export type Observer = (command: string, input: Readonly<Record<string, unknown>>) => void;

const md5 = (body: Buffer) => `"${createHash("md5").update(body).digest("hex")}"`;
const CHUNK = 64 * 1024;

export class MemoryS3 {
  readonly objects = new Map<string, { body: Buffer; etag: string }>();
  readonly uploads = new Map<string, Upload>();
  readonly #listParts: boolean;
  readonly #observe: Observer | undefined;
  #ids = 0;

  /** `listParts`: whether the server has ListParts (AWS does, the fauxqs emulator not). */
  constructor(options: { listParts: boolean; observe?: Observer }) {
    this.#listParts = options.listParts;
    this.#observe = options.observe;
  }

  /** A client whose requests run as steps of a process; `failure` names one that fails. */
  client(steps: Steps, failure?: Failure): S3Client {
    let seen = 0;
    return {
      send: async (command: { input: Record<string, unknown> }) => {
        const name = command.constructor.name;
        const fails = name === failure?.command && ++seen === failure.nth;
        const answer = await steps.run(name, () => (fails ? undefined : this.#handle(command)));
        if (fails) throw new S3Error("InternalError", 500);
        return answer;
      },
    } as unknown as S3Client;
  }

  #handle(command: { input: Record<string, unknown> }): unknown {
    this.#observe?.(command.constructor.name, command.input);
    const i = command.input as unknown as Input;
    if (command instanceof GetObjectCommand) return this.#get(i);
    if (command instanceof HeadObjectCommand) {
      const object = this.#object(i.Key);
      return { ETag: object.etag, ContentLength: object.body.length };
    }
    if (command instanceof PutObjectCommand) return this.#put(i.Key, i.Body);
    if (command instanceof CreateMultipartUploadCommand) {
      const id = `upload-${++this.#ids}`;
      this.uploads.set(id, { key: i.Key, parts: new Map(), initiated: new Date() });
      return { UploadId: id };
    }
    if (command instanceof UploadPartCommand) {
      const body = Buffer.from(i.Body);
      this.#upload(i.UploadId).parts.set(i.PartNumber, { body, etag: md5(body) });
      return { ETag: md5(body) };
    }
    if (command instanceof CompleteMultipartUploadCommand) return this.#complete(i);
    if (command instanceof AbortMultipartUploadCommand) {
      this.#upload(i.UploadId);
      this.uploads.delete(i.UploadId);
      return {};
    }
    if (command instanceof ListPartsCommand) return this.#parts(i.UploadId);
    if (command instanceof ListMultipartUploadsCommand) return this.#list(i.Bucket);
    throw new Error(`MemoryS3 has no ${command.constructor.name}`);
  }

  #object(key: string) {
    const object = this.objects.get(key);
    if (!object) throw new S3Error("NotFound", 404);
    return object;
  }

  #upload(id: string): Upload {
    const upload = this.uploads.get(id);
    if (!upload) throw new S3Error("NoSuchUpload", 404);
    return upload;
  }

  #put(key: string, body: Buffer) {
    const etag = md5(Buffer.from(body));
    this.objects.set(key, { body: Buffer.from(body), etag });
    return { ETag: etag };
  }

  #get(i: Input) {
    const object = this.objects.get(i.Key);
    if (!object) throw new S3Error("NoSuchKey", 404);
    if (i.IfMatch && i.IfMatch !== object.etag) throw new S3Error("PreconditionFailed", 412);
    const [, from = "0", to] = /^bytes=(\d+)-(\d*)$/.exec(i.Range ?? "") ?? [];
    const body = object.body.subarray(Number(from), to ? Number(to) + 1 : undefined);
    const chunks: Buffer[] = [];
    for (let at = 0; at < body.length; at += CHUNK) chunks.push(body.subarray(at, at + CHUNK));
    return {
      Body: Readable.from(chunks),
      ETag: object.etag,
      ContentLength: object.body.length,
    };
  }

  #complete(i: Input) {
    const upload = this.#upload(i.UploadId);
    const listed = i.MultipartUpload.Parts;
    const bodies = listed.map((p, n) => {
      const stored = upload.parts.get(p.PartNumber);
      const ascending = n === 0 || p.PartNumber > (listed[n - 1]?.PartNumber ?? 0);
      if (!stored || stored.etag !== p.ETag || !ascending) throw new S3Error("InvalidPart", 400);
      return stored.body;
    });
    const digests = Buffer.concat(listed.map((p) => Buffer.from(p.ETag.slice(1, -1), "hex")));
    const etag = `"${createHash("md5").update(digests).digest("hex")}-${listed.length}"`;
    this.objects.set(i.Key, { body: Buffer.concat(bodies), etag });
    this.uploads.delete(i.UploadId);
    return { ETag: etag };
  }

  #parts(id: string) {
    // A server without ListParts reads the request as a GET of the object: NoSuchKey.
    if (!this.#listParts) throw new S3Error("NoSuchKey", 404);
    const upload = this.#upload(id);
    const parts = [...upload.parts].map(([PartNumber, p]) => ({ PartNumber, ETag: p.etag }));
    return { Parts: parts, IsTruncated: false };
  }

  #list(bucket: string) {
    const uploads = [...this.uploads].map(([UploadId, u]) => ({
      Key: u.key,
      UploadId,
      Initiated: u.initiated,
    }));
    return { Bucket: bucket, Uploads: uploads, IsTruncated: false };
  }
}
