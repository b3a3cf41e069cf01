import type { Cluster, Redis } from "ioredis";
import type { Checkpoint, JobData, OutputSide } from "../../shared/job.ts";
import type { ScriptClient } from "../../shared/redisScripts.ts";

// The checkpoint store: writes the job's data, checkpoint included, back to the job in Redis,
// and keeps the job's other durable records next to it. BullMQ's `job.updateData` neither
// checks the job lock nor merges, so every write here goes through a script that writes only
// while this worker still holds the lock: a worker that stalled and lost its job can never
// overwrite the new owner's state. Each script is one atomic operation, sent once per client
// and then run by EVALSHA.

// Every script answers -1 when this worker no longer holds the job's lock.

// KEYS: job hash, lock. ARGV: token, the job's data.
const WRITE_CHECKPOINT = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1`;

// KEYS: carry key, lock. ARGV: token, offset, bytes, ttl. Writes the bytes at their offset (a
// write that ioredis sends again after a reconnect lands on the same bytes); returns the length.
const WRITE_CARRY = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local length = redis.call('SETRANGE', KEYS[1], tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return length`;

// KEYS: creating marker, lock. ARGV: token, ttl. Notes that an upload is about to be created.
const MARK_CREATING = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local now = redis.call('TIME')
redis.call('SET', KEYS[1], now[1] * 1000 + math.floor(now[2] / 1000), 'PX', ARGV[2])
return 1`;

// KEYS: the job's upload record (upload id -> output side), lock, creating marker.
// ARGV: token, upload id, side, ttl.
const RECORD_UPLOAD = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[3])
return 1`;

