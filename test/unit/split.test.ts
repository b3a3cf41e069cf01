import { describe, expect, it } from "vitest";
import { JobData, JobInput, JobOptions } from "../../shared/job.ts";
import type { WorkerCensus } from "../../shared/workerCensus.ts";
import { checkpointProblem } from "../../worker/checkpoint/checkpointTrust.ts";
import { compositionPlan, partBytes } from "../../worker/split/compositionPlan.ts";
import { renumberedReport } from "../../worker/split/rejectRenumber.ts";
import { checkSeams, type ShardRange } from "../../worker/split/seamCheck.ts";
import { SeamGuess } from "../../worker/split/seamGuess.ts";
import { mergedCounts } from "../../worker/split/shardTotals.ts";
import {
  decideSplit,
  nominalRanges,
  shardSizeFor,
  unsplittable,
} from "../../worker/split/splitPlan.ts";
import { checkpointFixture } from "../support/checkpointFixture.ts";

const dialect = { delimiter: ",", quote: '"', maxRowBytes: 1024, columns: 3 };

/** The guess for `nominal`, fed the bytes from just before it in `chunk`-byte pieces. */
function guessing(text: string | Buffer, nominal: number, atEnd = true, chunk = 7) {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const seam = new SeamGuess(nominal, dialect);
  let decided = false;
  for (let at = nominal - 1; at < bytes.length && !decided; at += chunk) {
    decided = seam.push(bytes.subarray(at, at + chunk));
  }
  return { start: seam.start(atEnd && !decided), decided, examined: seam.examined };
}

function guess(text: string | Buffer, nominal: number, atEnd = true) {
  return guessing(text, nominal, atEnd).start;
}

function rows(n: number, from = 1): string {
  return Array.from({ length: n }, (_, i) => `${from + i},b${i},c${i}\n`).join("");
}

