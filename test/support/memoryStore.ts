import type { Redis } from "ioredis";
import type { Checkpoint, JobData } from "../../shared/job.ts";
import type { Steps } from "./steps.ts";

// A Redis in memory with a job's records as workers keep them: the job's hash (its data, the
// checkpoint included), its lock, and what the checkpoint store writes beside them (carried
// text, the list of carry keys, the upload record, creating marks). A client answers the
// commands the real CheckpointStore sends, so the store itself runs in the interleaving tests;
// its scripts are modelled here after their Lua, key for key (the Lua itself runs against a
// real Redis in test/integration/checkpointStore.test.ts). Each command is one step of the
// client's process. Nothing expires: no test lives as long as the records' TTL.

type Arg = string | number | Buffer;
type Value = Buffer | Map<string, string> | Set<string>;
/** A script's effect: KEYS and ARGV as the store passes them, the answer as Redis gives it. */
type Script = (redis: MemoryRedis, keys: string[], argv: Arg[]) => unknown;

const FENCED = -1;

function wrongType(key: string): Error {
  return new Error(`WRONGTYPE Operation against a key holding the wrong kind of value: ${key}`);
}

// The store's scripts (worker/checkpoint/checkpointStore.ts), each refused (-1) without the lock.
const SCRIPTS: Record<string, Script> = {
  s3csvWriteCheckpoint: (r, [job = "", lock = ""], [token, data]) => {
    if (!r.holds(lock, token) || !r.values.has(job)) return FENCED;
    r.hash(job).set("data", String(data));
    r.saved.push(structuredClone(r.checkpoint(job) as Checkpoint));
    return 1;
  },
  s3csvWriteCarry: (r, [key = "", list = "", lock = ""], [token, offset, bytes]) => {
    if (!r.holds(lock, token)) return FENCED;
    const length = r.setRange(key, Number(offset), Buffer.from(bytes as Buffer));
    r.set(list).add(key);
    return length;
  },
  s3csvDeleteCarry: (r, [key = "", list = "", lock = ""], [token]) => {
    if (!r.holds(lock, token)) return FENCED;
    r.remove(list, key);
    r.values.delete(key);
    return 1;
  },
  s3csvForgetUploads: (r, [uploads = "", registry = "", lock = ""], [token, ...uploadIds]) => {
    if (!r.holds(lock, token)) return FENCED;
    for (const uploadId of uploadIds) {
      r.remove(uploads, String(uploadId));
      r.remove(registry, `u:${uploadId}`);
    }
    return 1;
  },
  s3csvDropRecords: (r, [lock = "", registry = "", uploads = "", ...keys], [token, job, mode]) => {
    if (!r.holds(lock, token)) return FENCED;
    const [carries = ""] = keys;
    if (mode !== "all" && r.members(carries).size > 0) return [...r.members(carries)];
    for (const uploadId of r.hash(uploads).keys()) r.remove(registry, `u:${uploadId}`);
    for (const field of [`c:${job}:output`, `c:${job}:rejects`, `s:${job}`])
      r.remove(registry, field);
    for (const key of [uploads, ...keys]) r.values.delete(key);
    return 1;
  },
  s3csvUploadRecords: (r, [uploads = "", output = "", rejects = "", lock = ""], [token]) => {
    if (!r.holds(lock, token)) return FENCED;
    const mark = (key: string) => r.string(key)?.toString() ?? "";
    return [[...r.fields(uploads)].flat(), mark(output), mark(rejects)];
  },
  s3csvMarkCreating: (
    r,
    [key = "", registry = "", lock = ""],
    [token, _ttl, field, bucket, k, job],
  ) => {
    if (!r.holds(lock, token)) return FENCED;
    const at = Date.now();
    r.values.set(key, Buffer.from(String(at)));
    r.hash(registry).set(String(field), JSON.stringify({ bucket, key: k, job, at }));
    return 1;
  },
  s3csvRecordUpload: (
    r,
    [uploads = "", lock = "", creating = "", registry = ""],
    [token, uploadId, side, _ttl, field, bucket, key, job],
  ) => {
    if (!r.holds(lock, token)) return FENCED;
    r.hash(uploads).set(String(uploadId), String(side));
    r.values.delete(creating);
    r.remove(registry, String(field));
    r.hash(registry).set(`u:${uploadId}`, JSON.stringify({ bucket, key, job, at: Date.now() }));
    return 1;
  },
  s3csvRegisterShards: (r, [registry = "", lock = ""], [token, field, bucket, key, job, ids]) => {
    if (!r.holds(lock, token)) return FENCED;
    const children = JSON.parse(String(ids)) as string[];
    r.hash(registry).set(
      String(field),
      JSON.stringify({ bucket, key, job, children, at: Date.now() }),
    );
    return 1;
  },
  s3csvClearCreating: (r, [key = "", registry = "", lock = ""], [token, field]) => {
    if (!r.holds(lock, token)) return FENCED;
    r.values.delete(key);
    r.remove(registry, String(field));
    return 1;
  },
};

