import {
  S3Client,
  type S3ClientConfig,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from "@aws-sdk/client-s3";
import type { FinalizeRequestMiddleware } from "@smithy/types";
import type { Config } from "./config.ts";

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
    ...overrides,
  });
  unsignedPayloadOverTls(s3);
  return s3;
}

/**
 * A request that carries a checksum of its body, over HTTPS, is signed without hashing the body
 * into the signature (SigV4's UNSIGNED-PAYLOAD): TLS keeps the bytes from being changed on the
 * way, and S3 checks the checksum (the CRC32 each part gets with S3_CHECKSUMS=when_supported)
 * against what arrived. The AWS SDK otherwise hashes every Buffer body, a SHA-256 pass over
 * every byte uploaded (about 65 ms per 100 MB on this project's machines); botocore (the AWS CLI)
 * signs S3 uploads the same way under the same two conditions. Over plain HTTP, or without a
 * checksum, the signature still covers the body.
 */
function unsignedPayloadOverTls(s3: S3Client): void {
  const middleware: FinalizeRequestMiddleware<ServiceInputTypes, ServiceOutputTypes> =
    (next) => async (args) => {
      const request = args.request as {
        protocol?: string;
        headers?: Record<string, string>;
        body?: unknown;
      };
      const headers = request.headers ?? {};
      // A body's checksum: x-amz-checksum-<algorithm> or Content-MD5 (x-amz-checksum-mode asks
      // for the response's, and a request without a body has nothing to hash).
      const checksummed = Object.keys(headers).some((name) => {
        const lower = name.toLowerCase();
        return (
          (lower.startsWith("x-amz-checksum-") && lower !== "x-amz-checksum-mode") ||
          lower === "content-md5"
        );
      });
      if (request.protocol === "https:" && request.body != null && checksummed) {
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      }
      return next(args);
    };
  s3.middlewareStack.addRelativeTo(middleware, {
    relation: "before",
    toMiddleware: "httpSigningMiddleware",
    name: "s3csvUnsignedPayloadOverTls",
  });
}
