// The seam check: which shards' rows make up the file, read from the first shard on. Shard 0
// starts at byte 0, a true row boundary; a shard that starts exactly where a checked shard
// ended starts at a true boundary too (the framer's state there is the whole file's), so its
// rows and its end are the file's. A shard that starts elsewhere guessed wrong.

/** Where a finished shard's rows started and where it stopped. */
export interface ShardRange {
  start: number;
  end: number;
}

/** A shard to read again, exactly from `start`. */
export interface Redo {
  index: number;
  start: number;
}

export type SeamCheck =
  /** The shards, in order, whose rows are the file's, ending at byte `end`. */
  | { kind: "checked"; used: number[]; end: number; skipped: number[] }
  /**
   * Shards to read again. The first starts at the checked end before it; each later one at
   * the end the shard before it reported, which is right when that shard's reading fell back
   * in step with the file's before its end (the usual case, even for a shard that started
   * wrong): so every wrong seam of a round is redone at once, not one a round. A later round
   * redoes again any whose predecessor then ends elsewhere.
   */
  | { kind: "redo"; redos: Redo[]; skipped: number[] }
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
  // Shards wholly inside a row that a shard before them read to its end, or after the end.
  const skipped = (before: number) => {
    const taken = new Set(used);
    return [...Array(before).keys()].filter((index) => !taken.has(index));
  };
  let end = 0;
  for (const [index, shard] of nominal.entries()) {
    if (end >= size) break;
    if (shard.end <= end) continue;
    const got = outcome(index);
    if (got === "failed") return { kind: "failed", index };
    if (got === undefined) return { kind: "missing", index };
    if (got.start !== end) {
      const later = laterRedos(nominal, outcome, index, got.end, size);
      return { kind: "redo", redos: [{ index, start: end }, ...later], skipped: skipped(index) };
    }
    used.push(index);
    end = got.end;
  }
  return { kind: "checked", used, end, skipped: skipped(nominal.length) };
}

/** The redos after shard `from`, each at the end its predecessor reported (see SeamCheck). */
function laterRedos(
  nominal: ReadonlyArray<{ end: number }>,
  outcome: (index: number) => ShardRange | "failed" | undefined,
  from: number,
  reportedEnd: number,
  size: number,
): Redo[] {
  const redos: Redo[] = [];
  let end = reportedEnd;
  for (let index = from + 1; index < nominal.length && end < size; index++) {
    if ((nominal[index] as { end: number }).end <= end) continue;
    const got = outcome(index);
    // A shard that failed or has not finished is judged when the check reaches it.
    if (got === "failed" || got === undefined) break;
    if (got.start !== end) redos.push({ index, start: end });
    end = got.end;
  }
  return redos;
}
