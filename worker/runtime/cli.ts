import { parseCommandLine } from "../../shared/commandLine.ts";
import { loadConfig } from "../../shared/config.ts";
import { createLogger } from "../../shared/logger.ts";
import { assertRedisReachable } from "../../shared/redisReachable.ts";
import { UsageError } from "../../shared/usageError.ts";
import { builtInTransforms } from "../judge/transforms/builtIns.ts";
import { loadTransforms, TransformModuleError } from "../judge/transforms/moduleLoader.ts";
import type { TransformRegistry } from "../judge/transforms/registry.ts";
import { startWorker } from "./worker.ts";

/** How long past its grace a stopping worker may take to close its connections. */
const CLOSE_LEEWAY_MS = 5_000;

export const usage = `s3csv worker [--concurrency N] [--transforms MODULE]...

Runs a long-lived worker that takes CSV-transform jobs from the queue. Configuration comes from
the environment (REDIS_URL, QUEUE_NAME, S3_ENDPOINT, PART_SIZE, ...; see the README).
--transforms loads a module (.js, or .ts outside node_modules) whose exports are transforms made
with defineTransform from "s3csv"; TRANSFORM_MODULES (comma-separated) does the same for
containers. A module that cannot be loaded, exports none, or repeats a name stops the worker.
SIGTERM or SIGINT stops it gracefully (SHUTDOWN_GRACE_MS, default 30000); a second one at once.`;

/** The built-in transforms and those of `modules`; a module that cannot be loaded is a UsageError. */
export async function workerTransforms(modules: readonly string[]): Promise<TransformRegistry> {
  try {
    return await loadTransforms([...modules], builtInTransforms);
  } catch (error) {
    if (error instanceof TransformModuleError) throw new UsageError(error.message);
    throw error;
  }
}

export async function workerCommand(argv: string[]): Promise<void> {
  const { values } = parseCommandLine(
    {
      args: argv,
      options: {
        concurrency: { type: "string" },
        transforms: { type: "string", multiple: true },
      },
    },
    { concurrency: "a whole number of jobs, 1 or more" },
  );
  const config = loadConfig(
    values.concurrency ? { ...process.env, WORKER_CONCURRENCY: values.concurrency } : process.env,
  );
  const modules = [...(config.TRANSFORM_MODULES ?? []), ...(values.transforms ?? [])];
  const transforms = await workerTransforms(modules);
  const log = createLogger(config, "s3csv-worker");
  // A worker may well start before its Redis (a stack coming up): it keeps trying, as BullMQ
  // does, but says once, in one line, what it waits for and what to set.
  await assertRedisReachable(config).catch((error: Error) =>
    log.warn(`${error.message}; waiting for it`),
  );
  const running = await startWorker(config, log, transforms);
  const grace = config.SHUTDOWN_GRACE_MS;
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now; active jobs resume on another worker");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, graceMs: grace }, "stopping: no new jobs, waiting for active ones");
    // Closing waits on Redis; a worker whose Redis is away must still exit when its grace ends.
    setTimeout(() => {
      log.warn(
        { signal },
        "could not close in time: exiting; active jobs resume on another worker",
      );
      process.exit(1);
    }, grace + CLOSE_LEEWAY_MS).unref();
    running.close(grace).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
