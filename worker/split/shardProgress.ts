import type { Queue } from "bullmq";
import type { Cluster, Redis } from "ioredis";
import type { JobProgress, RowCounts, ShardSpec } from "../../shared/job.ts";

// A split job's progress is its shards' summed: each shard keeps its own figures in a hash
// beside its parent's job key and sets the parent's progress to the sum, so Bull Board and
// `enqueue --wait` follow the whole file.

const WEEK_SECONDS = 7 * 24 * 3600;

interface ShardFigures {
  bytes: number;
  parts: number;
  rows: Omit<RowCounts, "fields">;
}

export function shardProgressKey(parentJobKey: string): string {
  return `${parentJobKey}:shard-progress`;
}

export async function reportShardProgress(
  redis: Redis | Cluster,
  queue: Queue,
  parentJobKey: string,
  shard: ShardSpec,
  shardStart: number,
  progress: JobProgress,
): Promise<void> {
  const key = shardProgressKey(parentJobKey);
  const { fields: _fields, ...rows } = progress.rows;
  const mine: ShardFigures = {
    bytes: Math.max(0, progress.bytesRead - shardStart),
    parts: progress.parts,
    rows,
  };
  // The hash outlives a parent that dies for good only by a week.
  await redis
    .multi()
    .hset(key, String(shard.index), JSON.stringify(mine))
    .expire(key, WEEK_SECONDS)
    .exec();
  const all = Object.values(await redis.hgetall(key)).map((v) => JSON.parse(v) as ShardFigures);
  const total = summed(all);
  const size = shard.source.size;
  await queue.updateJobProgress(shard.parent, {
    bytesRead: Math.min(total.bytes, size),
    bytesTotal: size,
    rows: { ...total.rows, fields: {} },
    parts: total.parts,
    progress: Math.min(99, Math.floor((total.bytes / Math.max(1, size)) * 1000) / 10),
  } satisfies JobProgress);
}

function summed(all: ShardFigures[]): ShardFigures {
  const total: ShardFigures = {
    bytes: 0,
    parts: 0,
    rows: { read: 0, valid: 0, rejected: 0, errors: {} },
  };
  for (const f of all) {
    total.bytes += f.bytes;
    total.parts += f.parts;
    total.rows.read += f.rows.read;
    total.rows.valid += f.rows.valid;
    total.rows.rejected += f.rows.rejected;
    for (const [code, n] of Object.entries(f.rows.errors)) {
      total.rows.errors[code] = (total.rows.errors[code] ?? 0) + n;
    }
  }
  return total;
}
