import type { S3Client } from "@aws-sdk/client-s3";
import { Queue, Worker } from "bullmq";
import type { Cluster, Redis } from "ioredis";
import type { Config } from "../../shared/config.ts";
import { CONTRACT_VERSION, type JobResult } from "../../shared/job.ts";
import type { Logger } from "../../shared/logger.ts";
import { redisClient, redisConnection } from "../../shared/redis.ts";
import { createS3Client, sdkLogger } from "../../shared/s3Client.ts";
import { workerName } from "../../shared/workerCensus.ts";
import { builtInTransforms } from "../judge/transforms/builtIns.ts";
import type { TransformRegistry } from "../judge/transforms/registry.ts";
import { type PartPool, workerPartPool } from "../upload/partPool.ts";
import { createProcessor } from "./processor.ts";
import { createWorkerMetrics, serveWorkerMetrics } from "./workerMetrics.ts";

export interface RunningWorker {
  worker: Worker<unknown, JobResult>;
  /**
   * Stops taking jobs; active jobs finish their parts in flight, checkpoint and go back to the
   * queue. Waits up to `graceMs` for that, then closes connections.
   */
  close(graceMs?: number): Promise<void>;
}

export async function startWorker(
  config: Config,
  log: Logger,
  transforms: TransformRegistry = builtInTransforms,
): Promise<RunningWorker> {
  const connection = redisConnection(config);
  const s3 = workerS3Client(config, log);
  const redis = redisClient(connection);
  // ioredis reconnects by itself; without a listener it would print each error as unhandled.
  redis.on("error", (err: Error) => log.warn({ err: err.message }, "redis connection error"));
  const shutdown = new AbortController();
  // A split job's parent adds its shards to the queue it is in.
  const queue = new Queue(config.QUEUE_NAME, { connection, prefix: config.QUEUE_PREFIX });
  const partPool = workerPartPool(config);
  const { metrics, metricsServer } = await startMetrics(config, partPool, redis);
  const worker = new Worker<unknown, JobResult>(
    config.QUEUE_NAME,
    createProcessor({
      s3,
      redis,
      config,
      log,
      shutdown: shutdown.signal,
      transforms,
      queue,
      partPool,
      ...(metrics ? { metrics } : {}),
    }),
    {
      connection,
      prefix: config.QUEUE_PREFIX,
      // Announces this worker's job contract: "auto" splits only when every worker has split jobs.
      name: workerName(CONTRACT_VERSION),
      concurrency: config.WORKER_CONCURRENCY,
      // A crashed worker's job comes back after lockDuration; it fails only after
      // maxStalledCount stalls, so a job survives several crashes in a row.
      lockDuration: config.LOCK_DURATION_MS,
      stalledInterval: config.STALLED_INTERVAL_MS,
      maxStalledCount: config.MAX_STALLED_COUNT,
    },
  );
  worker.on("error", (err) => log.error({ err }, "worker error"));
  worker.on("failed", (job, err) =>
    log.warn({ jobId: job?.id, err: err.message, attemptsMade: job?.attemptsMade }, "job failed"),
  );
  await worker.waitUntilReady();
  log.info(
    {
      queue: config.QUEUE_NAME,
      concurrency: config.WORKER_CONCURRENCY,
      partSize: config.PART_SIZE,
      transforms: [...transforms.keys()],
    },
    "worker started",
  );
  return {
    worker,
    async close(graceMs = 30_000) {
      shutdown.abort();
      const timer = new Promise<"timeout">((resolve) =>
        setTimeout(resolve, graceMs, "timeout").unref(),
      );
      // worker.close() waits for active jobs without a limit; a job cut off here resumes elsewhere.
      if ((await Promise.race([worker.close(), timer])) === "timeout") await worker.close(true);
      // Jobs cut off by a forced close may still end: what they give back is not kept.
      partPool.close();
      s3.destroy();
      await queue.close().catch(() => {});
      redis.disconnect();
      metricsServer?.close();
    },
  };
}

/** The worker's S3 client: the SDK's own warnings go to its log, once each, not to stdout. */
function workerS3Client(config: Config, log: Logger): S3Client {
  return createS3Client(config, {
    logger: sdkLogger((message) => log.warn({ sdk: message }, "AWS SDK warning")),
  });
}

/** The worker's metrics and their server on WORKER_METRICS_PORT, when one is set. */
async function startMetrics(config: Config, partPool: PartPool, redis: Redis | Cluster) {
  if (config.WORKER_METRICS_PORT === undefined) return {};
  const metrics = createWorkerMetrics(() => partPool.size);
  const metricsServer = await serveWorkerMetrics(config.WORKER_METRICS_PORT, metrics, redis);
  return { metrics, metricsServer };
}
