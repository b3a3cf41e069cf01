import type { Queue } from "bullmq";
import type { FastifyReply, FastifyRequest } from "fastify";
import { checkedJob, claimsFor, enqueueTransform, InvalidJobError } from "../producer/enqueue.ts";
import { DestinationBusyError } from "../shared/destinationClaims.ts";
import { type JobResult, outputLocations } from "../shared/job.ts";
import { queueKeys } from "../shared/queueKeys.ts";
import { bullmqScripts } from "../shared/redisScripts.ts";

// Bull Board's two actions that write job data, done the way s3csv's producers do them rather
// than refused: Duplicate (and Add) enqueues through the producer's checks and claims, and Edit
// changes a job only while no worker has started it (its data holds no checkpoint yet, and it
// still waits), in one script, so the edit can never land on a checkpoint. What a worker writes
// (`checkpoint`, a shard's `shard`) is never taken from the browser.

// KEYS: the job's hash, the queue's wait and paused lists, delayed and prioritized sets.
// ARGV: job id, new data. 1 when written; -1 the job has started (a checkpoint); -2 no such job;
// -3 it is not waiting.
const EDIT_IF_WAITING = `
local data = redis.call('HGET', KEYS[1], 'data')
if not data then return -2 end
local ok, parsed = pcall(cjson.decode, data)
if ok and type(parsed) == 'table' and parsed.checkpoint ~= nil then return -1 end
local id = ARGV[1]
local waiting = redis.call('LPOS', KEYS[2], id) or redis.call('LPOS', KEYS[3], id)
  or redis.call('ZSCORE', KEYS[4], id) or redis.call('ZSCORE', KEYS[5], id)
if not waiting then return -3 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1`;

const EDIT_REFUSED: Record<string, string> = {
  "-1": "it has started: its data holds its checkpoint now. Duplicate it with the change instead",
  "-2": "there is no such job",
  "-3": "it is not waiting (only a job no worker has taken can be edited). Duplicate it with the change instead",
};

/** The job's data as a producer would send it: without what workers write. */
function producerPart(data: unknown): Record<string, unknown> | undefined {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return undefined;
  const { checkpoint: _checkpoint, shard: _shard, ...rest } = data as Record<string, unknown>;
  return rest;
}

function refuse(reply: FastifyReply, status: number, error: string) {
  return reply.code(status).send({ error });
}

/** POST …/add (Bull Board's Add and Duplicate): the producer's checks, claims and add. */
export async function addJob(
  queue: Queue<unknown, JobResult>,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const body = (request.body ?? {}) as {
    data?: unknown;
    options?: { priority?: unknown; delay?: unknown };
  };
  const data = producerPart(body.data);
  const whole = (n: unknown) =>
    Number.isInteger(n) && (n as number) > 0 ? (n as number) : undefined;
  const priority = whole(body.options?.priority);
  const delay = whole(body.options?.delay);
  try {
    const id = await enqueueTransform(data, {
      queue,
      ...(priority ? { priority } : {}),
      ...(delay ? { delay } : {}),
    });
    return reply.send({ job: { id }, status: delay ? "delayed" : "waiting" });
  } catch (error) {
    if (error instanceof InvalidJobError) return refuse(reply, 400, error.message);
    if (error instanceof DestinationBusyError) return refuse(reply, 409, error.message);
    throw error;
  }
}

/**
 * PATCH …/:jobId/update-data (Bull Board's Edit): a job no worker has taken yet, checked as a
 * producer checks a job; its claims follow a changed destination or reject report.
 */
export async function editJob(
  queue: Queue<unknown, JobResult>,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  const { jobId } = request.params as { jobId: string };
  const edited = (request.body ?? {}) as { jobData?: unknown };
  const raw = edited.jobData as Record<string, unknown> | undefined;
  if (raw && ("checkpoint" in raw || "shard" in raw)) {
    return refuse(reply, 400, "checkpoint and shard are written by workers only: leave them out");
  }
  let checked: ReturnType<typeof checkedJob>;
  try {
    checked = checkedJob(producerPart(raw));
  } catch (error) {
    if (error instanceof InvalidJobError) return refuse(reply, 400, error.message);
    throw error;
  }
  const job = await queue.getJob(jobId);
  let old: ReturnType<typeof outputLocations> = [];
  try {
    old = outputLocations(checkedJob(producerPart(job?.data)).data);
  } catch {
    // A job whose data never was valid holds no claims.
  }
  const claims = await claimsFor(queue);
  const now = outputLocations(checked.data);
  const same = (a: { bucket: string; key: string }) => (b: { bucket: string; key: string }) =>
    a.bucket === b.bucket && a.key === b.key;
  const added = now.filter((l) => !old.some(same(l)));
  try {
    await claims.claim(added.map((location) => ({ jobId, location })));
  } catch (error) {
    if (error instanceof DestinationBusyError) return refuse(reply, 409, error.message);
    throw error;
  }
  const keys = queueKeys(queue.opts.prefix ?? "bull", queue.name);
  const scripts = bullmqScripts(await queue.getBackend().client);
  scripts.define("s3csvEditIfWaiting", EDIT_IF_WAITING, 5);
  const written = Number(
    await scripts.run("s3csvEditIfWaiting", [
      keys.job(jobId),
      `${keys.base}:wait`,
      `${keys.base}:paused`,
      `${keys.base}:delayed`,
      `${keys.base}:prioritized`,
      jobId,
      JSON.stringify(checked.payload),
    ]),
  );
  // The outputs the job no longer writes are freed; refused, the ones it would have are.
  const freed = written === 1 ? old.filter((l) => !now.some(same(l))) : added;
  await claims.release(jobId, freed);
  if (written !== 1) {
    return refuse(
      reply,
      403,
      `job ${jobId} cannot be edited: ${EDIT_REFUSED[String(written)] ?? "refused"}`,
    );
  }
  return reply.send({});
}
