import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { parseCommandLine, positiveSeconds, SECONDS } from "../../shared/commandLine.ts";
import { loadConfig } from "../../shared/config.ts";
import { createLogger } from "../../shared/logger.ts";
import { serveProbes } from "../../shared/probeServer.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { redisClient, redisConnection } from "../../shared/redis.ts";
import { assertRedisReachable } from "../../shared/redisReachable.ts";
import { createS3Client } from "../../shared/s3Client.ts";
import { UsageError } from "../../shared/usageError.ts";
import { JUDGING_TAKES, jobTemplate } from "../cli.ts";
import { queueSettings, transformQueue } from "../enqueue.ts";
import { Watcher } from "./watcher.ts";
import { createWatchMetrics } from "./watchMetrics.ts";
import { checkPlan, type WatchPlan } from "./watchPlan.ts";
import { WatchState } from "./watchState.ts";

export const usage = `s3csv watch --source-prefix s3://BUCKET/PREFIX --dest-template 's3://BUCKET/out/{name}'
            (--schema FILE | --transform NAME) [--options JSON] [--rejects-template T]
            [--interval SECONDS] [--sqs QUEUE_URL] [--since now] [--metrics-port N]

Runs beside the workers and makes one job of every object version that lands under the prefix:
a new object, or an overwrite with new content, once, whatever happens (events delivered twice,
a watcher killed and restarted, two watchers at once). It lists the prefix every --interval
(default 60) seconds, keeping what it has enqueued in Redis, so a restart misses and repeats
nothing; with --sqs it takes S3 event notifications from that SQS queue instead (and lists once
at start, for what arrived while no watcher ran). On its first start it takes the objects
already there, unless --since now. Templates fill {key}, {path}, {name} and {stem}, as enqueue's.
--metrics-port (or WATCH_METRICS_PORT) serves /healthz, /readyz and Prometheus /metrics.
SIGTERM stops it.`;

/** Listing every minute unless --interval says otherwise. */
const DEFAULT_INTERVAL_MS = 60_000;

/** What watch's flags that take numbers take, said when a value is wrong. */
const WATCH_TAKES = {
  ...JUDGING_TAKES,
  interval: SECONDS,
  "metrics-port": "a port number, 0 to 65535",
} as const;

/** What the command line asks of a watch, checked before anything is contacted. */
interface WatchRequest {
  plan: WatchPlan;
  /** Milliseconds between listings; undefined when --interval was not given. */
  intervalMs: number | undefined;
  sinceNow: boolean;
  sqsUrl: string | undefined;
  metricsPort: number | undefined;
}

async function parseWatchArgs(argv: string[]): Promise<WatchRequest> {
  const { values: v } = parseCommandLine(
    {
      args: argv,
      strict: true,
      options: {
        "source-prefix": { type: "string" },
        "dest-template": { type: "string" },
        "rejects-template": { type: "string" },
        schema: { type: "string" },
        transform: { type: "string" },
        options: { type: "string" },
        "on-invalid": { type: "string" },
        "max-invalid": { type: "string" },
        delimiter: { type: "string" },
        interval: { type: "string" },
        sqs: { type: "string" },
        since: { type: "string" },
        "metrics-port": { type: "string" },
      },
    },
    WATCH_TAKES,
  );
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(v["source-prefix"] ?? "");
  if (!match) throw new UsageError("--source-prefix s3://BUCKET/PREFIX is required");
  if (!v["dest-template"])
    throw new UsageError("--dest-template 's3://BUCKET/out/{name}' is required");
  if (v.since !== undefined && v.since !== "now") throw new UsageError('--since takes "now" only');
  const seconds = v.interval === undefined ? undefined : positiveSeconds("interval", v.interval);
  const port = v["metrics-port"] ?? process.env.WATCH_METRICS_PORT;
  const metricsPort = port === undefined ? undefined : Number(port);
  if (
    metricsPort !== undefined &&
    !(Number.isInteger(metricsPort) && metricsPort >= 0 && metricsPort < 65536)
  )
    throw new UsageError(
      "--metrics-port (or WATCH_METRICS_PORT) must be a port number, 0 to 65535",
    );
  const plan: WatchPlan = {
    bucket: match[1] as string,
    prefix: match[2] as string,
    destTemplate: v["dest-template"],
    rejectsTemplate: v["rejects-template"],
    template: await jobTemplate(v),
  };
  checkPlan(plan);
  return {
    plan,
    intervalMs: seconds === undefined ? undefined : seconds * 1000,
    sinceNow: v.since === "now",
    sqsUrl: v.sqs,
    metricsPort,
  };
}

