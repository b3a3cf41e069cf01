import type { Cluster, Redis } from "ioredis";
import type { Checkpoint, OutputSide } from "../../shared/job.ts";
import type { ScriptClient } from "../../shared/redisScripts.ts";

// The checkpoint store: writes the job's data, checkpoint included, back to the job in Redis,
// and keeps the job's other durable records next to it. BullMQ's `job.updateData` neither
// checks the job lock nor merges, so every write here goes through a script that writes only
// while this worker still holds the lock: a worker that stalled and lost its job can never
// overwrite the new owner's state. Each script is one atomic operation, sent once per client
// and then run by EVALSHA.

// Every script answers -1 when this worker no longer holds the job's lock. Scripts run through
// #fenced take the lock as their last KEY.

// KEYS: job hash, lock, upload record, carry list, and the two carry keys the checkpoint names
// (the carry list again where it names none). ARGV: token, the job's data, ttl. What the
// checkpoint relies on lives a TTL past its write.
const WRITE_CHECKPOINT = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1`;

// KEYS: carry key, carry list, lock. ARGV: token, offset, bytes, ttl. Writes the bytes at their
// offset (a write that ioredis sends again after a reconnect lands on the same bytes) and lists
// the key, so that one no checkpoint came to name is still found and dropped; returns the length.
const WRITE_CARRY = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local length = redis.call('SETRANGE', KEYS[1], tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return length`;

// KEYS: carry key, carry list, lock. ARGV: token.
const DELETE_CARRY = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
redis.call('SREM', KEYS[2], KEYS[1])
redis.call('DEL', KEYS[1])
return 1`;

// The queue's registry of what s3csv made in S3 (a hash beside the queue's keys, see
// queueKeys): `u:<upload id>` an upload a job recorded, `c:<job>:<side>` an upload a job was
// about to create, `s:<job>` a split job's shard objects; each value a JSON object with the
// bucket, the key, the job and when (ms). s3csv sweep touches only what the registry names,
// and only when the job named is gone or finished.

// KEYS: upload record, registry, lock. ARGV: token, the upload ids aborted.
const FORGET_UPLOADS = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
for i = 2, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], 'u:' .. ARGV[i])
end
return 1`;

// KEYS: lock, registry, then the records to delete (upload record first, then the carry list).
// ARGV: token, job id, and "all" to drop them whatever the carry list names. Without it, while
// the carry list names carry keys, answers those keys and drops nothing: the caller deletes each
// (a KEY of its own script, as Redis Cluster wants) and runs this again with "all". A completed
// attempt has deleted its own carry keys by then, so most jobs drop their records in one call.
const DROP_RECORDS = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[3] ~= 'all' then
  local carries = redis.call('SMEMBERS', KEYS[4])
  if #carries > 0 then return carries end
end
for _, id in ipairs(redis.call('HKEYS', KEYS[3])) do redis.call('HDEL', KEYS[2], 'u:' .. id) end
local job = ARGV[2]
redis.call('HDEL', KEYS[2], 'c:' .. job .. ':output', 'c:' .. job .. ':rejects', 's:' .. job)
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return 1`;

// KEYS: upload record, the two creating markers (output, rejects), lock. ARGV: token. What an
// earlier attempt may have left in S3: {the record as field, value, ..., output's mark, rejects'
// mark} ("" where none), read in one round trip and only while this worker holds the lock (a
// mark read after it was lost may be the new owner's, made for its own upload).
const UPLOAD_RECORDS = `
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end
return {redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or ''}`;

// KEYS: creating marker, registry, lock. ARGV: token, ttl, registry field, bucket, key, job.
// Notes that an upload is about to be created.
const MARK_CREATING = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('SET', KEYS[1], ms, 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], cjson.encode({bucket = ARGV[4], key = ARGV[5], job = ARGV[6], at = ms}))
return 1`;

// KEYS: the job's upload record (upload id -> output side), lock, creating marker, registry.
// ARGV: token, upload id, side, ttl, the creating mark's registry field, bucket, key, job.
const RECORD_UPLOAD = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[3])
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HDEL', KEYS[4], ARGV[5])
redis.call('HSET', KEYS[4], 'u:' .. ARGV[2], cjson.encode({bucket = ARGV[6], key = ARGV[7], job = ARGV[8], at = ms}))
return 1`;

// KEYS: creating marker, registry, lock. ARGV: token, the mark's registry field.
const CLEAR_CREATING = `
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1`;

// KEYS: registry, lock. ARGV: token, field, bucket, destination key, job, child job ids (JSON).
// Names a split job's shard objects before its children may write them.
const REGISTER_SHARDS = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HSET', KEYS[1], ARGV[2], cjson.encode({bucket = ARGV[3], key = ARGV[4], job = ARGV[5], children = cjson.decode(ARGV[6]), at = ms}))
return 1`;

/**
 * A job's records (and the carried text its checkpoint names) live this long past its latest
 * checkpoint, then expire by themselves: a job retried later starts those outputs over.
 */
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
  /** The queue's registry of what s3csv made in S3 (QueueKeys.registry). */
  registry: string;
}

