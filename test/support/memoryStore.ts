import type { Checkpoint, OutputSide } from "../../shared/job.ts";
import type { AttemptStore } from "../../worker/checkpoint/checkpointStore.ts";
import type { Steps } from "./steps.ts";

// A job's Redis records in memory (its saved checkpoint, carried text, recorded uploads and
// creating marks), and one attempt's store over them, each write a step of that attempt.

export class MemoryRedis {
  checkpoint: Checkpoint | undefined;
  readonly carries = new Map<string, Buffer>();
  readonly uploads = new Map<string, OutputSide>();
  readonly creating = new Map<OutputSide, number>();
}

export function memoryStore(redis: MemoryRedis, steps: Steps, start: Checkpoint): AttemptStore {
  let current = start;
  return {
    get current() {
      return current;
    },
    stage(checkpoint) {
      current = checkpoint;
    },
    async save(checkpoint) {
      current = checkpoint;
      await steps.run("save", () => {
        redis.checkpoint = structuredClone(checkpoint);
      });
    },
    carryKey: (name) => `job:carry:${name}`,
    async writeCarry(key, offset, bytes) {
      await steps.run("writeCarry", () => {
        const held = redis.carries.get(key) ?? Buffer.alloc(0);
        const grown = Buffer.alloc(Math.max(held.length, offset + bytes.length));
        held.copy(grown);
        bytes.copy(grown, offset);
        redis.carries.set(key, grown);
      });
    },
    readCarry: (key, bytes) =>
      steps.run("readCarry", () => {
        const held = redis.carries.get(key);
        return held && held.length >= bytes ? Buffer.from(held.subarray(0, bytes)) : undefined;
      }),
    async deleteCarry(key) {
      await steps.run("deleteCarry", () => redis.carries.delete(key));
    },
    async markCreating(side) {
      await steps.run("markCreating", () => redis.creating.set(side, Date.now()));
    },
    async recordUpload(side, uploadId) {
      await steps.run("recordUpload", () => {
        redis.uploads.set(uploadId, side);
        redis.creating.delete(side);
      });
    },
    recordedUploads: () => steps.run("recordedUploads", () => new Map(redis.uploads)),
    async forgetUploads(uploadIds) {
      await steps.run("forgetUploads", () => {
        for (const uploadId of uploadIds) redis.uploads.delete(uploadId);
      });
    },
    creatingSince: (side) =>
      steps.run("creatingSince", () => {
        const at = redis.creating.get(side);
        return at === undefined ? undefined : new Date(at);
      }),
    async clearCreating(side) {
      await steps.run("clearCreating", () => redis.creating.delete(side));
    },
    assertOwner: () => steps.run("assertOwner", () => undefined),
  };
}
