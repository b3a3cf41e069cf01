import { parseArgs } from "node:util";
import { loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { startWorker } from "./worker.ts";

export const usage = `s3csv worker [--concurrency N]

Runs a long-lived worker that takes CSV-transform jobs from the queue. Configuration comes from
the environment (REDIS_URL, QUEUE_NAME, S3_ENDPOINT, PART_SIZE, ...; see the README).
SIGTERM or SIGINT stops it gracefully (SHUTDOWN_GRACE_MS, default 30000); a second one at once.`;

export async function workerCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { concurrency: { type: "string" } } });
  const config = loadConfig(
    values.concurrency ? { ...process.env, WORKER_CONCURRENCY: values.concurrency } : process.env,
  );
  const log = createLogger(config, "s3csv-worker");
  const running = await startWorker(config, log);
  const grace = config.SHUTDOWN_GRACE_MS;
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now; active jobs resume on another worker");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, graceMs: grace }, "stopping: no new jobs, waiting for active ones");
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