/** The keys of a job's own records, next to its hash. */
export function recordKeys(jobKey: string) {
  return {
    carryPrefix: `${jobKey}:carry:`,
    carries: `${jobKey}:carry-keys`,
    // A hash of upload id -> output side (s3csv before 0.2 kept no record).
    uploads: `${jobKey}:upload-record`,
    creating: (side: OutputSide) => `${jobKey}:creating:${side}`,
    // Why a job that could have split runs whole, for its result. Not in the checkpoint: a
    // worker of the previous release refuses checkpoint keys it does not know.
    unsplit: `${jobKey}:unsplit`,
  };
}

export function defineStoreScripts(scripts: ScriptClient): void {
  scripts.define("s3csvWriteCheckpoint", WRITE_CHECKPOINT, 6);
  scripts.define("s3csvDropRecords", DROP_RECORDS, 7);
  scripts.define("s3csvWriteCarry", WRITE_CARRY, 3);
  scripts.define("s3csvDeleteCarry", DELETE_CARRY, 3);
  scripts.define("s3csvForgetUploads", FORGET_UPLOADS, 3);
  scripts.define("s3csvMarkCreating", MARK_CREATING, 3);
  scripts.define("s3csvRecordUpload", RECORD_UPLOAD, 4);
  scripts.define("s3csvClearCreating", CLEAR_CREATING, 3);
  scripts.define("s3csvRegisterShards", REGISTER_SHARDS, 2);
  scripts.define("s3csvUploadRecords", UPLOAD_RECORDS, 4);
}

/** What earlier attempts at a job may have left in S3, as its records say. */
export interface UploadRecords {
  /** The uploads the job's workers recorded creating, and the output each is of. */
  uploads: Map<string, OutputSide>;
  /** Per output, when an earlier attempt was about to create an upload it may not have recorded. */
  creating: Record<OutputSide, Date | undefined>;
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
  /** The job's records of uploads that may exist, read while this worker holds the lock. */
  uploadRecords(): Promise<UploadRecords>;
  /** Drops aborted uploads from the record. */
  forgetUploads(uploadIds: readonly string[]): Promise<void>;
  clearCreating(side: OutputSide): Promise<void>;
  assertOwner(): Promise<void>;
}

export class CheckpointStore implements AttemptStore {
  readonly #scripts: ScriptClient;
  readonly #redis: Redis | Cluster;
  readonly #keys: JobKeys;
  readonly #records: ReturnType<typeof recordKeys>;
  /** The job's data as it came, without its checkpoint: written back with each checkpoint. */
  #data: Readonly<Record<string, unknown>>;
  #checkpoint: Checkpoint;
  #dirty = false;
  #writing: Promise<void> | null = null;

  /** `scripts` must have the store's scripts defined (defineStoreScripts). */
  constructor(
    scripts: ScriptClient,
    redis: Redis | Cluster,
    keys: JobKeys,
    data: Readonly<Record<string, unknown>>,
    checkpoint: Checkpoint,
  ) {
    this.#scripts = scripts;
    this.#redis = redis;
    this.#keys = keys;
    this.#records = recordKeys(keys.jobKey);
    this.#data = data;
    this.#checkpoint = checkpoint;
  }

  /**
   * From the next write on, the job's data says it needs job contract `contract` (a job that
   * became a split parent): a worker of an older contract hands it back instead of failing it.
   */
  requireContract(contract: number): void {
    const said = typeof this.#data.contract === "number" ? this.#data.contract : 1;
    if (contract > said) this.#data = { ...this.#data, contract };
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
    this.#writing ??= this.#writeLatest();
    return this.#writing;
  }

  /** A Redis key, next to the job's, for one output's carried text in one attempt. */
  carryKey(name: string): string {
    return `${this.#records.carryPrefix}${name}`;
  }

  /** Writes carried text at `offset` of its key while this worker holds the lock. */
  async writeCarry(key: string, offset: number, bytes: Buffer): Promise<void> {
    const keys = [key, this.#records.carries];
    const length = await this.#fenced("s3csvWriteCarry", keys, offset, bytes, RECORD_TTL_MS);
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
    await this.#fenced("s3csvDeleteCarry", [key, this.#records.carries]);
  }

  /** Notes, before CreateMultipartUpload, that an upload of `side` may exist unrecorded. */
  async markCreating(side: OutputSide): Promise<void> {
    const { bucket, key } = this.#checkpoint[side];
    await this.#fenced(
      "s3csvMarkCreating",
      [this.#records.creating(side), this.#keys.registry],
      RECORD_TTL_MS,
      this.#creatingField(side),
      bucket,
      key,
      this.#keys.jobId,
    );
  }

  /** Records an upload this job created (and clears the side's creating mark). */
  async recordUpload(side: OutputSide, uploadId: string): Promise<void> {
    const { bucket, key } = this.#checkpoint[side];
    const keys = [
      this.#records.uploads,
      this.#keys.lockKey,
      this.#records.creating(side),
      this.#keys.registry,
    ];
    const done = await this.#scripts.run("s3csvRecordUpload", [
      ...keys,
      this.#keys.token,
      uploadId,
      side,
      RECORD_TTL_MS,
      this.#creatingField(side),
      bucket,
      key,
      this.#keys.jobId,
    ]);
    if (done !== 1) throw new LockLostError(this.#keys.jobId);
  }

