import { buildApp } from "fauxqs";

// The S3-compatible server of the integration tests: fauxqs, built with a store of our own so a
// test can look inside it (open multipart uploads, their parts). It enforces S3's multipart
// rules (InvalidPart, EntityTooSmall, NoSuchUpload), If-Match and ranged GETs.

interface StoredUpload {
  uploadId: string;
  bucket: string;
  key: string;
  parts: Map<number, { body: Buffer; etag: string }>;
  initiated: Date;
}
export interface FauxS3Store {
  multipartUploads: Map<string, StoredUpload>;
  buckets: Map<string, Map<string, { body: Buffer; etag: string }>>;
  createBucket(name: string): void;
}

export interface SeenRequest {
  method: string;
  url: string;
  query: Record<string, string>;
  /** The Range header of a GET. */
  range?: string;
  /** For CompleteMultipartUpload: the part numbers it listed. */
  completedParts?: number[];
}

export type Fault = { status: number; code: string } | "reset";

export interface TestS3Server {
  endpoint: string;
  store: FauxS3Store;
  /** Every request the server saw, in arrival order. */
  requests: SeenRequest[];
  /**
   * Runs before a request is handled; a test can hold a request here (its promise waits), or
   * inject a fault: an S3 error response, or a connection reset.
   */
  beforeRequest?: (request: SeenRequest) => Promise<unknown> | Fault | undefined;
  /** Runs after a request was handled and before its response is sent. */
  beforeResponse?: (request: SeenRequest, statusCode: number) => Promise<void> | void;
  stop(): Promise<void>;
}

/** A request that uploads a part of `key` (part `from` or a later one, when given). */
export function isPartUpload(r: SeenRequest, key: string, from?: number): boolean {
  return (
    r.method === "PUT" &&
    r.query.uploadId !== undefined &&
    r.url.includes(`/${key}?`) &&
    (from === undefined || Number(r.query.partNumber) >= from)
  );
}

async function fauxqsModule<T>(path: string): Promise<T> {
  // The package exports only its entry point; its stores live beside it.
  return (await import(
    new URL(`../../node_modules/fauxqs/dist/${path}`, import.meta.url).href
  )) as T;
}

function xml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/**
 * ListMultipartUploads over the emulator's own store: the npm fauxqs (2.4.1) has no such route,
 * and the sweeper needs one. Real S3, MinIO and Ceph have it. Answers in one page.
 */
function listMultipartUploads(store: FauxS3Store, bucket: string): string {
  const uploads = [...store.multipartUploads.values()]
    .filter((u) => u.bucket === bucket)
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map(
      (u) =>
        `<Upload><Key>${xml(u.key)}</Key><UploadId>${u.uploadId}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`,
    );
  return `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${xml(bucket)}</Bucket><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${uploads.join("")}</ListMultipartUploadsResult>`;
}

export async function startS3Server(
  buckets: string[] = [],
  options: { listMultipartUploads?: boolean } = {},
): Promise<TestS3Server> {
  const { S3Store } = await fauxqsModule<{ S3Store: new () => FauxS3Store }>("s3/s3Store.js");
  const { SqsStore } = await fauxqsModule<{ SqsStore: new () => unknown }>("sqs/sqsStore.js");
  const { SnsStore } = await fauxqsModule<{ SnsStore: new () => unknown }>("sns/snsStore.js");
  const store = new S3Store();
  for (const bucket of buckets) store.createBucket(bucket);
  const app = buildApp({
    logger: false,
    stores: { s3Store: store, sqsStore: new SqsStore(), snsStore: new SnsStore() } as never,
  });
  if (options.listMultipartUploads) {
    app.addHook("onRequest", async (request, reply) => {
      const match = /^\/([^/?]+)\/?\?(?:.*&)?uploads(?:[=&]|$)/.exec(request.url);
      if (request.method !== "GET" || !match) return;
      return reply
        .header("content-type", "application/xml")
        .send(listMultipartUploads(store, match[1] as string));
    });
  }
  const seen = new WeakMap<object, SeenRequest>();
  const server: TestS3Server = {
    endpoint: "",
    store,
    requests: [],
    stop: () => app.close(),
  };
  app.addHook("preHandler", async (request, reply) => {
    const entry: SeenRequest = {
      method: request.method,
      url: request.url,
      query: { ...(request.query as Record<string, string>) },
      ...(typeof request.headers.range === "string" ? { range: request.headers.range } : {}),
    };
    if (request.method === "POST" && entry.query.uploadId && Buffer.isBuffer(request.body)) {
      const xml = request.body.toString("utf8");
      entry.completedParts = [...xml.matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) =>
        Number(m[1]),
      );
    }
    seen.set(request, entry);
    server.requests.push(entry);
    const fault = (await server.beforeRequest?.(entry)) as Fault | undefined;
    if (fault === "reset") {
      reply.hijack();
      request.raw.socket.destroy();
      return reply;
    }
    if (fault) {
      return reply
        .code(fault.status)
        .header("content-type", "application/xml")
        .send(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected by the test</Message></Error>`,
        );
    }
  });
  app.addHook("onSend", async (request, reply) => {
    const entry = seen.get(request);
    if (entry) await server.beforeResponse?.(entry, reply.statusCode);
  });
  server.endpoint = await app.listen({ port: 0, host: "127.0.0.1" });
  return server;
}
