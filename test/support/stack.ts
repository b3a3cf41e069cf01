import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { type RedisServer, startRedisServer } from "../../dev/redisServer.ts";
import { type Config, loadConfig } from "../../shared/config.ts";
import { createS3Client } from "../../shared/s3Client.ts";
import { openUploads } from "../../worker/upload/multipartUploads.ts";
import { startRgw } from "./rgw.ts";
import { type S3Proxy, startS3Proxy } from "./s3Proxy.ts";
import { type FauxS3Store, startS3Server } from "./s3Server.ts";

// A real Redis and a real S3 implementation for one test file, and the environment that points
// the product at them. The S3 side is chosen by S3CSV_TEST_S3:
//   (unset)    the fauxqs emulator, in process: a test can look inside its store;
//   rgw        Ceph's RADOS Gateway, a throw-away single-node cluster of this file's own;
//   endpoint   any S3 endpoint: S3CSV_TEST_S3_ENDPOINT, credentials from AWS_ACCESS_KEY_ID and
//              AWS_SECRET_ACCESS_KEY, the bucket S3CSV_TEST_BUCKET (created when missing).
// RGW and a user's endpoint are reached through a proxy that gives tests the same hooks and
// request log as the emulator.

export const S3_BACKEND = process.env.S3CSV_TEST_S3 ?? "emulator";
export const BUCKET = process.env.S3CSV_TEST_BUCKET ?? "s3csv-test";
const PUT_LIMIT = 8 * 1024 * 1024;

export interface Stack {
  redis: RedisServer;
  /** The S3 side's request log and hooks (and, on the emulator, its store). */
  s3Server: S3Proxy & { store?: FauxS3Store };
  s3: S3Client;
  env: NodeJS.ProcessEnv;
  config: Config;
  put(key: string, body: string | Buffer): Promise<void>;
  get(key: string): Promise<Buffer>;
  /** The multipart uploads open in the test bucket. */
  openUploads(): Promise<Array<{ key: string; uploadId: string }>>;
  stop(): Promise<void>;
}

interface S3Side {
  server: Stack["s3Server"];
  credentials: { accessKeyId: string; secretAccessKey: string };
  openUploads(s3: S3Client): Promise<Array<{ key: string; uploadId: string }>>;
  stop(): Promise<void>;
}

async function listedUploads(s3: S3Client) {
  const open: Array<{ key: string; uploadId: string }> = [];
  for await (const u of openUploads(s3, BUCKET)) {
    open.push({ key: u.Key ?? "", uploadId: u.UploadId ?? "" });
  }
  return open;
}

async function startS3Side(
  dir: string,
  options: { listMultipartUploads?: boolean },
): Promise<S3Side> {
  if (S3_BACKEND === "emulator") {
    const server = await startS3Server([BUCKET], options);
    return {
      server,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      openUploads: async () =>
        [...server.store.multipartUploads.values()]
          .filter((u) => u.bucket === BUCKET)
          .map((u) => ({ key: u.key, uploadId: u.uploadId })),
      stop: () => server.stop(),
    };
  }
  if (S3_BACKEND === "rgw") {
    // Its ports are picked free before the daemons bind them: another file's cluster may take
    // one meanwhile, so a start that fails is tried again.
    const rgw = await startRgw({ dir }).catch(() => startRgw({ dir }));
    const server = await startS3Proxy(rgw.endpoint);
    return {
      server,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      openUploads: listedUploads,
      stop: async () => {
        await server.stop();
        await rgw.stop();
      },
    };
  }
  if (S3_BACKEND === "endpoint") {
    const endpoint = process.env.S3CSV_TEST_S3_ENDPOINT;
    const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = process.env;
    if (!endpoint || !accessKeyId || !secretAccessKey) {
      throw new Error(
        "S3CSV_TEST_S3=endpoint needs S3CSV_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
      );
    }
    if (new URL(endpoint).protocol !== "http:") {
      throw new Error(
        "S3CSV_TEST_S3_ENDPOINT must be http:// (the tests' proxy forwards plain HTTP)",
      );
    }
    const server = await startS3Proxy(endpoint);
    return {
      server,
      credentials: { accessKeyId, secretAccessKey },
      openUploads: listedUploads,
      stop: () => server.stop(),
    };
  }
  throw new Error(`S3CSV_TEST_S3=${S3_BACKEND}: use rgw or endpoint (or leave it unset)`);
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
  const side = await startS3Side(dir, s3Options);
  const s3Server = side.server;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    REDIS_URL: redis.url,
    S3_ENDPOINT: s3Server.endpoint,
    AWS_ACCESS_KEY_ID: side.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: side.credentials.secretAccessKey,
    AWS_REGION: "us-east-1",
    LOG_LEVEL: "warn",
    LOCK_DURATION_MS: "3000",
    STALLED_INTERVAL_MS: "1000",
    JOB_BACKOFF_MS: "200",
    ...overrides,
  };
  const config = loadConfig(env);
  const s3 = createS3Client(config, { credentials: side.credentials });
  if (S3_BACKEND !== "emulator") {
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET })).catch((error: unknown) => {
      const name = (error as { name?: string }).name;
      if (name !== "BucketAlreadyOwnedByYou" && name !== "BucketAlreadyExists") throw error;
    });
  }
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
    openUploads: () => side.openUploads(s3),
    async stop() {
      s3.destroy();
      await side.stop();
      // A test may have restarted Redis: stop the server the stack has now.
      await stack.redis.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
