import { createHash } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import type { QueueKeys } from "../../shared/queueKeys.ts";

// What a watch of one prefix has enqueued, kept in Redis beside the queue: for each object key,
// the version (ETag) its last job was made for. Every watcher of the same prefix shares it, so
// a restarted watcher neither misses what arrived meanwhile nor repeats what is done, and two
// watchers at once agree. A job is added before its version is recorded: a watcher killed in
// between adds it again under the same job id, which BullMQ keeps once.

export class WatchState {
  readonly #redis: Redis | Cluster;
  readonly #seen: string;
  readonly #started: string;

  constructor(redis: Redis | Cluster, keys: QueueKeys, bucket: string, prefix: string) {
    this.#redis = redis;
    const id = createHash("sha256").update(`${bucket}\n${prefix}`).digest("hex").slice(0, 16);
    // One slot with the queue's keys on a Redis Cluster (its prefix is hash-tagged).
    this.#seen = `${keys.base}:watch:${id}:seen`;
    this.#started = `${keys.base}:watch:${id}:started`;
  }

  /** The version each key's last job was made for (null: none yet), in one round trip. */
  async versions(keys: readonly string[]): Promise<Array<string | null>> {
    if (keys.length === 0) return [];
    return this.#redis.hmget(this.#seen, ...keys);
  }

  async recordEnqueued(key: string, version: string): Promise<void> {
    await this.#redis.hset(this.#seen, key, version);
  }

  /** Records versions without jobs (--since now: what was there before the first start). */
  async recordBaseline(entries: ReadonlyArray<[string, string]>): Promise<void> {
    if (entries.length > 0) await this.#redis.hset(this.#seen, ...entries.flat());
  }

  /** Whether any watcher of this prefix started before. */
  async started(): Promise<boolean> {
    return (await this.#redis.exists(this.#started)) === 1;
  }

  async markStarted(): Promise<void> {
    await this.#redis.set(this.#started, new Date().toISOString());
  }
}
