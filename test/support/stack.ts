import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { type RedisServer, startRedisServer } from "../../dev/redisServer.ts";
import { type Config, loadConfig } from "../../shared/config.ts";
import { createS3Client } from "../../shared/s3Client.ts";
import { startS3Server, type TestS3Server } from "./s3Server.ts";

// A real Redis and a real S3-compatible server for one test file, and the environment that
// points the product at them.

export const BUCKET = "s3csv-test";
const PUT_LIMIT = 8 * 1024 * 1024;

export interface Stack {
  redis: RedisServer;
  s3Server: TestS3Server;
  s3: S3Client;
  env: NodeJS.ProcessEnv;
  config: Config;
  put(key: string, body: string | Buffer): Promise<void>;
  get(key: string): Promise<Buffer>;
  stop(): Promise<void>;
}

export async function startStack(
  overrides: NodeJS.ProcessEnv = {},
  options: { listMultipartUploads?: boolean; redisPassword?: string } = {},
): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), "s3csv-test-"));
  const { redisPassword, ...s3Options } = options;
  const redis = await startRedisServer({
    dir,
    ...(redisPassword ? { password: redisPassword } : {}),
  });
  const s3Server = await startS3Server([BUCKET], s3Options);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    REDIS_URL: redis.url,
    S3_ENDPOINT: s3Server.endpoint,
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    AWS_REGION: "us-east-1",
    LOG_LEVEL: "warn",
    LOCK_DURATION_MS: "3000",
    STALLED_INTERVAL_MS: "1000",
    JOB_BACKOFF_MS: "200",
    ...overrides,
  };
  const config = loadConfig(env);
  const s3 = createS3Client(config, {
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const stack: Stack = {
    redis,
    s3Server,
    s3,
    env,
    config,
    async put(key, body) {
      const bytes = Buffer.from(body);
      if (bytes.length <= PUT_LIMIT) {
        await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes }));
        return;
      }
      // The emulator caps request bodies at 11 MiB: larger test sources go up in parts.
      const { UploadId } = await s3.send(
        new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }),
      );
      const parts = [];
      for (let at = 0, n = 1; at < bytes.length; at += PUT_LIMIT, n++) {
        const body = bytes.subarray(at, at + PUT_LIMIT);
        const { ETag } = await s3.send(
          new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: n, Body: body }),
        );
        parts.push({ PartNumber: n, ETag });
      }
      await s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
    },
    async get(key) {
      const response = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      return Buffer.from(
        await (
          response.Body as { transformToByteArray(): Promise<Uint8Array> }
        ).transformToByteArray(),
      );
    },
    async stop() {
      s3.destroy();
      await s3Server.stop();
      // A test may have restarted Redis: stop the server the stack has now.
      await stack.redis.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
