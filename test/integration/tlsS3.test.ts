import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { Agent } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../dev/redisServer.ts";
import { queueSettings, transformQueue } from "../../producer/enqueue.ts";
import { loadConfig } from "../../shared/config.ts";
import type { JobResult } from "../../shared/job.ts";
import { createS3Client } from "../../shared/s3Client.ts";
import { peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { type RgwServer, startRgw } from "../support/rgw.ts";
import { BUCKET, S3_BACKEND } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { job, rejectsKeyOf, run } from "./helpers.ts";

// S3 over HTTPS, as on AWS: Ceph RGW behind a self-signed certificate that the worker trusts
// through NODE_EXTRA_CA_CERTS, as a user with a private CA would. There a part goes with its
// CRC32 and `UNSIGNED-PAYLOAD` instead of a SHA-256 of its body (shared/s3Client.ts), which only
// a real server can accept or refuse; radosgw's log says what each request carried.

const MiB = 1024 * 1024;

interface LoggedRequest {
  method?: string;
  contentSha256?: string;
  crc32: boolean;
}

/**
 * The requests radosgw logged after `from` (a byte offset in its log): at debug 20 it writes
 * each request's environment, one `KEY=VALUE` line each, from the thread that serves it; the
 * first line of another kind from that thread ends the request's block.
 */
async function requestsLogged(log: string, from: number): Promise<LoggedRequest[]> {
  const text = (await readFile(log)).subarray(from).toString("utf8");
  const requests: LoggedRequest[] = [];
  const open = new Map<string, LoggedRequest>();
  for (const line of text.split("\n")) {
    const m = /^\S+ (\S+) +(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const [, thread = "", level, rest = ""] = m;
    const env = level === "20" ? /^([A-Z0-9_]+)=(.*)$/.exec(rest) : null;
    if (!env) {
      open.delete(thread);
      continue;
    }
    let request = open.get(thread);
    if (!request) {
      request = { crc32: false };
      open.set(thread, request);
      requests.push(request);
    }
    const [, key, value] = env;
    if (key === "REQUEST_METHOD") request.method = value;
    if (key === "HTTP_X_AMZ_CONTENT_SHA256") request.contentSha256 = value;
    if (key === "HTTP_X_AMZ_CHECKSUM_CRC32") request.crc32 = true;
  }
  return requests.filter((r) => r.method !== undefined);
}

describe.runIf(S3_BACKEND === "rgw")("S3 over HTTPS (Ceph RGW, a self-signed certificate)", () => {
  let dir: string;
  let rgw: RgwServer;
  let redis: RedisServer;
  let s3: S3Client;
  let queue: Queue<unknown, JobResult>;
  let env: NodeJS.ProcessEnv;
  let worker: WorkerProcess | undefined;
  const data = peopleData({ rows: 60_000, invalidEvery: 40, pad: 100 });
  const get = async (key: string) => {
    const { Body } = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from((await Body?.transformToByteArray()) ?? []);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "s3csv-tls-"));
    rgw = await startRgw({ dir, tls: true }).catch(() => startRgw({ dir, tls: true }));
    redis = await startRedisServer({ dir });
    env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      REDIS_URL: redis.url,
      S3_ENDPOINT: rgw.endpoint,
      AWS_ACCESS_KEY_ID: rgw.accessKeyId,
      AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
      AWS_REGION: rgw.region,
      LOG_LEVEL: "warn",
      PART_SIZE: String(5 * MiB),
      NODE_EXTRA_CA_CERTS: rgw.certificate,
    };
    const config = loadConfig(env);
    const ca = await readFile(rgw.certificate as string, "utf8");
    s3 = createS3Client(config, {
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      requestHandler: { httpsAgent: new Agent({ ca }) },
    });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "tls/in.csv", Body: data.csv }));
    queue = transformQueue(queueSettings(config));
  });
  afterAll(async () => {
    await worker?.kill();
    await queue?.close();
    s3?.destroy();
    await redis?.stop();
    await rgw?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("uploads every part UNSIGNED-PAYLOAD with its CRC32, and the output is the one the data gives", async () => {
    const from = (await stat(rgw.log)).size;
    worker = spawnWorker(env);
    const result = await run(queue, job("tls/in.csv", "tls/out.csv", peopleSchema));
    expect((await get("tls/out.csv")).equals(data.expectedOutput)).toBe(true);
    expect(result.parts).toBeGreaterThan(1);
    expect(rejectedRows(await get(rejectsKeyOf("tls/out.csv")))).toEqual(data.rejected);
    // The output's parts and the reject report: every body the worker sent went unsigned, with
    // its CRC32; the multipart uploads' POSTs (create, complete) stayed signed.
    const logged = await requestsLogged(rgw.log, from);
    const puts = logged.filter((r) => r.method === "PUT");
    const posts = logged.filter((r) => r.method === "POST");
    expect(puts.length).toBeGreaterThanOrEqual(result.parts + 1);
    for (const put of puts)
      expect(put).toEqual({ method: "PUT", contentSha256: "UNSIGNED-PAYLOAD", crc32: true });
    expect(posts.length).toBeGreaterThanOrEqual(2);
    for (const post of posts) expect(post.contentSha256).toMatch(/^[0-9a-f]{64}$/);
  });
});
