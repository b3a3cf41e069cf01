import type { S3Client } from "@aws-sdk/client-s3";
import type { OutputCheckpoint, OutputSide, UploadedPart } from "../../shared/job.ts";
import type { CheckpointStore } from "../checkpoint/checkpointStore.ts";
import { restartedOutput } from "../checkpoint/outputRestart.ts";
import { OutputLostError } from "../errors.ts";
import { MultipartSession } from "../upload/multipartSession.ts";
import { abortStrayUploads } from "../upload/strayUploads.ts";

// The composed upload: one output of a split job made of parts that are copies of, or bytes
// read from, its shards' temporary outputs. Checkpointed like any upload (UploadId before any
// part, each part as it is made) in the parent's checkpoint, so a parent that crashes while
// composing goes on at the next part, and completion is recognized if it already happened.

/** A copy of bytes [start, end) of a temporary object, or bytes to send. */
export type ComposedPart =
  | {
      copy: { bucket: string; key: string; etag: string; size: number; start: number; end: number };
    }
  | { body: Buffer };

export interface ComposedSource {
  /** The object's size, when known before its parts are made (0: an empty object). */
  bytes?: number;
  /** The parts after the first `done`, in order (the same parts on every call). */
  parts(done: number): AsyncIterable<ComposedPart>;
}

/** Parts made at once: copies take the server's time, not the worker's. */
const IN_FLIGHT = 8;

export interface ComposeInput {
  s3: S3Client;
  store: CheckpointStore;
  side: OutputSide;
  contentType: string;
}

/** Composes one output; an upload lost meanwhile (aborted, expired) is started over once. */
export async function compose(input: ComposeInput, source: ComposedSource) {
  try {
    return await composeOnce(input, source);
  } catch (error) {
    if (!(error instanceof OutputLostError)) throw error;
    const { store, side } = input;
    await store.save({
      ...store.current,
      [side]: restartedOutput(store.current[side], store.current),
    });
    return composeOnce(input, source);
  }
}

async function composeOnce(
  input: ComposeInput,
  source: ComposedSource,
): Promise<{ etag: string; bytes: number; parts: number }> {
  const { s3, store, side, contentType } = input;
  let state = store.current[side];
  const saved = (next: OutputCheckpoint) => {
    state = next;
    return store.save({ ...store.current, [side]: next });
  };
  const finished = (s: OutputCheckpoint) => ({
    etag: s.completed?.etag ?? "",
    bytes: s.bytes,
    parts: s.parts.length,
  });
  if (state.completed) return finished(state);
  const session = new MultipartSession({
    s3,
    bucket: state.bucket,
    key: state.key,
    contentType,
    // Copies are made and checked by the server itself; a CRC32 per part would bind a copy
    // to how each server reports checksums for copied parts.
    checksums: false,
    assertOwner: () => store.assertOwner(),
    uploads: {
      creating: () => store.markCreating(side),
      created: (uploadId) => store.recordUpload(side, uploadId),
    },
  });
  if (source.bytes === 0) {
    const { etag } = await session.putWhole(Buffer.alloc(0));
    await saved({ ...state, completed: { etag, bytes: 0 } });
    return finished(state);
  }
  if (!state.uploadId) {
    // A parent that died between CreateMultipartUpload and its checkpoint left one behind.
    await abortStrayUploads(store, side, await store.uploadRecords(), undefined, session);
  }
  const uploadId = state.uploadId ?? (await session.create());
  if (!state.uploadId) await saved({ ...state, uploadId });
  await makeParts(session, uploadId, source, () => state, saved);
  if (source.bytes !== undefined && state.bytes !== source.bytes) {
    throw new Error(`composed ${state.bytes} bytes of ${source.bytes} for ${side}; retrying`);
  }
  const etag = await session.complete({ uploadId, parts: state.parts, bytes: state.bytes });
  await saved({ ...state, completed: { etag, bytes: state.bytes } });
  return finished(state);
}

/**
 * Makes the parts after those in the checkpoint, IN_FLIGHT at a time, checkpointing the
 * contiguous prefix of finished ones (a crash then redoes at most the parts in flight).
 */
async function makeParts(
  session: MultipartSession,
  uploadId: string,
  source: ComposedSource,
  current: () => OutputCheckpoint,
  saved: (next: OutputCheckpoint) => Promise<void>,
): Promise<void> {
  const made = new Map<number, UploadedPart>();
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const recordPrefix = async () => {
    const state = current();
    let { parts, bytes } = state;
    for (let part = made.get(parts.length + 1); part; part = made.get(parts.length + 1)) {
      made.delete(part.PartNumber);
      parts = [...parts, part];
      bytes += part.size;
    }
    if (parts !== state.parts) await saved({ ...state, parts, bytes });
  };
  let number = current().parts.length;
  for await (const part of source.parts(number)) {
    if (failure) break;
    const partNumber = ++number;
    const task = (async () => {
      const uploaded =
        "copy" in part
          ? await session.copyPart(uploadId, partNumber, part.copy)
          : await session.uploadPart(uploadId, partNumber, part.body);
      made.set(partNumber, uploaded);
      await recordPrefix();
    })().catch((error: unknown) => {
      failure ??= { error };
    });
    running.add(task);
    void task.finally(() => running.delete(task));
    while (running.size >= IN_FLIGHT) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.error;
}