describe("seam guess", () => {
  it("takes the next row start after an offset in the middle of a row", () => {
    const text = rows(40);
    const nominal = text.indexOf("5,b4") + 2;
    expect(guessing(text, nominal)).toMatchObject({ start: text.indexOf("6,b5"), decided: true });
  });

  it("takes the offset itself when a row starts exactly there", () => {
    const text = rows(40);
    const nominal = text.indexOf("7,b6");
    expect(guess(text, nominal)).toBe(nominal);
  });

  it("does not start a row between the CR and LF of one line break", () => {
    const text = rows(40).replaceAll("\n", "\r\n");
    const nominal = text.indexOf("\n", text.indexOf("3,b2"));
    expect(guess(text, nominal)).toBe(nominal + 1);
  });

  it("reads CR-only line ends", () => {
    const text = rows(40).replaceAll("\n", "\r");
    expect(guess(text, text.indexOf("4,b3") + 1)).toBe(text.indexOf("5,b4"));
    expect(guess(text, text.indexOf("4,b3"))).toBe(text.indexOf("4,b3"));
  });

  it("skips line starts inside a quoted field whose lines do not read as rows", () => {
    const note = Array.from({ length: 30 }, (_, i) => `line ${i} of a note`).join("\n");
    const text = `${rows(5)}6,"${note}",x\n${rows(40, 7)}`;
    const nominal = text.indexOf("line 3");
    expect(guess(text, nominal)).toBe(text.indexOf("7,b0"));
  });

  it("can be fooled by quoted lines that read as rows (the parent finds that out)", () => {
    const note = rows(30, 500);
    const text = `${rows(5)}6,"${note}end",x\n${rows(40, 7)}`;
    const nominal = text.indexOf("503,b3");
    expect(guess(text, nominal)).toBe(nominal);
  });

  it("takes the next line start of ragged rows (a trailing comma on every row), and stops reading after about a row", () => {
    // Every row has a field more than the header: no reading has the file's number of fields.
    const line = (i: number) => `${i},name ${i},${i * 3},\n`;
    const text = Array.from({ length: 40_000 }, (_, i) => line(i)).join("");
    const nominal = text.indexOf(line(20_000)) + 3;
    const seam = guessing(text, nominal, false, 4096);
    expect(seam.start).toBe(text.indexOf(line(20_001)));
    expect(seam.decided).toBe(true);
    // The inside reading's first row grows past maxRowBytes, and then the guess is decided.
    expect(seam.examined).toBeLessThanOrEqual(dialect.maxRowBytes + 2 * 4096);
  });

  it("takes the first row start where the inside reading falls back in step (a quote in a comment line)", () => {
    // The inside reading closes its "quoted field" at the quote in the comment line and then
    // reads the same rows as the outside one: only the rows before that decide, and they are
    // the file's (a blank line among them).
    const comments = { ...dialect, commentChar: "#" };
    const lines = Array.from({ length: 60 }, (_, i) =>
      i % 11 === 5 ? "\n" : i % 13 === 7 ? `# note ${i}, "quoted\n` : `${i},b${i},c${i}\n`,
    ).join("");
    const nominal = lines.indexOf("3,b3") + 1;
    const seam = new SeamGuess(nominal, comments);
    const bytes = Buffer.from(lines);
    seam.push(bytes.subarray(nominal - 1));
    expect(seam.start(true)).toBe(lines.indexOf("4,b4"));
  });

  it("takes the first line start when rows are ragged every way (1 to 4 fields)", () => {
    const ragged = Array.from({ length: 60 }, (_, i) => `${"x,".repeat(i % 4)}y\n`).join("");
    const nominal = ragged.indexOf("\n", 20) - 2;
    const first = ragged.indexOf("\n", nominal - 1) + 1;
    expect(guess(ragged, nominal, false)).toBe(first);
  });

  it("costs the bytes it reads, once, whatever they hold: hostile windows decide within about a row", () => {
    const mib = 1024 * 1024;
    const big = { ...dialect, maxRowBytes: 64 * 1024 };
    const shapes = {
      "no line breaks": "x".repeat(mib),
      "only quotes": '"'.repeat(mib),
      "only line breaks": "\n".repeat(mib),
      "quotes and line breaks": '"\n'.repeat(mib / 2),
      delimiters: ",".repeat(mib),
      "a quote then text": `"${"abc\n".repeat(mib / 4)}`,
    };
    for (const [shape, text] of Object.entries(shapes)) {
      const seam = new SeamGuess(1000, big);
      const bytes = Buffer.from(text);
      let at = 999;
      while (at < bytes.length && !seam.push(bytes.subarray(at, at + 65536))) at += 65536;
      // Decided within about a row of maxRowBytes: never the whole window.
      expect(seam.examined, shape).toBeLessThanOrEqual(2 * big.maxRowBytes + 65536);
      expect(typeof (seam.start(false) ?? 0), shape).toBe("number");
    }
  });

  it("starts nowhere when no row boundary is in the bytes, and at the source's end when they end there", () => {
    const text = "x".repeat(5000);
    expect(guessing(text, 100, false).start).toBeUndefined();
    const short = `${rows(3)}4,b,`;
    const nominal = short.indexOf("2,b1") + 1;
    expect(guess(short, nominal, true)).toBe(short.indexOf("3,b2"));
  });
});

