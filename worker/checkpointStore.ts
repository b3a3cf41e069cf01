import type { Cluster, Redis } from "ioredis";
import type { Checkpoint, JobData } from "../shared/job.ts";

// The checkpoint store: writes the job's data, checkpoint included, back to the job in Redis.
// BullMQ's `job.updateData` neither checks the job lock nor merges, so writes here go through a
// script that replaces the data only while this worker still holds the lock: a worker that
// stalled and lost its job can never overwrite the new owner's checkpoint.

// Appends to a carry key (see OutputCheckpoint.carry) under the same fence; returns its length.
const FENCED_APPEND = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local length = redis.call('APPEND', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return length`;

/** Carry keys outlive a stalled job long enough for any retry, then expire by themselves. */
const CARRY_TTL_MS = 7 * 24 * 3600 * 1000;

const FENCED_WRITE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1`;

export class LockLostError extends Error {
  override name = "LockLostError";
  constructor(jobId: string) {
    super(`job ${jobId}: this worker no longer holds the job's lock; another worker owns it now`);
  }
}

export interface JobKeys {
  jobId: string;
  /** The job's hash key, e.g. `bull:csv-transform:42`. */
  jobKey: string;
  /** The job's lock key, `${jobKey}:lock`. */
  lockKey: string;
  /** The lock token BullMQ handed this worker with the job. */
  token: string;
}

export class CheckpointStore {
  readonly #redis: Redis | Cluster;
  readonly #keys: JobKeys;
  readonly #data: Omit<JobData, "checkpoint">;
  #checkpoint: Checkpoint;
  #dirty = false;
  #loop: Promise<void> | null = null;

  constructor(
    redis: Redis | Cluster,
    keys: JobKeys,
    data: Omit<JobData, "checkpoint">,
    checkpoint: Checkpoint,
  ) {
    this.#redis = redis;
    this.#keys = keys;
    this.#data = data;
    this.#checkpoint = checkpoint;
  }

  get current(): Checkpoint {
    return this.#checkpoint;
  }

  /** Replaces the checkpoint without writing it: the next save carries it. */
  stage(checkpoint: Checkpoint): void {
    this.#checkpoint = checkpoint;
  }

  /** Replaces the checkpoint and writes it; concurrent saves coalesce into the latest state. */
  save(checkpoint: Checkpoint): Promise<void> {
    this.#checkpoint = checkpoint;
    this.#dirty = true;
    this.#loop ??= this.#drain().finally(() => {
      this.#loop = null;
    });
    return this.#loop;
  }

  /** A Redis key, next to the job's, for one output's carried text in one attempt. */
  carryKey(name: string): string {
    return `${this.#keys.jobKey}:carry:${name}`;
  }

  /** Appends to a carry key while this worker holds the lock; resolves to the key's length. */
  async appendCarry(key: string, bytes: Buffer): Promise<number> {
    const length = await this.#redis.eval(
      FENCED_APPEND,
      2,
      key,
      this.#keys.lockKey,
      this.#keys.token,
      bytes,
      CARRY_TTL_MS,
    );
    if (typeof length !== "number" || length < 0) throw new LockLostError(this.#keys.jobId);
    return length;
  }

  /** The first `bytes` of a carry key, or undefined when the key no longer holds them. */
  async readCarry(key: string, bytes: number): Promise<Buffer | undefined> {
    const text = await this.#redis.getrangeBuffer(key, 0, bytes - 1);
    return text.length === bytes ? text : undefined;
  }

  async deleteCarry(key: string): Promise<void> {
    await this.#redis.del(key);
  }

  async assertOwner(): Promise<void> {
    const holder = await this.#redis.get(this.#keys.lockKey);
    if (holder !== this.#keys.token) throw new LockLostError(this.#keys.jobId);
  }

  async #drain(): Promise<void> {
    while (this.#dirty) {
      this.#dirty = false;
      const json = JSON.stringify({ ...this.#data, checkpoint: this.#checkpoint });
      const written = await this.#redis.eval(
        FENCED_WRITE,
        2,
        this.#keys.jobKey,
        this.#keys.lockKey,
        this.#keys.token,
        json,
      );
      if (written !== 1) throw new LockLostError(this.#keys.jobId);
    }
  }
}