  /**
   * Names a split job's shard objects (of `children`, beside `destination`) in the registry,
   * before any child may write one: what the job does not delete, s3csv sweep can.
   */
  async registerShards(
    destination: { bucket: string; key: string },
    children: readonly string[],
  ): Promise<void> {
    await this.#fenced(
      "s3csvRegisterShards",
      [this.#keys.registry],
      `s:${this.#keys.jobId}`,
      destination.bucket,
      destination.key,
      this.#keys.jobId,
      JSON.stringify(children),
    );
  }

  #creatingField(side: OutputSide): string {
    return `c:${this.#keys.jobId}:${side}`;
  }

  async uploadRecords(): Promise<UploadRecords> {
    const { uploads, creating } = this.#records;
    const keys = [uploads, creating("output"), creating("rejects"), this.#keys.lockKey];
    const read = await this.#scripts.run("s3csvUploadRecords", [...keys, this.#keys.token]);
    if (!Array.isArray(read)) throw new LockLostError(this.#keys.jobId);
    const [record, output, rejects] = read as [string[], string, string];
    const since = (at: string) => (at ? new Date(Number(at)) : undefined);
    const pairs: Array<[string, OutputSide]> = [];
    for (let i = 0; i < record.length; i += 2) {
      pairs.push([record[i] as string, record[i + 1] as OutputSide]);
    }
    return {
      uploads: new Map(pairs),
      creating: { output: since(output), rejects: since(rejects) },
    };
  }

  async forgetUploads(uploadIds: readonly string[]): Promise<void> {
    if (uploadIds.length > 0)
      await this.#fenced(
        "s3csvForgetUploads",
        [this.#records.uploads, this.#keys.registry],
        ...uploadIds,
      );
  }

  /**
   * Drops every record of the job (its outputs are complete, or were aborted and start over):
   * each carry key any attempt wrote, the upload record and the creating marks, and what the
   * queue's registry names for the job (its shard objects are deleted by then).
   */
  async dropRecords(): Promise<void> {
    const carries = await this.#dropRecords("unless-carried");
    if (carries.length === 0) return;
    for (const key of carries) await this.deleteCarry(key);
    await this.#dropRecords("all");
  }

  /** Drops the records; or, while the carry list names carry keys (and not `all`), answers them. */
  async #dropRecords(mode: "unless-carried" | "all"): Promise<string[]> {
    const { uploads, creating } = this.#records;
    const keys = [
      this.#keys.lockKey,
      this.#keys.registry,
      uploads,
      this.#records.carries,
      creating("output"),
      creating("rejects"),
      this.#records.unsplit,
    ];
    const done = await this.#scripts.run("s3csvDropRecords", [
      ...keys,
      this.#keys.token,
      this.#keys.jobId,
      mode === "all" ? "all" : "",
    ]);
    if (Array.isArray(done)) return done as string[];
    if (done !== 1) throw new LockLostError(this.#keys.jobId);
    return [];
  }

  /**
   * Notes why the job runs whole though it could have split (kept as long as its records), or,
   * with none, drops an older note (of a removed job that had this id).
   */
  async noteUnsplit(reason: string | undefined): Promise<void> {
    if (reason === undefined) await this.#redis.del(this.#records.unsplit);
    else await this.#redis.set(this.#records.unsplit, reason, "PX", RECORD_TTL_MS);
  }

  /** Why the job runs whole, as noted by any of its attempts. */
  async unsplitReason(): Promise<string | undefined> {
    return (await this.#redis.get(this.#records.unsplit)) ?? undefined;
  }

  async clearCreating(side: OutputSide): Promise<void> {
    await this.#fenced(
      "s3csvClearCreating",
      [this.#records.creating(side), this.#keys.registry],
      this.#creatingField(side),
    );
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
    // Not one step before save() has kept this write: a throw here must not clear it first.
    await undefined;
    try {
      while (this.#dirty) {
        this.#dirty = false;
        const checkpoint = this.#checkpoint;
        const json = JSON.stringify({ ...this.#data, checkpoint });
        const { uploads, carries } = this.#records;
        const named = (side: OutputSide) => checkpoint[side].carry?.key ?? carries;
        const keys = [this.#keys.jobKey, this.#keys.lockKey, uploads, carries];
        const written = await this.#scripts.run("s3csvWriteCheckpoint", [
          ...keys,
          named("output"),
          named("rejects"),
          this.#keys.token,
          json,
          RECORD_TTL_MS,
        ]);
        if (written !== 1) throw new LockLostError(this.#keys.jobId);
      }
    } finally {
      // In the tick of the last dirty check: a save after it starts a new write.
      this.#writing = null;
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