describe("seam check", () => {
  const nominal = [{ end: 10 }, { end: 20 }, { end: 30 }, { end: 40 }];
  const from = (ranges: Array<ShardRange | "failed" | undefined>) => (i: number) => ranges[i];

  it("takes every shard when each starts where the one before ended", () => {
    const ranges = [
      { start: 0, end: 12 },
      { start: 12, end: 21 },
      { start: 21, end: 30 },
      { start: 30, end: 40 },
    ];
    expect(checkSeams(nominal, from(ranges), 40)).toEqual({
      kind: "checked",
      used: [0, 1, 2, 3],
      end: 40,
      skipped: [],
    });
  });

  it("redoes the first shard that starts elsewhere, from the checked end before it", () => {
    const ranges = [
      { start: 0, end: 12 },
      { start: 11, end: 21 },
      { start: 25, end: 30 },
      { start: 30, end: 40 },
    ];
    expect(checkSeams(nominal, from(ranges), 40)).toEqual({
      kind: "redo",
      redos: [
        { index: 1, start: 12 },
        // Shard 2 starts off the end shard 1 reported: redone in the same round.
        { index: 2, start: 21 },
      ],
      skipped: [],
    });
  });

  it("redoes every wrong seam of a round at once, and again one whose predecessor then ends elsewhere", () => {
    const round1 = [
      { start: 0, end: 12 },
      { start: 11, end: 21 },
      { start: 21, end: 30 },
      { start: 29, end: 40 },
    ];
    expect(checkSeams(nominal, from(round1), 40)).toEqual({
      kind: "redo",
      redos: [
        { index: 1, start: 12 },
        { index: 3, start: 30 },
      ],
      skipped: [],
    });
    // Redone, shard 1 ends at 22 (not where its wrong reading ended): shard 2 goes again.
    const round2 = [round1[0], { start: 12, end: 22 }, round1[2], { start: 30, end: 40 }];
    expect(checkSeams(nominal, from(round2), 40)).toEqual({
      kind: "redo",
      redos: [{ index: 2, start: 22 }],
      skipped: [],
    });
    // A later shard not finished or failed is left for the round that reaches it.
    const waiting = [round1[0], round1[1], undefined, "failed" as const];
    expect(checkSeams(nominal, from(waiting), 40)).toEqual({
      kind: "redo",
      redos: [{ index: 1, start: 12 }],
      skipped: [],
    });
  });

  it("skips shards a row longer than a shard covered, whatever they guessed", () => {
    const ranges = [
      { start: 0, end: 33 },
      { start: 14, end: 25 },
      "failed" as const,
      { start: 33, end: 40 },
    ];
    expect(checkSeams(nominal, from(ranges), 40)).toEqual({
      kind: "checked",
      used: [0, 3],
      end: 40,
      // Their figures leave the parent's live totals.
      skipped: [1, 2],
    });
  });

  it("stops at the source's end: later shards are not needed", () => {
    const ranges = [{ start: 0, end: 40 }, undefined, undefined, undefined];
    expect(checkSeams(nominal, from(ranges), 40)).toEqual({
      kind: "checked",
      used: [0],
      end: 40,
      skipped: [1, 2, 3],
    });
  });

  it("names a needed shard that failed or has no result", () => {
    expect(checkSeams(nominal, from([{ start: 0, end: 12 }, "failed"]), 40)).toEqual({
      kind: "failed",
      index: 1,
    });
    expect(checkSeams(nominal, from([{ start: 0, end: 12 }]), 40)).toEqual({
      kind: "missing",
      index: 1,
    });
  });
});

describe("composition plan", () => {
  it("covers every byte in order, parts at least the minimum but the last, copies at most the maximum", () => {
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 500; round++) {
      const sizes = Array.from({ length: 1 + random(8) }, () => random(40));
      const plan = compositionPlan(sizes, 5, 12);
      const pieces = plan.flatMap((p) => ("copy" in p ? [p.copy] : p.merge));
      let segment = 0;
      let at = 0;
      for (const piece of pieces) {
        while (piece.segment !== segment) {
          expect(at).toBe(sizes[segment]);
          segment++;
          at = 0;
        }
        expect(piece.start).toBe(at);
        at = piece.end;
      }
      const total = sizes.reduce((a, b) => a + b, 0);
      expect(plan.reduce((sum, p) => sum + partBytes(p), 0)).toBe(total);
      plan.slice(0, -1).forEach((p) => {
        expect(partBytes(p)).toBeGreaterThanOrEqual(5);
      });
      for (const p of plan) if ("copy" in p) expect(partBytes(p)).toBeLessThanOrEqual(12);
    }
  });

  it("copies large outputs whole and merges a small one with its neighbour's head", () => {
    expect(compositionPlan([10, 3, 10], 5, 100)).toEqual([
      { copy: { segment: 0, start: 0, end: 10 } },
      {
        merge: [
          { segment: 1, start: 0, end: 3 },
          { segment: 2, start: 0, end: 2 },
        ],
      },
      { copy: { segment: 2, start: 2, end: 10 } },
    ]);
  });
});

