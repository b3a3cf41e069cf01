import { parseCommandLine } from "../shared/commandLine.ts";
import { loadConfig } from "../shared/config.ts";
import { DestinationBusyError } from "../shared/destinationClaims.ts";
import { assertRedisReachable } from "../shared/redisReachable.ts";
import { UsageError } from "../shared/usageError.ts";
import { queueSettings, transformQueue } from "./enqueue.ts";
import { JobNotRetryableError, retryJob } from "./retryJob.ts";
import { exitCodesUsage, timeoutMsOf, WAIT_TAKES, waitAndReport, waitFlags } from "./waitCli.ts";

export const usage = `s3csv retry JOB_ID [--wait [--timeout SECONDS]] [--json]

Retries a job that failed for good (after fixing what made it fail, say a missing source),
with the full attempts it was enqueued with; it keeps its id and data. A job that does not
exist or has not failed is refused (exit 2), naming its state, and so is one whose output
another active job writes now, naming that job. --wait, --timeout and --json
work as for enqueue.
${exitCodesUsage}`;

function parse(argv: string[]) {
  return parseCommandLine(
    { args: argv, strict: true, allowPositionals: true, options: waitFlags },
    WAIT_TAKES,
  );
}

export async function retryCommand(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv);
  const [jobId, ...extra] = positionals;
  if (!jobId || extra.length > 0) throw new UsageError("give one job id: s3csv retry JOB_ID");
  const timeoutMs = timeoutMsOf(v);
  const config = loadConfig();
  await assertRedisReachable(config);
  const queue = transformQueue(queueSettings(config));
  try {
    try {
      await retryJob(queue, jobId);
    } catch (error) {
      if (error instanceof JobNotRetryableError || error instanceof DestinationBusyError)
        throw new UsageError(error.message);
      throw error;
    }
    if (!v.wait) {
      process.stdout.write(
        v.json ? `${JSON.stringify({ jobId, retried: true })}\n` : `job ${jobId} retried\n`,
      );
      return;
    }
    if (!v.json) process.stderr.write(`job ${jobId} retried; waiting\n`);
    await waitAndReport(queue, [jobId], { json: v.json, timeoutMs });
  } finally {
    await queue.close();
  }
}