export async function watchCommand(argv: string[]): Promise<void> {
  const { plan, intervalMs, sinceNow, sqsUrl, metricsPort } = await parseWatchArgs(argv);
  const config = loadConfig();
  await assertRedisReachable(config);
  const s3 = createS3Client(config);
  const sqs = sqsUrl
    ? new SQSClient({
        region: config.AWS_REGION,
        ...(config.S3_ENDPOINT ? { endpoint: config.S3_ENDPOINT } : {}),
      })
    : undefined;
  await reachable(plan, s3, sqs, sqsUrl);
  const log = createLogger(config, "s3csv-watch");
  const connection = redisConnection(config);
  const redis = redisClient(connection);
  redis.on("error", (err: Error) => log.warn({ err: err.message }, "redis connection error"));
  const queue = transformQueue(queueSettings(config));
  const state = new WatchState(
    redis,
    queueKeys(config.QUEUE_PREFIX, config.QUEUE_NAME),
    plan.bucket,
    plan.prefix,
  );
  const metrics = createWatchMetrics();
  const probes =
    metricsPort === undefined ? undefined : await serveProbes(metricsPort, metrics.registry, redis);
  const watcher = new Watcher({ s3, queue, state, plan, log, metrics });

  const stop = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => stop.abort());
  const where = `s3://${plan.bucket}/${plan.prefix}`;
  try {
    // Records of 0.3.0 join the key order, so that listings find those of deleted objects.
    await state.indexKeys();
    if (!(await state.started())) {
      if (sinceNow) {
        const recorded = await watcher.baseline(stop.signal);
        log.info({ where, recorded }, "first start, --since now: what is there now is left alone");
      }
      await state.markStarted();
    }
    log.info({ where, intervalMs, sqs: sqsUrl }, "watching");
    if (sqs && sqsUrl) {
      // What arrived while no watcher ran, then the events.
      await watcher.scanOnce(stop.signal);
      await Promise.all([
        watcher.consumeQueue(sqs, sqsUrl, stop.signal),
        intervalMs === undefined ? undefined : watcher.pollListing(intervalMs, stop.signal),
      ]);
    } else {
      await watcher.pollListing(intervalMs ?? DEFAULT_INTERVAL_MS, stop.signal);
    }
  } finally {
    log.info({ where }, "stopped");
    probes?.close();
    await queue.close();
    redis.disconnect();
    s3.destroy();
    sqs?.destroy();
  }
}

/** The bucket (and the queue) answer, or the watch refuses to start, saying which. */
async function reachable(
  plan: WatchPlan,
  s3: ReturnType<typeof createS3Client>,
  sqs: SQSClient | undefined,
  queueUrl: string | undefined,
): Promise<void> {
  try {
    await s3.send(
      new ListObjectsV2Command({ Bucket: plan.bucket, Prefix: plan.prefix, MaxKeys: 1 }),
    );
  } catch (error) {
    throw new UsageError(
      `cannot list s3://${plan.bucket}/${plan.prefix}: ${(error as Error).name}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
  if (!sqs || !queueUrl) return;
  try {
    await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }),
    );
  } catch (error) {
    throw new UsageError(
      `cannot reach the SQS queue ${queueUrl}: ${(error as Error).name}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
}