// KEYS: creating marker, lock. ARGV: token.
const CLEAR_CREATING = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
return 1`;

/** A job's records outlive a stalled job long enough for any retry, then expire by themselves. */
const RECORD_TTL_MS = 7 * 24 * 3600 * 1000;

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

/** The keys of a job's own records, next to its hash. */
export function recordKeys(jobKey: string) {
  return {
    carryPrefix: `${jobKey}:carry:`,
    uploads: `${jobKey}:uploads`,
    creating: (side: OutputSide) => `${jobKey}:creating:${side}`,
  };
}

export function defineStoreScripts(scripts: ScriptClient): void {
  scripts.define("s3csvWriteCheckpoint", WRITE_CHECKPOINT, 2);
  scripts.define("s3csvWriteCarry", WRITE_CARRY, 2);
  scripts.define("s3csvMarkCreating", MARK_CREATING, 2);
  scripts.define("s3csvRecordUpload", RECORD_UPLOAD, 3);
  scripts.define("s3csvClearCreating", CLEAR_CREATING, 2);
}

/** What a job attempt keeps through its store: the checkpoint and the records beside it. */
export interface AttemptStore {
  readonly current: Checkpoint;
  stage(checkpoint: Checkpoint): void;
  save(checkpoint: Checkpoint): Promise<void>;
  carryKey(name: string): string;
  writeCarry(key: string, offset: number, bytes: Buffer): Promise<void>;
  readCarry(key: string, bytes: number): Promise<Buffer | undefined>;
  deleteCarry(key: string): Promise<void>;
  markCreating(side: OutputSide): Promise<void>;
  recordUpload(side: OutputSide, uploadId: string): Promise<void>;
  /** The uploads the job's workers recorded creating, and the output each is of. */
  recordedUploads(): Promise<Map<string, OutputSide>>;
  creatingSince(side: OutputSide): Promise<Date | undefined>;
  clearCreating(side: OutputSide): Promise<void>;
  assertOwner(): Promise<void>;
}

export class CheckpointStore implements AttemptStore {
  readonly #scripts: ScriptClient;
  readonly #redis: Redis | Cluster;
  readonly #keys: JobKeys;
  readonly #records: ReturnType<typeof recordKeys>;
  readonly #data: Omit<JobData, "checkpoint">;
  #checkpoint: Checkpoint;
  #dirty = false;
  #writing: Promise<void> | null = null;

  /** `scripts` must have the store's scripts defined (defineStoreScripts). */
  constructor(
    scripts: ScriptClient,
    redis: Redis | Cluster,
    keys: JobKeys,
    data: Omit<JobData, "checkpoint">,
    checkpoint: Checkpoint,
  ) {
    this.#scripts = scripts;
    this.#redis = redis;
    this.#keys = keys;
    this.#records = recordKeys(keys.jobKey);
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
    this.#writing ??= this.#writeLatest().finally(() => {
      this.#writing = null;
    });
    return this.#writing;
  }

  /** A Redis key, next to the job's, for one output's carried text in one attempt. */
  carryKey(name: string): string {
    return `${this.#records.carryPrefix}${name}`;
  }

  /** Writes carried text at `offset` of its key while this worker holds the lock. */
  async writeCarry(key: string, offset: number, bytes: Buffer): Promise<void> {
    const length = await this.#fenced("s3csvWriteCarry", [key], offset, bytes, RECORD_TTL_MS);
    if (length !== offset + bytes.length) {
      throw new Error(`carry key ${key} holds ${length} bytes, not ${offset + bytes.length}`);
    }
  }

  /** The first `bytes` of a carry key, or undefined when the key no longer holds them. */
  async readCarry(key: string, bytes: number): Promise<Buffer | undefined> {
    const text = await this.#redis.getrangeBuffer(key, 0, bytes - 1);
    return text.length === bytes ? text : undefined;
  }

  async deleteCarry(key: string): Promise<void> {
    await this.#redis.del(key);
  }

  /** Notes, before CreateMultipartUpload, that an upload of `side` may exist unrecorded. */
  async markCreating(side: OutputSide): Promise<void> {
    await this.#fenced("s3csvMarkCreating", [this.#records.creating(side)], RECORD_TTL_MS);
  }

  /** Records an upload this job created (and clears the side's creating mark). */
  async recordUpload(side: OutputSide, uploadId: string): Promise<void> {
    const keys = [this.#records.uploads, this.#keys.lockKey, this.#records.creating(side)];
    const done = await this.#scripts.run("s3csvRecordUpload", [
      ...keys,
      this.#keys.token,
      uploadId,
      side,
      RECORD_TTL_MS,
    ]);
    if (done !== 1) throw new LockLostError(this.#keys.jobId);
  }

  recordedUploads(): Promise<Map<string, OutputSide>> {
    return recordedUploads(this.#redis, this.#keys.jobKey);
  }

  /** When an earlier attempt was about to create an upload it may not have recorded. */
  async creatingSince(side: OutputSide): Promise<Date | undefined> {
    const at = await this.#redis.get(this.#records.creating(side));
    return at ? new Date(Number(at)) : undefined;
  }

  async clearCreating(side: OutputSide): Promise<void> {
    await this.#fenced("s3csvClearCreating", [this.#records.creating(side)]);
  }

  async assertOwner(): Promise<void> {
    const holder = await this.#redis.get(this.#keys.lockKey);
    if (holder !== this.#keys.token) throw new LockLostError(this.#keys.jobId);
  }

  /** Runs a fenced script whose KEYS are `keys` and the lock; a refusal is a lost lock. */
  async #fenced(name: string, keys: string[], ...args: Array<string | number | Buffer>) {
    const result = await this.#scripts.run(name, [
      ...keys,
      this.#keys.lockKey,
      this.#keys.token,
      ...args,
    ]);
    if (typeof result !== "number" || result < 0) throw new LockLostError(this.#keys.jobId);
    return result;
  }

  async #writeLatest(): Promise<void> {
    while (this.#dirty) {
      this.#dirty = false;
      const json = JSON.stringify({ ...this.#data, checkpoint: this.#checkpoint });
      const written = await this.#scripts.run("s3csvWriteCheckpoint", [
        this.#keys.jobKey,
        this.#keys.lockKey,
        this.#keys.token,
        json,
      ]);
      if (written !== 1) throw new LockLostError(this.#keys.jobId);
    }
  }
}

/** The uploads a job's workers recorded creating (checkpoints may name only these). */
export async function recordedUploads(
  redis: Redis | Cluster,
  jobKey: string,
): Promise<Map<string, OutputSide>> {
  const record = await redis.hgetall(recordKeys(jobKey).uploads);
  return new Map(Object.entries(record) as Array<[string, OutputSide]>);
}

/** Drops a finished job's records (carried text is dropped by its own keys). */
export async function deleteRecords(redis: Redis | Cluster, jobKey: string): Promise<void> {
  const keys = recordKeys(jobKey);
  await redis.del(keys.uploads, keys.creating("output"), keys.creating("rejects"));
}
