import { MAX_PART_SIZE, MIN_PART_SIZE } from "../../shared/job.ts";

// The plan that joins the shards' temporary outputs into one object with one multipart upload:
// a part is either a server-side copy of a byte range of one shard's output (UploadPartCopy),
// or, where a piece is under S3's part minimum, the bytes of a few neighbouring pieces read and
// sent as one part. No byte of an output large enough to copy passes through the worker.

/** Bytes [start, end) of segment `segment`. */
export interface Piece {
  segment: number;
  start: number;
  end: number;
}

export type PlannedPart = { copy: Piece } | { merge: Piece[] };

/**
 * The parts, in order, for segments of these sizes. Every part but the last holds at least
 * `minPart` bytes, and a copy at most `maxCopy`; the plan depends on the sizes alone, so a
 * resumed composition finds the same parts.
 */
export function compositionPlan(
  sizes: readonly number[],
  minPart = MIN_PART_SIZE,
  maxCopy = MAX_PART_SIZE,
): PlannedPart[] {
  const parts: PlannedPart[] = [];
  let merging: Piece[] = [];
  let merged = 0;
  sizes.forEach((size, segment) => {
    let at = 0;
    while (at < size) {
      if (merged === 0 && size - at >= minPart) {
        const end = Math.min(size, at + maxCopy);
        parts.push({ copy: { segment, start: at, end } });
        at = end;
        continue;
      }
      const end = Math.min(size, at + minPart - merged);
      merging.push({ segment, start: at, end });
      merged += end - at;
      at = end;
      if (merged >= minPart) {
        parts.push({ merge: merging });
        merging = [];
        merged = 0;
      }
    }
  });
  if (merging.length > 0) parts.push({ merge: merging });
  return parts;
}

export function partBytes(part: PlannedPart): number {
  const pieces = "copy" in part ? [part.copy] : part.merge;
  return pieces.reduce((sum, p) => sum + p.end - p.start, 0);
}
