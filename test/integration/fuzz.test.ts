import fc from "fast-check";
import Papa from "papaparse";
import { describe, expect, it } from "vitest";
import { job, run, useWorkerStack } from "./helpers.ts";

// Random bytes through whole jobs: a real worker process reads documents made of the pieces
// that break CSV readers (stray and doubled quotes, lone CRs, NUL, invalid and truncated UTF-8,
// fields longer than maxRowBytes) and must judge every row, crash on none, and keep its memory.

const PIECES: Buffer[] = [
  '"',
  '""',
  ",",
  "\r",
  "\n",
  "\r\n",
  "x",
  "42",
  "é",
  "😀",
  "\u0000",
  " ",
].map((text) => Buffer.from(text, "utf8"));
PIECES.push(Buffer.from([0xff]), Buffer.from([0xc3]), Buffer.from("y".repeat(1500)));

const document = fc
  .array(fc.nat({ max: PIECES.length - 1 }), { maxLength: 300 })
  .map((picks) =>
    Buffer.concat([Buffer.from("a,b,c\n"), ...picks.map((i) => PIECES[i] as Buffer)]),
  );

const schema = {
  fields: [
    { name: "a", type: "integer" },
    { name: "b", type: "string" },
    { name: "c", type: "string", constraints: { maxLength: 20 } },
  ],
};

describe("random bytes through whole jobs", () => {
  const t = useWorkerStack({ WORKER_CONCURRENCY: "4" });

  it("judges every row of any document, with line numbers, and never crashes", async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(document, async (bytes) => {
        n++;
        const lines = bytes.toString("latin1").split(/\r\n|\r|\n/).length;
        await t.stack.put(`fuzz/${n}.csv`, bytes);
        const result = await run(
          t.queue,
          job(`fuzz/${n}.csv`, `fuzz/${n}.out.csv`, schema, { maxRowBytes: 1024 }),
        );
        expect(result.rows.valid + result.rows.rejected).toBe(result.rows.read);
        // The output is RFC 4180 that reads back as the header plus one record per valid row.
        const output = (await t.stack.get(`fuzz/${n}.out.csv`)).toString("utf8");
        const parsed = Papa.parse<string[]>(output.replace(/\r\n$/, ""), { newline: "\r\n" });
        expect(parsed.errors).toEqual([]);
        expect(parsed.data).toHaveLength(result.rows.valid + 1);
        // Every reject names a row and a physical line of the document.
        const report = Papa.parse<string[]>(
          (await t.stack.get(`fuzz/${n}.out.rejects.csv`)).toString("utf8").replace(/\r\n$/, ""),
          { newline: "\r\n" },
        );
        const records = report.data.slice(1);
        expect(new Set(records.map((r) => r[0])).size).toBe(result.rows.rejected);
        for (const [rowNumber, lineNumber, , code] of records) {
          expect(Number(rowNumber)).toBeGreaterThanOrEqual(1);
          expect(Number(lineNumber)).toBeGreaterThanOrEqual(2);
          expect(Number(lineNumber)).toBeLessThanOrEqual(lines);
          expect(code).toMatch(/^[a-z]+(-[a-z]+)*$/);
        }
      }),
      { numRuns: 100, seed: Number(process.env.FUZZ_SEED ?? 20261126) },
    );
    expect(t.worker.child.exitCode).toBeNull();
    expect(await t.stack.openUploads()).toEqual([]);
  });
});
