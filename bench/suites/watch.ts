import { DeleteObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { objectPagesUnder } from "../../producer/bulkSources.ts";
import { Watcher } from "../../producer/watch/watcher.ts";
import { createWatchMetrics } from "../../producer/watch/watchMetrics.ts";
import { WatchState } from "../../producer/watch/watchState.ts";
import { loadConfig } from "../../shared/config.ts";
import { createLogger } from "../../shared/logger.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { redisClient, redisConnection } from "../../shared/redis.ts";
import { benchSchema } from "../dataset.ts";
import { type Bench, BUCKET } from "../harness.ts";

// What one listing round of s3csv watch costs on a large prefix: --objects small objects under
// it, all enqueued before (the steady state: nothing new), then the same prefix with 1,000 new
// ones. Timed in this process, with the S3 requests the server counted and the heap it took.

export async function watchListing(bench: Bench, objects: number, runs: number) {
  const { out, say } = bench;
  const prefix = "watch-bench/";
  say(`putting ${objects} objects under s3://${BUCKET}/${prefix}`);
  const body = Buffer.from("id,name\n1,a\n");
  const put = (key: string) =>
    bench.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  for (let i = 0; i < objects; i += 64) {
    await Promise.all(
      Array.from({ length: Math.min(64, objects - i) }, (_, j) =>
        put(`${prefix}${String(i + j).padStart(7, "0")}.csv`),
      ),
    );
  }
  const config = loadConfig(bench.env);
  const redis = redisClient(redisConnection(config));
  const keys = queueKeys(config.QUEUE_PREFIX, config.QUEUE_NAME);
  const state = new WatchState(redis, keys, BUCKET, prefix);
  const plan = {
    bucket: BUCKET,
    prefix,
    destTemplate: `s3://${BUCKET}/watch-out/{path}`,
    template: { schema: benchSchema, options: {} },
  };
  const log = createLogger({ ...config, LOG_LEVEL: "warn" }, "bench-watch");
  const metrics = createWatchMetrics();
  const watcher = new Watcher({
    s3: bench.s3,
    queue: bench.queue,
    state,
    plan,
    log,
    metrics,
  });
  const listRequests = async () => (await bench.s3Counts()).ListObjectsV2 ?? 0;
  const headRequests = async () => (await bench.s3Counts()).HeadObject ?? 0;

  out(`\n### s3csv watch: one listing round over ${objects.toLocaleString("en")} objects\n`);
  const forgotten = async () => (await metrics.forgotten.get()).values[0]?.value ?? 0;
  const redisMb = async () =>
    (Number(/used_memory:(\d+)/.exec(await redis.info("memory"))?.[1]) / 1e6).toFixed(0);
  out(
    "| round | new objects | seconds | jobs added | records forgotten | S3 list requests | S3 head requests | heap MB after | Redis MB after |",
  );
  out("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const t0 = performance.now();
  await watcher.baseline();
  out(
    `| baseline (--since now) | 0 | ${((performance.now() - t0) / 1000).toFixed(2)} | 0 | 0 | | | ${(process.memoryUsage().heapUsed / 1e6).toFixed(0)} | ${await redisMb()} |`,
  );
  const round = async (name: string, fresh: number) => {
    const lists = await listRequests();
    const heads = await headRequests();
    const before = await forgotten();
    const started = performance.now();
    const { added } = await watcher.scan();
    const seconds = (performance.now() - started) / 1000;
    const used = (await listRequests()) - lists;
    out(
      `| ${name} | ${fresh} | ${seconds.toFixed(2)} | ${added} | ${(await forgotten()) - before} | ${used} | ${(await headRequests()) - heads} | ${(process.memoryUsage().heapUsed / 1e6).toFixed(0)} | ${await redisMb()} |`,
    );
  };
  // The listing alone, timed alike: what a round costs beyond it is the watch's own.
  for (let run = 1; run <= runs; run++) {
    const lists = await listRequests();
    const started = performance.now();
    for await (const _page of objectPagesUnder(bench.s3, BUCKET, prefix));
    out(
      `| listing alone ${run} | 0 | ${((performance.now() - started) / 1000).toFixed(2)} | | | ${(await listRequests()) - lists} | | | |`,
    );
  }
  for (let run = 1; run <= runs; run++) await round(`steady ${run}`, 0);
  const fresh = Array.from(
    { length: 1000 },
    (_, i) => `${prefix}new-${String(i).padStart(4, "0")}.csv`,
  );
  for (const key of fresh) await put(key);
  await round("with new objects", 1000);
  // Deleted: the next listing misses them, asks S3 of each and forgets them.
  for (const key of fresh)
    await bench.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  await round("1,000 deleted", 0);
  redis.disconnect();
}
