import { describe, expect, it } from "vitest";
import { enqueueTransform } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema, rejectedRows } from "../support/peopleData.ts";
import { BUCKET } from "../support/stack.ts";
import { enqueueArgs, job, run, runCli, useWorkerStack, writeSchemaFile } from "./helpers.ts";

const MiB = 1024 * 1024;

describe("pipeline end to end (real Redis, real S3-compatible server, worker process)", () => {
  const t = useWorkerStack({ PART_SIZE: String(5 * MiB), WORKER_CONCURRENCY: "4" });

  it("enqueues from the CLI, waits, and writes the exact output and reject report", async () => {
    const data = peopleData({ rows: 500, invalidEvery: 7, newline: "\r\n" });
    await t.stack.put("cli/in.csv", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), data.csv]));
    const schemaFile = await writeSchemaFile("people", peopleSchema);
    const cli = await runCli(
      [...enqueueArgs("cli/in.csv", "cli/out.csv", schemaFile), "--wait", "--json"],
      t.stack.env,
    );
    expect(cli.stderr).toBe("");
    expect(cli.code).toBe(0);
    const result = JSON.parse(cli.stdout) as JobResult & { jobId: string };
    expect(result.rows).toMatchObject({
      read: 500,
      valid: 500 - data.rejected.length,
      rejected: data.rejected.length,
    });
    expect(result.rejects.key).toBe("cli/out.rejects.csv");
    expect((await t.stack.get("cli/out.csv")).equals(data.expectedOutput)).toBe(true);
    const report = await t.stack.get("cli/out.rejects.csv");
    expect(report.toString().split("\r\n")[0]).toBe(
      "row_number,line_number,field,error,message,raw",
    );
    expect(rejectedRows(report)).toEqual(data.rejected);
    // The errors by field: each field's first rejected rows, in the result and on the terminal.
    const firstWith = (code: string) =>
      data.rejected.filter((r) => r.code === code).map((r) => r.row);
    expect(result.rows.fields.score?.rows).toEqual(firstWith("constraint-error").slice(0, 5));
    expect(Object.keys(result.rows.fields).sort()).toEqual(
      ["(row)", "email", "joined", "note", "score"].sort(),
    );
    const text = await runCli(
      enqueueArgs("cli/in.csv", "cli/out-again.csv", schemaFile).concat("--wait"),
      t.stack.env,
    );
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/errors by field:\n\s+field\s+errors\s+first rows\n/);
    expect(text.stdout).toMatch(/\n\s+score\s+constraint-error \d+\s+[\d, ]+\n/);
  });

  it("refuses a bad payload at enqueue, naming the field, before touching Redis", async () => {
    const schemaFile = await writeSchemaFile("bad-schema", {
      fields: [
        { name: "id", type: "integer", constraints: { minimum: "x" } },
        { name: "n", type: "numbr" },
      ],
    });
    const cli = await runCli(enqueueArgs("a.csv", "b.csv", schemaFile), {
      ...t.stack.env,
      REDIS_URL: "redis://127.0.0.1:1",
    });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain("schema.fields.1.type");
    const noDest = await runCli(
      ["enqueue", "--source", `s3://${BUCKET}/a.csv`, "--transform", "contacts-normalize"],
      t.stack.env,
    );
    expect(noDest.code).toBe(2);
    expect(noDest.stderr).toContain("--dest");
    const base = ["enqueue", "--source", `s3://${BUCKET}/a.csv`, "--dest", `s3://${BUCKET}/b.csv`];
    const badOption = await runCli(
      [...base, "--transform", "contacts-normalize", "--options", '{"encoding":"latin-9"}'],
      t.stack.env,
    );
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain("options.encoding");
    const notObject = await runCli(
      [...base, "--transform", "contacts-normalize", "--options", "[1]"],
      t.stack.env,
    );
    expect(notObject.code).toBe(2);
    expect(notObject.stderr).toContain("--options must be a JSON object");
    expect(await t.queue.count()).toBe(0);
  });

  it("fails a job whose source does not exist with a message that says what to do", async () => {
    await expect(run(t.queue, job("missing.csv", "missing-out.csv", peopleSchema))).rejects.toThrow(
      /source s3:\/\/s3csv-test\/missing.csv does not exist; upload it, then retry the job/,
    );
  });

  it("fails a job whose destination bucket does not exist, leaving no upload and no report", async () => {
    await t.stack.put("nobucket/in.csv", peopleData({ rows: 10 }).csv);
    // The report goes to a bucket that exists: nothing of the job may be left there either.
    const input = job("nobucket/in.csv", "x.csv", peopleSchema, {
      rejects: { bucket: BUCKET, key: "nobucket/x.rejects.csv" },
    });
    input.destination = { bucket: "no-such-bucket", key: "x.csv" };
    await expect(run(t.queue, input)).rejects.toThrow(
      /bucket "no-such-bucket" .* does not exist; create it/,
    );
    const open = (await t.stack.openUploads()).filter((u) => u.key.startsWith("nobucket/"));
    expect(open).toEqual([]);
    await expect(t.stack.get("nobucket/x.rejects.csv")).rejects.toThrow();
  });

  it("writes NDJSON with typed values when options.format is ndjson", async () => {
    const data = peopleData({ rows: 20, invalidEvery: 7 });
    await t.stack.put("ndjson/in.csv", data.csv);
    const result = await run(
      t.queue,
      job("ndjson/in.csv", "ndjson/out.ndjson", peopleSchema, { format: "ndjson" }),
    );
    const lines = (await t.stack.get("ndjson/out.ndjson")).toString().trimEnd().split("\n");
    expect(lines).toHaveLength(result.rows.valid);
    expect(JSON.parse(lines[0] as string)).toEqual({
      id: 1,
      email: "user1@example.com",
      score: 7,
      active: true,
      joined: "2024-02-02",
      note: "with, comma",
    });
    expect(JSON.parse(lines[4] as string)).toMatchObject({ id: 5, note: null, active: true });
  });

  it("writes values as the source had them with options.values as-read", async () => {
    // Non-canonical values, a quoted cell holding a newline, CRLF, one invalid row.
    const rows = [
      "id,email,score,active,joined,note",
      '+07,a@example.com,.5,False,2024-02-02,"two\nlines"',
      "8,b@example.com,1e1,TRUE,2024-02-03,",
      "x,c@example.com,1,true,2024-02-04,bad id",
    ];
    await t.stack.put("as-read/in.csv", Buffer.from(`${rows.join("\r\n")}\r\n`));
    const asRead = await run(
      t.queue,
      job("as-read/in.csv", "as-read/out.csv", peopleSchema, { values: "as-read" }),
    );
    expect(asRead.rows).toMatchObject({ valid: 2, rejected: 1 });
    expect((await t.stack.get("as-read/out.csv")).toString()).toBe(
      `${rows.slice(0, 3).join("\r\n")}\r\n`,
    );
    await run(t.queue, job("as-read/in.csv", "as-read/canonical.csv", peopleSchema));
    expect((await t.stack.get("as-read/canonical.csv")).toString()).toBe(
      `${rows[0]}\r\n7,a@example.com,0.5,false,2024-02-02,"two\nlines"\r\n8,b@example.com,1e1,true,2024-02-03,\r\n`,
    );
  });

  it("selects, reorders and renames output columns (options.select, options.rename)", async () => {
    await t.stack.put(
      "select/in.csv",
      "email,id,score,active,joined,note\r\na@example.com,1,5,TRUE,2024-01-01,x\r\nb@example.com,2,500,true,2024-01-01,y\r\n",
    );
    const columns = { select: ["id", "email", "active"], rename: { email: "Email" } };
    const result = await run(
      t.queue,
      job("select/in.csv", "select/out.csv", peopleSchema, columns),
    );
    expect(result.rows).toMatchObject({ read: 2, valid: 1, rejected: 1 });
    expect((await t.stack.get("select/out.csv")).toString()).toBe(
      "id,Email,active\r\n1,a@example.com,true\r\n",
    );
    await run(
      t.queue,
      job("select/in.csv", "select/out.ndjson", peopleSchema, { ...columns, format: "ndjson" }),
    );
    expect((await t.stack.get("select/out.ndjson")).toString()).toBe(
      '{"id":1,"Email":"a@example.com","active":true}\n',
    );
  });

  it("enforces the invalid-row policies: fail on the first, maxInvalidRows, maxInvalidRatio", async () => {
    const data = peopleData({ rows: 3000, invalidEvery: 2 });
    await t.stack.put("policy/in.csv", data.csv);
    await expect(
      run(t.queue, job("policy/in.csv", "policy/fail.csv", peopleSchema, { onInvalid: "fail" })),
    ).rejects.toThrow(
      /row 2 \(line 3\) is invalid and options.onInvalid is "fail": constraint-error in "score"/,
    );
    await expect(
      run(t.queue, job("policy/in.csv", "policy/max.csv", peopleSchema, { maxInvalidRows: 10 })),
    ).rejects.toThrow(
      /11 invalid rows after 22 rows read, more than options.maxInvalidRows \(10\)/,
    );
    await expect(
      run(
        t.queue,
        job("policy/in.csv", "policy/ratio.csv", peopleSchema, { maxInvalidRatio: 0.2 }),
      ),
    ).rejects.toThrow(
      /500 of 1000 rows are invalid \(50.00%\), more than options.maxInvalidRatio \(0.2\)/,
    );
    expect(await t.stack.openUploads()).toEqual([]);
  });

  it("reports hostile rows with their line numbers and keeps going", async () => {
    const lines = [
      "id,email,score,active,joined,note",
      "1,a@example.com,1,true,2024-01-01,has a \u0000 NUL",
      `2,b@example.com,2,true,2024-01-01,${"x".repeat(5000)}`,
      "3,c@example.com,3,true,2024-01-01,after the giant\r",
      "4,d@example.com,4,true,2024-01-01,cr ending\r\n5,e@example.com,5,true,2024-01-01,crlf",
      '6,f@example.com,6,true,2024-01-01,"never closed',
      "7,g@example.com,7,true,2024-01-01,swallowed",
    ];
    await t.stack.put("hostile/in.csv", lines.join("\n"));
    const result = await run(
      t.queue,
      job("hostile/in.csv", "hostile/out.csv", peopleSchema, { maxRowBytes: 1024 }),
    );
    expect(result.rows).toMatchObject({ read: 6, valid: 4, rejected: 2 });
    expect(rejectedRows(await t.stack.get("hostile/out.rejects.csv"))).toEqual([
      { row: 2, line: 3, code: "format-error" },
      { row: 6, line: 7, code: "format-error" },
    ]);
    const report = (await t.stack.get("hostile/out.rejects.csv")).toString();
    expect(report).toContain("longer than maxRowBytes (1024 bytes)");
    expect(report).toContain("a quoted field is not closed before the end of the file");
    expect((await t.stack.get("hostile/out.csv")).toString()).toContain("has a \u0000 NUL");
  });

  it("fails at once, not after every retry, a source that is empty or only a byte order mark", async () => {
    for (const [name, body] of [
      ["empty", Buffer.alloc(0)],
      ["bom-only", Buffer.from([0xef, 0xbb, 0xbf])],
    ] as const) {
      await t.stack.put(`empty/${name}.csv`, body);
      const id = await enqueueTransform(
        job(`empty/${name}.csv`, `empty/${name}.out.csv`, peopleSchema),
        { queue: t.queue },
      );
      await expect(waitForResult(t.queue, id, { timeoutMs: 60_000 })).rejects.toThrow(
        /the source is empty: expected a header row/,
      );
      expect((await t.queue.getJob(id))?.attemptsMade, name).toBe(1);
    }
  });

  it("fails a job whose header has more columns than options.maxColumns", async () => {
    const header = Array.from({ length: 50 }, (_, i) => `c${i}`).join(",");
    await t.stack.put("wide/in.csv", `${header}\n${"1,".repeat(49)}1\n`);
    await expect(
      run(
        t.queue,
        job(
          "wide/in.csv",
          "wide/out.csv",
          { fields: [{ name: "c0", type: "integer" }] },
          {
            maxColumns: 10,
          },
        ),
      ),
    ).rejects.toThrow(/the header row has 50 columns, more than options.maxColumns \(10\)/);
  });

  it("reads windows-1252 sources and skips comment lines, counting their lines", async () => {
    const text = [
      "# exported by a legacy system",
      "id,email,score,active,joined,note",
      "1,a@example.com,5,true,2024-01-01,café €5",
      "# a comment between rows",
      "2,b@example.com,500,true,2024-01-01,naïve",
      "",
    ].join("\r\n");
    const bytes = Buffer.from(text.replace("€", "\u0080"), "latin1");
    await t.stack.put("cp1252/in.csv", bytes);
    const result = await run(
      t.queue,
      job("cp1252/in.csv", "cp1252/out.csv", peopleSchema, {
        encoding: "windows-1252",
        commentChar: "#",
      }),
    );
    expect(result.rows).toMatchObject({ read: 2, valid: 1, rejected: 1 });
    expect((await t.stack.get("cp1252/out.csv")).toString("utf8")).toContain(
      "1,a@example.com,5,true,2024-01-01,café €5",
    );
    expect(rejectedRows(await t.stack.get("cp1252/out.rejects.csv"))).toEqual([
      { row: 2, line: 5, code: "constraint-error" },
    ]);
    expect((await t.stack.get("cp1252/out.rejects.csv")).toString("utf8")).toContain("naïve");
  });

  it("reads quotes escaped by a backslash (options.escape) and writes RFC 4180", async () => {
    await t.stack.put(
      "escape/in.csv",
      'id,email,score,active,joined,note\n1,a@example.com,5,true,2024-01-01,"say \\"hi\\", C:\\\\tmp"\n2,b@example.com,7,false,2024-02-03,"two\\\nlines"\n3,c@example.com,9,true,2024-02-03,"open \\"\n',
    );
    const result = await run(
      t.queue,
      job("escape/in.csv", "escape/out.csv", peopleSchema, { escape: "\\" }),
    );
    expect(result.rows).toMatchObject({ read: 3, valid: 2, rejected: 1 });
    expect((await t.stack.get("escape/out.csv")).toString()).toBe(
      'id,email,score,active,joined,note\r\n1,a@example.com,5,true,2024-01-01,"say ""hi"", C:\\tmp"\r\n2,b@example.com,7,false,2024-02-03,"two\nlines"\r\n',
    );
    expect(rejectedRows(await t.stack.get("escape/out.rejects.csv"))).toEqual([
      { row: 3, line: 5, code: "format-error" },
    ]);
  });

  it("quotes a cell holding \" in the output when the source quotes with ' (no pass-through)", async () => {
    const rows = [
      "id,email,score,active,joined,note",
      `1,a@example.com,5,true,2024-01-01,say "hi"`,
      `2,b@example.com,7,false,2024-02-03,'it\\'s "x", ok'`,
      "3,c@example.com,9,true,2024-02-03,plain",
    ];
    await t.stack.put("quote/in.csv", `${rows.join("\n")}\n`);
    const expected = [
      "id,email,score,active,joined,note",
      `1,a@example.com,5,true,2024-01-01,"say ""hi"""`,
      `2,b@example.com,7,false,2024-02-03,"it's ""x"", ok"`,
      "3,c@example.com,9,true,2024-02-03,plain",
    ];
    for (const [name, options] of [
      ["quote", { quote: "'" }],
      ["quote-escape", { quote: "'", escape: "\\" }],
    ] as const) {
      await run(t.queue, job("quote/in.csv", `${name}/out.csv`, peopleSchema, options));
      const output = (await t.stack.get(`${name}/out.csv`)).toString().split("\r\n");
      // Row 2 doubles its quote in the first job's dialect (no escape): there it is malformed.
      expect(output[1], name).toBe(expected[1]);
      expect(output[output.length - 2], name).toBe(expected[3]);
    }
    const escaped = (await t.stack.get("quote-escape/out.csv")).toString();
    expect(escaped).toBe(`${expected.join("\r\n")}\r\n`);
  });

  it("reads UTF-16 sources of either byte order (BOM first) and writes UTF-8", async () => {
    const text = [
      "id,email,score,active,joined,note",
      '1,a@example.com,5,true,2024-01-01,"Zoë 😀 ""日本""\r\nsecond line"',
      "2,b@example.com,500,true,2024-01-01,ünïcödé",
      "3,c@example.com,7,false,2024-02-03,ok",
      "",
    ].join("\r\n");
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]);
    const be = Buffer.from(le);
    be.swap16();
    await t.stack.put("utf16/le.csv", le);
    await t.stack.put("utf16/be.csv", be);
    const expected = [
      "id,email,score,active,joined,note",
      '1,a@example.com,5,true,2024-01-01,"Zoë 😀 ""日本""\r\nsecond line"',
      "3,c@example.com,7,false,2024-02-03,ok",
      "",
    ].join("\r\n");
    for (const [source, options] of [
      ["utf16/le.csv", {}],
      ["utf16/be.csv", { encoding: "utf-16" }],
    ] as const) {
      const out = source.replace(".csv", ".out.csv");
      const result = await run(t.queue, job(source, out, peopleSchema, options));
      expect(result.rows, source).toMatchObject({ read: 3, valid: 2, rejected: 1 });
      expect((await t.stack.get(out)).toString("utf8"), source).toBe(expected);
      expect(rejectedRows(await t.stack.get(out.replace(".csv", ".rejects.csv")))).toEqual([
        { row: 2, line: 4, code: "constraint-error" },
      ]);
    }
  });

  it("fails a utf-16 job whose source has no byte order mark, saying so", async () => {
    await t.stack.put("utf16/nobom.csv", Buffer.from("id\r\n1\r\n", "utf16le"));
    await expect(
      run(
        t.queue,
        job(
          "utf16/nobom.csv",
          "utf16/nobom.out.csv",
          { fields: [{ name: "id", type: "integer" }] },
          {
            encoding: "utf-16",
          },
        ),
      ),
    ).rejects.toThrow(/no UTF-16 byte order mark/);
  });

  it("guesses the delimiter with options.delimiter auto", async () => {
    await t.stack.put(
      "sniff/in.csv",
      'id;email;score;active;joined;note\n1;a@example.com;5;true;2024-01-01;"x, y; z"\n2;b@example.com;7;false;2024-02-03;plain\n',
    );
    const result = await run(
      t.queue,
      job("sniff/in.csv", "sniff/out.csv", peopleSchema, { delimiter: "auto" }),
    );
    expect(result.rows).toMatchObject({ read: 2, valid: 2 });
    expect((await t.stack.get("sniff/out.csv")).toString()).toBe(
      'id,email,score,active,joined,note\r\n1,a@example.com,5,true,2024-01-01,"x, y; z"\r\n2,b@example.com,7,false,2024-02-03,plain\r\n',
    );
  });

  it("the original bug: per-job uploaders, 5 jobs in a row and 4 at once, each completing only its own parts", async () => {
    // Output sizes of 2.5, 12.5 and 32.5 part sizes: 1, 3 and 7 parts.
    const bytesPerRow =
      peopleData({ rows: 1000, invalidEvery: 1000, pad: 60 }).expectedOutput.length / 1000;
    const sizes = [
      { rows: Math.round((2.5 * MiB) / bytesPerRow), parts: 1 },
      { rows: Math.round((12.5 * MiB) / bytesPerRow), parts: 3 },
      { rows: Math.round((32.5 * MiB) / bytesPerRow), parts: 7 },
    ];
    const datasets = await Promise.all(
      sizes.map(async (size, i) => {
        const data = peopleData({ rows: size.rows, invalidEvery: 1000, pad: 60 });
        await t.stack.put(`bug/in-${i}.csv`, data.csv);
        return { ...size, data, key: `bug/in-${i}.csv` };
      }),
    );
    const plan = [0, 1, 2, 1, 0].map((d, i) => ({ d, dest: `bug/seq-${i}.csv` }));
    const results: Array<{ d: number; dest: string; result: JobResult }> = [];
    for (const p of plan) {
      const ds = datasets[p.d] as (typeof datasets)[number];
      results.push({ ...p, result: await run(t.queue, job(ds.key, p.dest, peopleSchema)) });
    }
    const parallel = [2, 1, 0, 2].map((d, i) => ({ d, dest: `bug/par-${i}.csv` }));
    results.push(
      ...(await Promise.all(
        parallel.map(async (p) => {
          const ds = datasets[p.d] as (typeof datasets)[number];
          return { ...p, result: await run(t.queue, job(ds.key, p.dest, peopleSchema)) };
        }),
      )),
    );
    for (const { d, dest, result } of results) {
      const ds = datasets[d] as (typeof datasets)[number];
      expect(result.parts, dest).toBe(ds.parts);
      expect((await t.stack.get(dest)).equals(ds.data.expectedOutput), dest).toBe(true);
    }
    // Every CompleteMultipartUpload listed exactly the parts uploaded under its own upload id.
    const completes = t.stack.s3Server.requests.filter(
      (r) => r.completedParts && /\/bug\/(seq|par)-/.test(r.url),
    );
    expect(completes.length).toBe(results.filter((r) => r.result.parts > 1).length);
    for (const complete of completes) {
      const uploaded = new Set(
        t.stack.s3Server.requests
          .filter((r) => r.method === "PUT" && r.query.uploadId === complete.query.uploadId)
          .map((r) => Number(r.query.partNumber)),
      );
      expect(complete.completedParts).toEqual([...uploaded].sort((a, b) => a - b));
    }
    expect(await t.stack.openUploads()).toEqual([]);
  });
});
