import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import type { JobResult } from "../../shared/job.ts";
import { HEAD_BYTES } from "../../worker/infer/objectHead.ts";
import { BUCKET } from "../support/stack.ts";
import { enqueueArgs, runCli, useWorkerStack, writeSchemaFile } from "./helpers.ts";

// `s3csv infer` through the CLI against a real S3-compatible server: the schema it prints for
// an awkward file, the one ranged GET it reads it with, a job run with that schema on the same
// object (no row rejected), and the objects it refuses to describe.

const STATUSES = ["new", "paid", "shipped"];

/** 60 orders with a BOM, CRLF, a quoted newline, NA amounts, an empty column and dates. */
function awkwardOrders(): Buffer {
  const lines = ["order_id,amount,status,paid,placed_on,placed_at,remark,unused"];
  for (let i = 1; i <= 60; i++) {
    const amount = i % 10 === 0 ? "NA" : i % 3 === 0 ? `${i}.25` : String(i * 2);
    const placedAt =
      i % 2 ? `2026-11-0${(i % 9) + 1}T10:15:00Z` : `2026-11-0${(i % 9) + 1} 12:00:00+02:00`;
    const remark = i === 7 ? '"two\r\nlines"' : i % 5 === 0 ? '"a, b"' : `note ${i}`;
    lines.push(
      [
        i,
        amount,
        STATUSES[i % 3],
        i % 2 ? "true" : "FALSE",
        `2026-10-${String((i % 28) + 1).padStart(2, "0")}`,
        placedAt,
        remark,
        "",
      ].join(","),
    );
  }
  return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`${lines.join("\r\n")}\r\n`)]);
}

const json = <T>(stdout: string) => JSON.parse(stdout) as T;
type Inferred = {
  schema: { fields: Array<{ name: string; type: string }> };
  notes: Array<{ code: string; field?: string; message: string }>;
  rows: number;
  objects: Array<{ source: string; rows: number; bytes: number; size: number; delimiter: string }>;
};

