import type { S3Client } from "@aws-sdk/client-s3";
import type { ComposedPart, ComposedSource } from "./composedUpload.ts";
import { compositionPlan, partBytes } from "./compositionPlan.ts";
import { type NumberShift, renumberedReport } from "./rejectRenumber.ts";
import { readObject } from "./shardObjects.ts";

// What a split job's two outputs are composed of: the destination, of server-side copies of the
// shards' outputs (merged where a piece is under S3's part minimum); the reject report, of the
// shards' reports read back, renumbered and cut into parts.

/** A shard's completed temporary object. */
export interface ShardObject {
  bucket: string;
  key: string;
  etag: string;
  bytes: number;
}

export function copiedOutputs(s3: S3Client, outputs: readonly ShardObject[]): ComposedSource {
  const plan = compositionPlan(outputs.map((o) => o.bytes));
  return {
    bytes: outputs.reduce((sum, o) => sum + o.bytes, 0),
    async *parts(skip: number): AsyncIterable<ComposedPart> {
      for (const part of plan.slice(skip)) {
        if ("copy" in part) {
          const o = outputs[part.copy.segment] as ShardObject;
          yield { copy: { ...o, size: o.bytes, start: part.copy.start, end: part.copy.end } };
          continue;
        }
        const bytes: Buffer[] = [];
        for (const piece of part.merge) {
          const o = outputs[piece.segment] as ShardObject;
          for await (const chunk of readObject(s3, o, piece.start, piece.end))
            bytes.push(Buffer.from(chunk));
        }
        const body = Buffer.concat(bytes);
        if (body.length !== partBytes(part)) throw new Error("a shard's output was cut short");
        yield { body };
      }
    },
  };
}

/**
 * The whole report: the first shard's as it is, the others' renumbered by `shifts`, cut into
 * parts of `partSize`. A resumed composition makes the same text again and skips the parts done.
 */
export function renumberedReports(
  s3: S3Client,
  reports: readonly ShardObject[],
  shifts: readonly NumberShift[],
  partSize: number,
): ComposedSource {
  const text = async function* () {
    for (const [i, report] of reports.entries()) {
      const body = readObject(s3, report);
      if (i === 0) yield* body;
      else {
        const shift = shifts[i] ?? { rows: 0, lines: 0 };
        yield* renumberedReport(body, shift);
      }
    }
  };
  return { parts: (skip) => cutIntoParts(text(), partSize, skip) };
}

/** A stream's bytes as parts of `partSize` (the last may be shorter), after the first `skip`. */
async function* cutIntoParts(
  chunks: AsyncIterable<Uint8Array>,
  partSize: number,
  skip: number,
): AsyncGenerator<ComposedPart> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let number = 0;
  for await (const chunk of chunks) {
    held.push(Buffer.from(chunk));
    heldBytes += chunk.length;
    while (heldBytes >= partSize) {
      const all = Buffer.concat(held);
      held = [all.subarray(partSize)];
      heldBytes -= partSize;
      if (++number > skip) yield { body: all.subarray(0, partSize) };
    }
  }
  if (heldBytes > 0 && ++number > skip) yield { body: Buffer.concat(held) };
}
