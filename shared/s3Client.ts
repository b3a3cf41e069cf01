import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import type { Config } from "./config.ts";

export function createS3Client(config: Config, overrides: S3ClientConfig = {}): S3Client {
  const checksums = config.S3_CHECKSUMS === "when_supported" ? "WHEN_SUPPORTED" : "WHEN_REQUIRED";
  return new S3Client({
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
}