describe("s3csv infer (CLI, real S3-compatible server, worker process)", () => {
  const t = useWorkerStack();

  async function enqueueWith(schema: unknown, source: string, extra: string[] = []) {
    const schemaFile = await writeSchemaFile(`inferred-${source.replaceAll("/", "-")}`, schema);
    const run = await runCli(
      [...enqueueArgs(source, `${source}.out.csv`, schemaFile), ...extra, "--wait", "--json"],
      t.stack.env,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    return json<JobResult>(run.stdout);
  }

  it("prints a schema read from one ranged GET of the head; a job with it rejects no row", async () => {
    await t.stack.put("infer/orders.csv", awkwardOrders());
    const seen = t.stack.s3Server.requests.length;
    const cli = await runCli(["infer", `s3://${BUCKET}/infer/orders.csv`], t.stack.env);
    expect(cli.code).toBe(0);
    expect(json(cli.stdout)).toEqual({
      fields: [
        { name: "order_id", type: "integer", constraints: { required: true } },
        { name: "amount", type: "number", missingValues: ["", "NA"] },
        {
          name: "status",
          type: "string",
          constraints: { required: true, enum: ["new", "paid", "shipped"] },
        },
        { name: "paid", type: "boolean", constraints: { required: true } },
        { name: "placed_on", type: "date", constraints: { required: true } },
        { name: "placed_at", type: "datetime", constraints: { required: true } },
        { name: "remark", type: "string", constraints: { required: true } },
        { name: "unused", type: "string" },
      ],
    });
    expect(cli.stderr.split("\n")).toEqual([
      `s3://${BUCKET}/infer/orders.csv: 60 rows sampled, the whole object`,
      `amount: "NA" read as missing values (the other values are number)`,
      "unused: every sampled value is missing: typed string, not required",
      "",
    ]);
    const gets = t.stack.s3Server.requests
      .slice(seen)
      .filter((r) => r.method === "GET" && r.url.includes("infer/orders.csv"));
    expect(gets.map((r) => r.range)).toEqual([`bytes=0-${HEAD_BYTES - 1}`]);

    const result = await enqueueWith(json(cli.stdout), "infer/orders.csv");
    expect(result.rows).toMatchObject({ read: 60, valid: 60, rejected: 0 });
  });

  it("reads gzip heads, finds the delimiter, and says which one to enqueue with (--json)", async () => {
    const rows = Array.from({ length: 30 }, (_, i) => `${i};${(i * 1.5).toFixed(1)};x${i % 4}`);
    await t.stack.put("infer/semi.csv.gz", gzipSync(`id;score;code\n${rows.join("\n")}\n`));
    const cli = await runCli(
      ["infer", `s3://${BUCKET}/infer/semi.csv.gz`, "--delimiter", "auto", "--json"],
      t.stack.env,
    );
    expect(cli.stderr).toBe("");
    expect(cli.code).toBe(0);
    const inferred = json<Inferred>(cli.stdout);
    expect(inferred.schema.fields.map((f) => f.type)).toEqual(["integer", "number", "string"]);
    expect(inferred.rows).toBe(30);
    expect(inferred.objects).toEqual([
      expect.objectContaining({ source: `s3://${BUCKET}/infer/semi.csv.gz`, delimiter: ";" }),
    ]);
    expect(inferred.notes).toContainEqual({
      code: "delimiter",
      message: `delimiter ";" (found): enqueue with --delimiter ';'`,
    });
    const result = await enqueueWith(inferred.schema, "infer/semi.csv.gz", ["--delimiter", ";"]);
    expect(result.rows).toMatchObject({ read: 30, valid: 30, rejected: 0 });

    const few = json<Inferred>(
      (
        await runCli(
          [
            "infer",
            `s3://${BUCKET}/infer/semi.csv.gz`,
            "--delimiter",
            ";",
            "--rows",
            "5",
            "--json",
          ],
          t.stack.env,
        )
      ).stdout,
    );
    expect(few.rows).toBe(5);
    expect(few.notes.filter((n) => n.code === "few-values").map((n) => n.field)).toEqual([
      "id",
      "score",
      "code",
    ]);
  });

  it("reads no further than its head limit and leaves out the row the range cut", async () => {
    // Rows of 15 bytes after a 9-byte header: the range ends inside one.
    const count = Math.ceil(HEAD_BYTES / 15) + 1000;
    const body = Buffer.from(
      `id,value\n${Array.from({ length: count }, (_, i) => `${1_000_000 + i},abcdef\n`).join("")}`,
    );
    await t.stack.put("infer/big.csv", body);
    const cli = await runCli(
      ["infer", `s3://${BUCKET}/infer/big.csv`, "--rows", "1000000", "--json"],
      t.stack.env,
    );
    expect(cli.code).toBe(0);
    const inferred = json<Inferred>(cli.stdout);
    const whole = Math.floor((HEAD_BYTES - 9) / 15);
    expect(inferred.rows).toBe(whole);
    expect(inferred.objects[0]).toMatchObject({ bytes: 9 + whole * 15, size: body.length });
    expect(inferred.schema.fields.map((f) => f.type)).toEqual(["integer", "string"]);
  });

  it("infers over the objects under a prefix, whose headers must have the same labels", async () => {
    await t.stack.put("infer/many/a.csv", "id,when\n1,2026-01-01\n2,2026-01-02\n");
    await t.stack.put("infer/many/b.csv", "when,id\n2026-02-01,3.5\n,4\n");
    const cli = await runCli(
      ["infer", "--source-prefix", `s3://${BUCKET}/infer/many/`, "--json"],
      t.stack.env,
    );
    expect(cli.code).toBe(0);
    const inferred = json<Inferred>(cli.stdout);
    expect(inferred.schema).toEqual({
      fields: [
        { name: "id", type: "number", constraints: { required: true } },
        { name: "when", type: "date" },
      ],
    });
    expect(inferred.objects.map((o) => o.rows)).toEqual([2, 2]);

    await t.stack.put("infer/many/c.csv", "id,other\n1,2\n");
    const clash = await runCli(
      ["infer", "--source-prefix", `s3://${BUCKET}/infer/many/`],
      t.stack.env,
    );
    expect(clash.code).toBe(2);
    expect(clash.stdout).toBe("");
    expect(clash.stderr).toBe(
      `s3csv: s3://${BUCKET}/infer/many/c.csv has other columns than s3://${BUCKET}/infer/many/a.csv (it lacks "when"; it has "other" besides): one schema cannot fit both; infer them apart\n`,
    );
  });

  it("refuses, exit 2, what is not CSV and what does not exist", async () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d]);
    await t.stack.put("infer/bad/image.csv", Buffer.concat([png, Buffer.alloc(500, 7)]));
    await t.stack.put("infer/bad/empty.csv", "");
    await t.stack.put("infer/bad/semi.csv", "id;name\n1;Ann\n2;Bob\n");
    const url = (key: string) => `s3://${BUCKET}/infer/bad/${key}`;
    const cases: Array<[string, string | RegExp]> = [
      [url("image.csv"), /^s3csv: \S+image.csv is a PNG image, not CSV text/],
      [url("empty.csv"), `s3csv: ${url("empty.csv")} is empty`],
      [
        url("semi.csv"),
        `s3csv: ${url("semi.csv")} reads as a single column: no "," was found, but its lines look ";"-separated (pass --delimiter ';')`,
      ],
      [url("missing.csv"), `s3csv: ${url("missing.csv")} does not exist`],
      ["s3://no-such-bucket/a.csv", `s3csv: bucket "no-such-bucket" does not exist`],
    ];
    for (const [source, message] of cases) {
      const cli = await runCli(["infer", source], t.stack.env);
      expect([source, cli.code, cli.stdout]).toEqual([source, 2, ""]);
      const stderr = cli.stderr.trimEnd();
      if (typeof message === "string") expect(stderr).toBe(message);
      else expect(stderr).toMatch(message);
    }
  });
});