export class MemoryRedis {
  readonly values = new Map<string, Value>();
  /** Every checkpoint written to a job's hash, in order. */
  readonly saved: Checkpoint[] = [];

  /** A job as a producer adds it: its hash, with its data. */
  addJob(jobKey: string, data: JobData): void {
    this.hash(jobKey).set("data", JSON.stringify(data));
  }

  /** The job's data as a worker is handed it. */
  jobData(jobKey: string): JobData {
    return JSON.parse(this.hash(jobKey).get("data") ?? "null") as JobData;
  }

  checkpoint(jobKey: string): Checkpoint | undefined {
    return this.jobData(jobKey).checkpoint;
  }

  /** The job's lock, as BullMQ sets it for the worker it hands the job to. */
  lock(lockKey: string, token: string): void {
    this.values.set(lockKey, Buffer.from(token));
  }

  holds(lockKey: string, token: Arg | undefined): boolean {
    return this.string(lockKey)?.toString() === String(token);
  }

  string(key: string): Buffer | undefined {
    const value = this.values.get(key);
    if (value === undefined || Buffer.isBuffer(value)) return value;
    throw wrongType(key);
  }

  /** A hash, created when missing (as HSET creates it). */
  hash(key: string): Map<string, string> {
    const value = this.values.get(key) ?? new Map<string, string>();
    if (!(value instanceof Map)) throw wrongType(key);
    this.values.set(key, value);
    return value;
  }

  /** A set, created when missing (as SADD creates it). */
  set(key: string): Set<string> {
    const value = this.values.get(key) ?? new Set<string>();
    if (!(value instanceof Set)) throw wrongType(key);
    this.values.set(key, value);
    return value;
  }

  /** A set's members, without creating it. */
  members(key: string): ReadonlySet<string> {
    return this.values.has(key) ? this.set(key) : new Set();
  }

  /** A hash's fields, without creating it. */
  fields(key: string): ReadonlyMap<string, string> {
    return this.values.has(key) ? this.hash(key) : new Map();
  }

  /** SETRANGE: `bytes` written at `offset`, zeros before them where the value was shorter. */
  setRange(key: string, offset: number, bytes: Buffer): number {
    const held = this.string(key) ?? Buffer.alloc(0);
    const grown = Buffer.alloc(Math.max(held.length, offset + bytes.length));
    held.copy(grown);
    bytes.copy(grown, offset);
    this.values.set(key, grown);
    return grown.length;
  }

  /** SREM or HDEL; like Redis, a set or hash left empty is no key at all. */
  remove(key: string, member: string): void {
    const value = this.values.get(key);
    if (value === undefined) return;
    if (Buffer.isBuffer(value)) throw wrongType(key);
    value.delete(member);
    if (value.size === 0) this.values.delete(key);
  }

  /** A client of one process: every command is a step of `steps`. */
  client(steps: Steps): Redis {
    const commands: Record<string, unknown> = {
      defineCommand: (name: string, definition: { numberOfKeys: number }) => {
        const script = SCRIPTS[name];
        if (!script) throw new Error(`MemoryRedis has no model of the script ${name}`);
        const keys = definition.numberOfKeys;
        commands[name] = (...args: Arg[]) =>
          steps.run(name, () => script(this, args.slice(0, keys).map(String), args.slice(keys)));
      },
      get: (key: string) => steps.run("GET", () => this.string(key)?.toString() ?? null),
      getrangeBuffer: (key: string, start: number, end: number) =>
        steps.run("GETRANGE", () =>
          Buffer.from((this.string(key) ?? Buffer.alloc(0)).subarray(start, end + 1)),
        ),
      hgetall: (key: string) => steps.run("HGETALL", () => Object.fromEntries(this.fields(key))),
      smembers: (key: string) => steps.run("SMEMBERS", () => [...this.members(key)]),
    };
    return commands as unknown as Redis;
  }
}
