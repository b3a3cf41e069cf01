import { mkdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { startFauxqs } from "fauxqs";
import { enqueueTransform, queueSettings, transformQueue } from "../producer/enqueue.ts";
import { progressWriter } from "../producer/progressBar.ts";
import { waitForResult } from "../producer/waitForResult.ts";
import { parseCommandLine } from "../shared/commandLine.ts";
import { type Config, loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { packageRoot } from "../shared/packageRoot.ts";
import { createS3Client } from "../shared/s3Client.ts";
import { workerTransforms } from "../worker/runtime/cli.ts";
import { startWorker } from "../worker/runtime/worker.ts";
import { startRedisServer } from "./redisServer.ts";

export const usage = `s3csv dev [--dir DIR] [--once] [--transforms MODULE]...

Runs everything on this machine with no configuration: a private redis-server (unless
REDIS_URL is set), an embedded S3-compatible server keeping its objects in DIR (default
.s3csv-dev; unless S3_ENDPOINT is set), and a worker (with your --transforms modules, as
s3csv worker takes them). It uploads a sample CSV with a few invalid rows, enqueues it, waits,
and prints where the output and the reject report are. It keeps running so that you can put
your own files (s3csv put) and enqueue more; --once exits after the sample job. The worker logs
only errors here (LOG_LEVEL=info for more): each job's outcome is what enqueue --wait prints.`;

const BUCKET = "s3csv-dev";
const EXAMPLES = pathToFileURL(join(packageRoot(), "examples/"));

export async function devCommand(argv: string[]): Promise<void> {
  const { values } = parseCommandLine({
    args: argv,
    options: {
      dir: { type: "string", default: ".s3csv-dev" },
      once: { type: "boolean", default: false },
      transforms: { type: "string", multiple: true },
    },
  });
  // Loaded first: a module that cannot be is a mistake to hear about before anything starts.
  const transforms = await workerTransforms(values.transforms ?? []);
  const dir = resolve(values.dir);
  await mkdir(dir, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    AWS_ACCESS_KEY_ID: "s3csv-dev",
    AWS_SECRET_ACCESS_KEY: "s3csv-dev",
    LOG_LEVEL: "error",
    ...process.env,
  };
  const stops: Array<() => Promise<unknown>> = [];
  const say = (line: string) => process.stdout.write(`${line}\n`);

  if (!env.REDIS_URL) {
    const redis = await startRedisServer({ dir: join(dir, "redis") });
    env.REDIS_URL = redis.url;
    stops.push(() => redis.stop());
    say(`redis-server      ${redis.url} (data in ${join(dir, "redis")})`);
  }
  let s3Dir: string | undefined;
  if (!env.S3_ENDPOINT) {
    s3Dir = join(dir, "s3");
    const s3Server = await startFauxqs({ port: 0, logger: false, s3StorageDir: s3Dir });
    env.S3_ENDPOINT = s3Server.address;
    stops.push(() => s3Server.stop());
    say(`S3 (embedded)     ${s3Server.address} (objects in ${s3Dir})`);
  }
  const config: Config = loadConfig(env);
  for (const [k, v] of Object.entries(env)) process.env[k] ??= v;

  const s3 = createS3Client(config);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET })).catch((error: { name?: string }) => {
    if (error.name !== "BucketAlreadyOwnedByYou" && error.name !== "BucketAlreadyExists")
      throw error;
  });
  const sampleCsv = await readFile(new URL("orders.csv", EXAMPLES));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "in/orders.csv", Body: sampleCsv }));
  const schemaPath = fileURLToPath(new URL("orders.schema.json", EXAMPLES));
  const sampleSchema: unknown = JSON.parse(await readFile(schemaPath, "utf8"));

  const worker = await startWorker(config, createLogger(config, "s3csv-worker"), transforms);
  stops.unshift(() => worker.close(5000));
  const queue = transformQueue(queueSettings(config));
  stops.unshift(() => queue.close());

  const stopAll = async () => {
    for (const stop of stops) await stop().catch(() => {});
    s3.destroy();
  };

  try {
    const jobId = await enqueueTransform(
      {
        source: { bucket: BUCKET, key: "in/orders.csv" },
        destination: { bucket: BUCKET, key: "out/orders.csv" },
        schema: sampleSchema,
      },
      { queue },
    );
    say(`worker            queue "${config.QUEUE_NAME}", job ${jobId} enqueued`);
    const bar = progressWriter(process.stderr);
    const result = await waitForResult(queue, jobId, { onProgress: bar.update });
    bar.done();
    say("");
    say(
      `done: ${result.rows.valid} valid rows, ${result.rows.rejected} rejected of ${result.rows.read}`,
    );
    say(`  output        s3://${result.output.bucket}/${result.output.key}`);
    say(`  reject report s3://${result.rejects.bucket}/${result.rejects.key}`);
    if (s3Dir) {
      const file = (key: string) =>
        join(s3Dir as string, "buckets", BUCKET, "objects", `${key}.data`);
      for (const [label, key] of [
        ["output", result.output.key],
        ["reject report", result.rejects.key],
      ] as const) {
        say(`\n${label} (${file(key)}):`);
        say((await readFile(file(key), "utf8")).trimEnd());
      }
    }
    if (!values.once) {
      const vars = `REDIS_URL=${config.REDIS_URL} S3_ENDPOINT=${config.S3_ENDPOINT} AWS_ACCESS_KEY_ID=s3csv-dev AWS_SECRET_ACCESS_KEY=s3csv-dev`;
      say("\nFrom another terminal, with these variables:");
      say(`  export ${vars}`);
      say("put your own CSV where a job can read it, and draft its schema:");
      say(`  npx s3csv put ./your.csv s3://${BUCKET}/in/your.csv`);
      say(`  npx s3csv infer s3://${BUCKET}/in/your.csv > your.schema.json`);
      say("then enqueue it (or the sample again):");
      say(
        `  npx s3csv enqueue --source s3://${BUCKET}/in/orders.csv --dest s3://${BUCKET}/out/again.csv --schema ${schemaPath} --wait`,
      );
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  if (values.once) {
    await stopAll();
    say(
      "\n--once: the sample job is done and the servers have stopped (s3csv dev keeps them running).",
    );
    return;
  }
  say("\nRunning; Ctrl-C stops everything.");
  await new Promise<void>((resolveStop) => {
    const stop = () => resolveStop();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await stopAll();
}