describe("reject report renumbering", () => {
  it("shifts each row's two numbers and leaves every other byte, quoted newlines too", async () => {
    const report = [
      '1,1,amount,type-error,"not a number","1,x,""a\r\nb"",abc"\r\n',
      "7,9,,extra-cell,too many,7\r\n",
    ].join("");
    const chunks = async function* () {
      const bytes = Buffer.from(report);
      for (let i = 0; i < bytes.length; i += 5) yield bytes.subarray(i, i + 5);
    };
    const out: Buffer[] = [];
    for await (const b of renumberedReport(chunks(), { rows: 100, lines: 250 })) {
      out.push(b);
    }
    expect(Buffer.concat(out).toString()).toBe(
      [
        '101,251,amount,type-error,"not a number","1,x,""a\r\nb"",abc"\r\n',
        "107,259,,extra-cell,too many,7\r\n",
      ].join(""),
    );
  });

  it("renumbers a line of any length, as long as a whole run wrote it (a long enum message, a quoted raw row)", async () => {
    const values = Array.from({ length: 400 }, (_, i) => `value-${i}`).join(",");
    const raw = `"${'x""'.repeat(3000)}",${"y,".repeat(2000)}\n"z"`;
    const line = `3,4,status,constraint-error,"must be one of ${values}","""${raw.replaceAll('"', '""')}"""\n`;
    const report = Buffer.from(`${line}${line}9,12,,blank-row,empty,\n`);
    expect(report.length).toBeGreaterThan(20_000);
    for (const size of [1, 3, 4096, report.length]) {
      const chunks = async function* () {
        for (let i = 0; i < report.length; i += size) yield report.subarray(i, i + size);
      };
      const out: Buffer[] = [];
      for await (const b of renumberedReport(chunks(), { rows: 10, lines: 20 })) out.push(b);
      const shifted = line.replace(/^3,4,/, "13,24,");
      expect(Buffer.concat(out).toString(), `chunks of ${size}`).toBe(
        `${shifted}${shifted}19,32,,blank-row,empty,\n`,
      );
    }
  });

  it("refuses a report row that does not start with its two numbers", async () => {
    const read = async (text: string) => {
      const chunks = async function* () {
        yield Buffer.from(text);
      };
      for await (const _ of renumberedReport(chunks(), { rows: 1, lines: 1 }));
    };
    await expect(read("x,1,a\n")).rejects.toThrow(/does not start with its numbers/);
    await expect(read(`${"1".repeat(60)},1,a\n`)).rejects.toThrow(
      /does not start with its numbers/,
    );
    await expect(read("1,2,a\n1")).rejects.toThrow(/does not start with its numbers/);
  });
});

describe("split decision and totals", () => {
  it("splits by options.split: auto above its threshold, off never, a size at twice it", () => {
    const MiB = 1024 * 1024;
    expect(shardSizeFor("off", 10_000 * MiB)).toBeUndefined();
    expect(shardSizeFor("auto", 100 * MiB)).toBeUndefined();
    expect(shardSizeFor("auto", 1024 * MiB)).toBe(64 * MiB);
    expect(shardSizeFor(5 * MiB, 9 * MiB)).toBeUndefined();
    expect(shardSizeFor(5 * MiB, 10 * MiB)).toBe(5 * MiB);
    expect(nominalRanges(23, 10)).toEqual([
      [0, 10],
      [10, 20],
      [20, 23],
    ]);
    expect(nominalRanges(100_000, 1)).toHaveLength(2000);
  });

  it("adds shards' counts and makes their summaries' row numbers the file's", () => {
    const counts = (rows: number[]) => ({
      read: 10,
      valid: 10 - rows.length,
      rejected: rows.length,
      errors: { "type-error": rows.length },
      fields: { amount: { errors: { "type-error": rows.length }, rows } },
    });
    expect(
      mergedCounts([
        { counts: counts([2, 5]), rowShift: 0 },
        { counts: counts([1, 3, 4, 9]), rowShift: 10 },
      ]),
    ).toEqual({
      read: 20,
      valid: 14,
      rejected: 6,
      errors: { "type-error": 6 },
      fields: { amount: { errors: { "type-error": 6 }, rows: [2, 5, 11, 13, 14] } },
    });
  });
});

