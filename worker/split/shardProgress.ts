import type { Queue } from "bullmq";
import type { JobProgress, ShardSpec } from "../../shared/job.ts";
import type { ScriptClient } from "../../shared/redisScripts.ts";

// A split job's progress is its shards' summed: each shard's last figures sit in a hash beside
// its parent's job key, and a script adds the change since a shard's previous report to the
// parent's totals (a redone shard's figures replace those of the one it redoes), so a report
// costs the same however many shards there are. The shard then sets its parent's progress to
// the totals, for Bull Board and `enqueue --wait` to follow the whole file.

const WEEK_SECONDS = 7 * 24 * 3600;
const FIGURES = ["bytes", "parts", "read", "valid", "rejected"] as const;

/** KEYS: shards' figures, totals. ARGV: shard index, its FIGURES in order, expiry seconds. */
const ADD_SHARD_PROGRESS = `
local previous = {0, 0, 0, 0, 0}
local old = redis.call("HGET", KEYS[1], ARGV[1])
if old then
  local i = 1
  for n in string.gmatch(old, "[^,]+") do previous[i] = tonumber(n); i = i + 1 end
end
redis.call("HSET", KEYS[1], ARGV[1], table.concat({ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]}, ","))
local names = {"bytes", "parts", "read", "valid", "rejected"}
local totals = {}
for i = 1, 5 do
  totals[i] = redis.call("HINCRBY", KEYS[2], names[i], tonumber(ARGV[i + 1]) - previous[i])
end
redis.call("EXPIRE", KEYS[1], ARGV[7])
redis.call("EXPIRE", KEYS[2], ARGV[7])
return totals
`;

/**
 * KEYS: shards' figures, totals. ARGV: shard indexes. Takes the figures of shards the parent
 * found not to be part of the file (inside a longer row, or past its end) out of the totals.
 */
const DROP_SHARD_PROGRESS = `
local names = {"bytes", "parts", "read", "valid", "rejected"}
for a = 1, #ARGV do
  local old = redis.call("HGET", KEYS[1], ARGV[a])
  if old then
    local i = 1
    for n in string.gmatch(old, "[^,]+") do
      redis.call("HINCRBY", KEYS[2], names[i], 0 - tonumber(n)); i = i + 1
    end
    redis.call("HSET", KEYS[1], ARGV[a], "0,0,0,0,0")
  end
end
return redis.call("HMGET", KEYS[2], unpack(names))
`;

export function defineShardProgressScript(scripts: ScriptClient): void {
  scripts.define("s3csvAddShardProgress", ADD_SHARD_PROGRESS, 2);
  scripts.define("s3csvDropShardProgress", DROP_SHARD_PROGRESS, 2);
}

/** The keys of a split job's progress (deleted when it completes; else they expire). */
export function shardProgressKeys(parentJobKey: string): [string, string] {
  return [`${parentJobKey}:shard-progress`, `${parentJobKey}:shard-totals`];
}

/** `scripts` must have the script defined (defineShardProgressScript). */
export async function reportShardProgress(
  scripts: ScriptClient,
  queue: Queue,
  parentJobKey: string,
  shard: ShardSpec,
  shardStart: number,
  progress: JobProgress,
): Promise<void> {
  const { rows } = progress;
  const mine = {
    bytes: Math.max(0, progress.bytesRead - shardStart),
    parts: progress.parts,
    read: rows.read,
    valid: rows.valid,
    rejected: rows.rejected,
  };
  const totals = (await scripts.run("s3csvAddShardProgress", [
    ...shardProgressKeys(parentJobKey),
    String(shard.index),
    ...FIGURES.map((f) => mine[f]),
    WEEK_SECONDS,
  ])) as unknown[];
  await queue.updateJobProgress(shard.parent, parentProgress(totals, shard.source.size));
}

/** Takes shards that are not part of the file out of their parent's progress. */
export async function dropShardProgress(
  scripts: ScriptClient,
  queue: Queue,
  parentJobId: string,
  parentJobKey: string,
  indexes: readonly number[],
  size: number,
): Promise<void> {
  if (indexes.length === 0) return;
  const totals = (await scripts.run("s3csvDropShardProgress", [
    ...shardProgressKeys(parentJobKey),
    ...indexes.map(String),
  ])) as unknown[];
  await queue.updateJobProgress(parentJobId, parentProgress(totals, size));
}

/** The parent's progress from the shards' totals (bytes, parts, read, valid, rejected). */
function parentProgress(totals: readonly unknown[], size: number): JobProgress {
  const [bytes = 0, parts = 0, read = 0, valid = 0, rejected = 0] = totals.map((n) =>
    Math.max(0, Number(n ?? 0)),
  );
  return {
    bytesRead: Math.min(bytes, size),
    bytesTotal: size,
    rows: { read, valid, rejected, errors: {}, fields: {} },
    parts,
    progress: Math.min(99, Math.floor((bytes / Math.max(1, size)) * 1000) / 10),
  };
}
