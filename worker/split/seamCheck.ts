// The seam check: which shards' rows make up the file, read from the first shard on. Shard 0
// starts at byte 0, a true row boundary; a shard that starts exactly where a checked shard
// ended starts at a true boundary too (the framer's state there is the whole file's), so its
// rows and its end are the file's. A shard that starts elsewhere guessed wrong.

/** Where a finished shard's rows started and where it stopped. */
export interface ShardRange {
  start: number;
  end: number;
}

export type SeamCheck =
  /** The shards, in order, whose rows are the file's, ending at byte `end`. */
  | { kind: "checked"; used: number[]; end: number }
  /** This shard must be read again from `start`, the checked end of the one before. */
  | { kind: "redo"; index: number; start: number }
  /** This shard, needed, failed (or has no result). */
  | { kind: "failed"; index: number }
  | { kind: "missing"; index: number };

/**
 * `nominal` are the shards' byte ranges as planned; `outcome` says how each finished. A shard
 * whose whole range lies before the checked end (a row longer than a shard) is not needed.
 */
export function checkSeams(
  nominal: ReadonlyArray<{ end: number }>,
  outcome: (index: number) => ShardRange | "failed" | undefined,
  size: number,
): SeamCheck {
  const used: number[] = [];
  let end = 0;
  for (const [index, shard] of nominal.entries()) {
    if (end >= size) break;
    if (shard.end <= end) continue;
    const got = outcome(index);
    if (got === "failed") return { kind: "failed", index };
    if (got === undefined) return { kind: "missing", index };
    if (got.start !== end) return { kind: "redo", index, start: end };
    used.push(index);
    end = got.end;
  }
  return { kind: "checked", used, end };
}