describe("options.split in the job contract", () => {
  const MiB = 1024 * 1024;
  const input = (split: unknown) => ({
    source: { bucket: "bucket-in", key: "a.csv" },
    destination: { bucket: "bucket-out", key: "a.csv" },
    transform: "contacts-normalize",
    options: { split },
  });

  it("takes auto (the default), off, or a shard size of at least 5 MiB", () => {
    expect(JobOptions.parse({}).split).toBe("auto");
    expect(JobInput.safeParse(input("off")).success).toBe(true);
    expect(JobInput.safeParse(input(64 * MiB)).success).toBe(true);
    expect(JobInput.safeParse(input(4 * MiB)).success).toBe(false);
    expect(JobInput.safeParse(input("half")).success).toBe(false);
  });

  it("splits with auto only for two or more worker processes that all have split jobs; a shard size splits anyway", async () => {
    const checkpoint = {
      ...checkpointFixture({ bucket: "bucket-out", key: "a.csv" }),
      source: { etag: '"x"', size: 1024 * MiB },
    };
    const judges = {
      bind: () => ({ outputHeader: ["a"], judge: () => ({ ok: true as const, cells: [] }) }),
    };
    const head = async () => ({ header: ["a"], columns: 1 });
    const decide = (split: unknown, workers: WorkerCensus | undefined) =>
      decideSplit(JobData.parse({ ...input(split), options: { split } }), checkpoint, judges, "9", {
        readFirstRow: head,
        workers: async () => workers,
      });
    expect(await decide("auto", { contracts: [2] })).toEqual({
      unsplit: expect.stringMatching(/one worker process/),
    });
    // A worker of the previous release in the pool (a rolling upgrade): it would fail shards.
    expect(await decide("auto", { contracts: [1, 2, 2] })).toEqual({
      unsplit: expect.stringMatching(
        /1 of the queue's 3 worker processes are of a release without split jobs/,
      ),
    });
    expect(await decide("auto", undefined)).toEqual({
      unsplit: expect.stringMatching(/does not list its clients/),
    });
    const auto = await decide("auto", { contracts: [2, 2] });
    expect("split" in auto && auto.split.shards).toHaveLength(16);
    const sized = await decide(256 * MiB, { contracts: [1] });
    expect("split" in sized && sized.split.shards).toHaveLength(4);
  });

  it("says why a gzip source, UTF-16 text or gzip output runs whole", () => {
    const data = (options: Record<string, unknown>) =>
      JobData.parse({ ...input(8 * MiB), options: { split: 8 * MiB, ...options } });
    const checkpoint = checkpointFixture({ bucket: "bucket-out", key: "a.csv" });
    const gzip = { ...checkpoint, source: { ...checkpoint.source, gzip: true } };
    expect(unsplittable(data({}), checkpoint)).toBeUndefined();
    expect(unsplittable(data({}), gzip)).toMatch(/gzip/);
    expect(unsplittable(data({ encoding: "utf-16" }), checkpoint)).toMatch(/UTF-16/);
    expect(unsplittable(data({ outputCompression: "gzip" }), checkpoint)).toMatch(/gzip output/);
    expect(unsplittable(data({ maxInvalidRatio: 0.1 }), checkpoint)).toMatch(/maxInvalidRatio/);
  });
});

describe("a shard's checkpoint, as the trust check sees it", () => {
  const MiB = 1024 * 1024;
  const base = {
    source: { bucket: "bucket-in", key: "a.csv" },
    destination: { bucket: "bucket-out", key: "a.csv" },
    transform: "contacts-normalize",
  };
  const shard = {
    parent: "7",
    index: 2,
    start: 100,
    end: 200,
    pinned: true,
    source: { etag: '"x"', size: 300 },
    delimiter: ",",
    header: ["a"],
    columns: 1,
    partSize: 5 * MiB,
  };
  const at = (offset: number) => {
    const cp = checkpointFixture({ bucket: "bucket-out", key: "a.csv" });
    const source = { etag: '"x"', size: 300 };
    const mark = { ...cp.output.mark, offset };
    return {
      ...cp,
      source,
      shardStart: offset,
      output: { ...cp.output, mark },
      rejects: { ...cp.rejects, mark },
    };
  };
  const key = "bull:q:7-shard-2-abcd";

  it("takes a pinned shard's checkpoint at its start, and an unpinned one's within its range", () => {
    expect(checkpointProblem(JobData.parse({ ...base, shard }), at(100), key)).toBeUndefined();
    const guessed = JobData.parse({ ...base, shard: { ...shard, pinned: false } });
    expect(checkpointProblem(guessed, at(150), key)).toBeUndefined();
  });

  it("refuses a first row elsewhere, marks before it, a split in a shard, a shard's row on a whole job", () => {
    const data = JobData.parse({ ...base, shard });
    expect(checkpointProblem(data, at(120), key)).toMatch(/not where the shard starts/);
    const early = { ...at(100), rejects: { ...at(100).rejects, mark: at(90).output.mark } };
    expect(checkpointProblem(data, early, key)).toMatch(/before the shard's first row/);
    const split = {
      shards: [
        { jobId: "a", start: 0, end: 5, pinned: true },
        { jobId: "b", start: 5, end: 9, pinned: false },
      ],
      retired: [],
      redone: 0,
      header: null,
      columns: 1,
    };
    expect(checkpointProblem(data, { ...at(100), split }, key)).toMatch(/the job is a shard/);
    expect(checkpointProblem(JobData.parse(base), at(100), key)).toMatch(/no shard/);
  });
});
