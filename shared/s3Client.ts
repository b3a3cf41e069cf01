import { format } from "node:util";
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { oneLine } from "./commandLine.ts";
import type { Config } from "./config.ts";

/** What the SDK's logger is given: its Logger, which the client's config takes. */
type SdkLogger = NonNullable<S3ClientConfig["logger"]>;

const ignore = (): void => {};

/**
 * The line the SDK prints before the error of a failed upload of a stream: the error itself is
 * what s3csv reports, in its one line (`s3csv put` to a missing bucket).
 */
const STREAMING_FAILURE = "An error was encountered in a non-retryable streaming request.";
/** Distinct warnings passed on per client; past this many, new ones are dropped (bounded). */
const WARNINGS_KEPT = 100;

const toStderr = (message: string): void => {
  process.stderr.write(`AWS SDK: ${message}\n`);
};

/**
 * A logger for the SDK. Its warnings (several credential sources, a checksum it could not
 * check) go to `warn` as one line each, once per client, but for STREAMING_FAILURE; given no
 * logger, the SDK would print them all on the console itself. Its info and error records (one
 * per request, with the request's input) were never shown, and are not now.
 */
export function sdkLogger(warn: (message: string) => void = toStderr): SdkLogger {
  const said = new Set<string>();
  return {
    trace: ignore,
    debug: ignore,
    info: ignore,
    warn: (...content: unknown[]) => {
      const message = oneLine(format(...content));
      if (message.startsWith(STREAMING_FAILURE) || said.has(message)) return;
      if (said.size >= WARNINGS_KEPT) return;
      said.add(message);
      warn(message);
    },
    error: ignore,
  };
}

/**
 * The S3 client of every command and worker. The SDK's warnings go to stderr (sdkLogger), or
 * where `overrides.logger` takes them (the worker's log).
 */
export function createS3Client(config: Config, overrides: S3ClientConfig = {}): S3Client {
  const checksums = config.S3_CHECKSUMS === "when_supported" ? "WHEN_SUPPORTED" : "WHEN_REQUIRED";
  const s3 = new S3Client({
    region: config.AWS_REGION,
    // A custom endpoint (MinIO, Ceph, R2, the embedded server) is addressed path-style.
    ...(config.S3_ENDPOINT ? { endpoint: config.S3_ENDPOINT, forcePathStyle: true } : {}),
    requestChecksumCalculation: checksums,
    responseChecksumValidation: checksums,
    maxAttempts: config.S3_MAX_ATTEMPTS,
    // No whole-request timeout (a large GET streams for minutes); an idle socket is a stall.
    requestHandler: { connectionTimeout: 10_000, socketTimeout: config.S3_IDLE_TIMEOUT_MS },
    logger: sdkLogger(),
    ...overrides,
  });
  const unsignedPayload =
    <Args extends { request: unknown }, Output>(
      next: (args: Args) => Promise<Output>,
      context: { commandName?: string },
    ) =>
    (args: Args): Promise<Output> => {
      const request = args.request as RequestShape;
      if (UPLOADS.has(context.commandName ?? "") && sendsUnsigned(request)) {
        request.headers[CONTENT_SHA256] = "UNSIGNED-PAYLOAD";
      }
      return next(args);
    };
  s3.middlewareStack.addRelativeTo(unsignedPayload as FinalizeMiddleware, {
    relation: "before",
    toMiddleware: "httpSigningMiddleware",
    name: "unsignedPayloadOverTls",
  });
  return s3;
}

type FinalizeMiddleware = Parameters<S3Client["middlewareStack"]["addRelativeTo"]>[0];

export interface RequestShape {
  protocol?: string;
  headers: Record<string, string>;
  body?: unknown;
}

const CONTENT_SHA256 = "x-amz-content-sha256";

/**
 * The requests whose checksum header is their body's: CompleteMultipartUpload's names the whole
 * object's, not its XML body's, which stays signed.
 */
const UPLOADS = new Set(["PutObjectCommand", "UploadPartCommand"]);

/**
 * Whether a request's body goes UNSIGNED-PAYLOAD, as the AWS CLI and boto3 send uploads: over
 * HTTPS, with a checksum header the server verifies. TLS keeps the body intact on the way and
 * the checksum proves it whole, where the signature would hash every byte again with SHA-256
 * (63 ms of CPU per 100 MB a worker writes, measured). Over plain HTTP (a local emulator) the
 * body stays signed: nothing else protects it there.
 */
export function sendsUnsigned(request: RequestShape): boolean {
  if (request.protocol !== "https:" || request.body == null) return false;
  if (request.headers[CONTENT_SHA256] !== undefined) return false;
  return Object.keys(request.headers).some((name) => CHECKSUM_VALUE.test(name));
}

/**
 * A header that carries the body's checksum, which the server verifies: not those that only
 * name an algorithm, a type or a mode (`x-amz-checksum-algorithm`, `-type`, `-mode`).
 */
const CHECKSUM_VALUE = /^(?:x-amz-checksum-(?:crc32|crc32c|crc64nvme|sha1|sha256)|content-md5)$/i;
