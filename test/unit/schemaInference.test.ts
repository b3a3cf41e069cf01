import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import type { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { JobInput, JobOptions } from "../../shared/job.ts";
import { type HeadSample, HeadSampler, NotCsvError } from "../../worker/infer/headSample.ts";
import { HEAD_BYTES, readHead } from "../../worker/infer/objectHead.ts";
import { INFERENCE_RULES, inferSchema } from "../../worker/infer/schemaInference.ts";
import { compileTableSchema } from "../../worker/judge/validatorCompiler.ts";

interface SampleOptions {
  options?: Record<string, unknown>;
  rows?: number;
  /** The text is the whole object (its last row counts without a line break). */
  complete?: boolean;
  /** Bytes per pushed chunk (the whole text at once when absent). */
  chunk?: number;
}

function sampleOf(text: string | Buffer, o: SampleOptions = {}): HeadSample {
  const bytes = typeof text === "string" ? Buffer.from(text) : text;
  const sampler = new HeadSampler(JobOptions.parse(o.options ?? {}), o.rows ?? 10_000);
  const size = o.chunk ?? Math.max(1, bytes.length);
  for (let at = 0; at < bytes.length; at += size) {
    if (sampler.push(bytes.subarray(at, at + size))) break;
  }
  return sampler.finish(o.complete ?? true);
}

function infer(text: string | Buffer, o: SampleOptions = {}) {
  const sample = sampleOf(text, o);
  return { sample, ...inferSchema(sample) };
}

function fieldOf(text: string, name: string, o: SampleOptions = {}) {
  return infer(text, o).schema.fields.find((f) => f.name === name);
}

function refusal(text: string | Buffer, o: SampleOptions = {}): string {
  try {
    sampleOf(text, o);
  } catch (error) {
    expect(error).toBeInstanceOf(NotCsvError);
    return (error as Error).message;
  }
  throw new Error("the head was not refused");
}

/** A CSV of one column `v` holding these values, one per row. */
function column(values: readonly string[]): string {
  return `v\n${values.map((v) => (/[",\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v)).join("\n")}\n`;
}

describe("reading the head as a job reads it", () => {
  it("drops a UTF-8 BOM, reads CRLF, and keeps newlines inside quoted fields", () => {
    const text = '\uFEFFid,name,note\r\n1,Ann,"two\r\nlines"\r\n2,Bob,"said ""hi"", twice"\r\n';
    const { sample, schema } = infer(text);
    expect(sample.header).toEqual(["id", "name", "note"]);
    expect(sample.rows).toEqual([
      ["1", "Ann", "two\r\nlines"],
      ["2", "Bob", 'said "hi", twice'],
    ]);
    expect(schema.fields.map((f) => [f.name, f.type])).toEqual([
      ["id", "integer"],
      ["name", "string"],
      ["note", "string"],
    ]);
  });

  it("reads the same rows whatever the chunks, a BOM split across them included", () => {
    const text = '\uFEFFa,b\r\n1,"x\ny"\r\n2,z\r\n3,w';
    const whole = sampleOf(text);
    for (const chunk of [1, 2, 5]) expect(sampleOf(text, { chunk })).toEqual(whole);
    expect(whole.rows).toHaveLength(3);
  });

  it("leaves out the last row when the read stopped inside it, keeps it at the object's end", () => {
    const cut = "id,amount\n1,2.5\n2,3.25\n3,4";
    expect(sampleOf(cut, { complete: false }).rows).toEqual([
      ["1", "2.5"],
      ["2", "3.25"],
    ]);
    expect(sampleOf(cut, { complete: true }).rows).toHaveLength(3);
    // Cut inside a quoted field: the open row is not a format error, it is simply not read.
    const open = 'id,note\n1,"a"\n2,"still\ngoing';
    const sample = sampleOf(open, { complete: false });
    expect(sample.rows).toEqual([["1", "a"]]);
    expect(sample.unusable).toEqual({});
  });

  it("stops at the rows asked for, once it has the head the delimiter and binary checks need", () => {
    const sampler = new HeadSampler(JobOptions.parse({}), 2);
    expect(sampler.push(Buffer.from("a\n1\n"))).toBe(false);
    expect(sampler.push(Buffer.from("2\n3\n4\n"))).toBe(false);
    expect(sampler.push(Buffer.from("5\n".repeat(32 * 1024)))).toBe(true);
    const sample = sampler.finish(false);
    expect([sample.rows, sample.read, sample.bytes]).toEqual([[["1"], ["2"]], 2, 6]);
  });

  it("uses the job's dialect: auto delimiter, tabs, no header, comments, windows-1252, UTF-16", () => {
    const semi = sampleOf("a;b\n1;x\n2;y\n", { options: { delimiter: "auto" } });
    expect([semi.delimiter, semi.header]).toEqual([";", ["a", "b"]]);
    expect(sampleOf("a\tb\n1\t2\n", { options: { delimiter: "\t" } }).rows).toEqual([["1", "2"]]);
    const headless = sampleOf("1,x\n2,y\n", { options: { header: false } });
    expect(headless.header).toEqual(["field1", "field2"]);
    expect(headless.rows).toHaveLength(2);
    const commented = sampleOf("# made by hand\na,b\n# note\n1,2\n", {
      options: { commentChar: "#" },
    });
    expect([commented.header, commented.rows]).toEqual([["a", "b"], [["1", "2"]]]);
    const latin = Buffer.from("name,city\nJos\xe9,M\xe1laga\n", "latin1");
    expect(sampleOf(latin, { options: { encoding: "windows-1252" } }).rows).toEqual([
      ["José", "Málaga"],
    ]);
    const utf16 = Buffer.concat([
      Buffer.from([0xff, 0xfe]),
      Buffer.from("id,name\r\n1,Zoë\r\n", "utf16le"),
    ]);
    expect(sampleOf(utf16).rows).toEqual([["1", "Zoë"]]);
  });

  it("keeps rows a job rejects whatever the schema out of inference, and says so", () => {
    const text = "id,n\n1,2\n\n2,3,4\n3\n4,5\n5,6\n";
    const { sample, schema, notes } = infer(text);
    expect(sample.read).toBe(6);
    expect(sample.unusable).toEqual({ "blank-row": 1, "extra-cell": 1, "missing-cell": 1 });
    expect(schema.fields.map((f) => f.type)).toEqual(["integer", "integer"]);
    expect(notes.find((n) => n.code === "rejected-anyway")?.message).toMatch(
      /^3 sampled rows would be rejected whatever the schema \(blank-row 1, extra-cell 1, missing-cell 1\)/,
    );
  });
});

describe("inferring types", () => {
  it("types integers, numbers (mixed integer and decimal), and keeps leading zeros as strings", () => {
    const text = "i,n,e,z,neg\n1,1,1e3,02134,-5\n22,2.5,2.5E-2,10001,+7\n-3,-0.75,NaN,00501,0\n";
    const { schema, notes } = infer(text);
    expect(schema.fields.map((f) => [f.name, f.type])).toEqual([
      ["i", "integer"],
      ["n", "number"],
      ["e", "number"],
      ["z", "string"],
      ["neg", "integer"],
    ]);
    expect(notes).toContainEqual(expect.objectContaining({ code: "leading-zeros", field: "z" }));
  });

  it("types dates, datetimes with Z and offsets, times, and four-digit years as integers", () => {
    const text = [
      "d,dt,t,hm,y,dmy,mdy,ambiguous",
      "2024-02-29,2024-02-29T10:00:00Z,23:59:59,9:05,1999,31/01/2024,01/31/2024,01/02/2024",
      "2025-01-01,2024-03-01 08:30:00+02:00,00:00:00.5,12:30,2024,13/12/2024,12/13/2024,03/04/2024",
      "1999-12-31,2024-03-01T08:30:00.123-0500,12:00:00,23:59,1066,1/2/2024,2/1/2024,05/06/2024",
    ].join("\n");
    const { schema, notes } = infer(text);
    expect(schema.fields.map((f) => [f.name, f.type, f.format])).toEqual([
      ["d", "date", undefined],
      ["dt", "datetime", undefined],
      ["t", "time", undefined],
      ["hm", "time", "%H:%M"],
      // A year is an integer: the integer type keeps its values as they are.
      ["y", "integer", undefined],
      ["dmy", "date", "%d/%m/%Y"],
      ["mdy", "date", "%m/%d/%Y"],
      ["ambiguous", "date", "%d/%m/%Y"],
    ]);
    expect(notes).toContainEqual(
      expect.objectContaining({ code: "other-formats-fit", field: "ambiguous" }),
    );
    expect(notes.some((n) => n.code === "other-formats-fit" && n.field === "dmy")).toBe(false);
    // An invalid date in the column (Feb 30) makes it a string, not a date that would fail.
    expect(fieldOf("d\n2024-02-28\n2024-02-30\n", "d")?.type).toBe("string");
  });

  it("types booleans by the job's true and false values; 0 and 1 are integers", () => {
    const text = "b,bits,yn\ntrue,1,yes\nFALSE,0,no\nTrue,1,yes\n";
    const { schema } = infer(text);
    expect(schema.fields.map((f) => f.type)).toEqual(["boolean", "integer", "string"]);
  });

  it("requires a field only where no sampled value is missing; an empty column is a string", () => {
    const text = "full,gaps,empty\n1,1,\n2,,\n3,3,\n";
    const { schema, notes } = infer(text);
    const [full, gaps, empty] = schema.fields;
    expect(full?.constraints).toEqual({ required: true });
    expect(gaps?.constraints).toBeUndefined();
    expect(empty).toEqual({ name: "empty", type: "string" });
    expect(notes).toContainEqual(expect.objectContaining({ code: "no-values", field: "empty" }));
  });

  it("reads NA-like tokens as missing values only where that makes a narrower type fit", () => {
    const text = "amount,country\n1.5,NA\nNA,FR\n2,n/a\nN/A,NA\n";
    const { schema, notes } = infer(text);
    const [amount, country] = schema.fields;
    expect(amount).toEqual({ name: "amount", type: "number", missingValues: ["", "NA", "N/A"] });
    // Namibia stays a country: a string fits either way.
    expect(country).toEqual({ name: "country", type: "string", constraints: { required: true } });
    expect(notes).toContainEqual(
      expect.objectContaining({ code: "missing-values", field: "amount" }),
    );
    // A column of nothing but tokens has no narrower type to gain: they stay values.
    expect(fieldOf("v\nNA\nnull\n", "v")).toEqual({
      name: "v",
      type: "string",
      constraints: { required: true },
    });
  });

  it("makes an enum of a low-cardinality string field, at the documented threshold", () => {
    const { enumMinValues: min, enumMaxDistinct } = INFERENCE_RULES;
    const statuses = ["paid", "new", "shipped"];
    const values = (n: number, distinct: readonly string[]) =>
      Array.from({ length: n }, (_, i) => distinct[i % distinct.length] as string);
    expect(fieldOf(column(values(min, statuses)), "v")?.constraints).toEqual({
      required: true,
      enum: ["new", "paid", "shipped"],
    });
    // Too few values, too many distinct ones, or one seen only once: no enum.
    expect(fieldOf(column(values(min - 1, statuses)), "v")?.constraints?.enum).toBeUndefined();
    const many = Array.from({ length: enumMaxDistinct + 1 }, (_, i) => `s${i}`);
    expect(fieldOf(column(values(min * 2, many)), "v")?.constraints?.enum).toBeUndefined();
    const once = [...values(min, statuses), "refunded"];
    expect(fieldOf(column(once), "v")?.constraints?.enum).toBeUndefined();
    // Never for other types, and missing values stay allowed beside the enum.
    expect(fieldOf(column(values(min, ["1", "2"])), "v")?.constraints?.enum).toBeUndefined();
    const gappy = fieldOf(
      `v,w\n${[...values(min, statuses), ""].map((v) => `${v},1`).join("\n")}\n`,
      "v",
    );
    expect(gappy?.constraints).toEqual({ enum: ["new", "paid", "shipped"] });
  });

  it("names a string field that a narrower type fits for most values, with the misfits", () => {
    const values = [...Array.from({ length: 9 }, (_, i) => `${i}.5`), "abc"];
    const { notes } = infer(column(values));
    expect(notes.find((n) => n.code === "mostly-type")).toEqual({
      code: "mostly-type",
      field: "v",
      message: `string: 9 of 10 values are number but 1 is not ("abc"); typed number, a job would reject its row`,
    });
    const mixed = infer(column(["1", "2", "x", "y", "z"])).notes;
    expect(mixed.some((n) => n.code === "mostly-type")).toBe(false);
  });

  it("names the fields decided on few values", () => {
    const few = INFERENCE_RULES.fewValues - 1;
    const text = `a,b\n${Array.from({ length: 30 }, (_, i) => `${i},${i < few ? i : ""}`).join("\n")}\n`;
    const { notes } = infer(text);
    const flagged = notes.filter((n) => n.code === "few-values");
    expect(flagged).toEqual([
      { code: "few-values", field: "b", values: few, message: `decided on ${few} values: integer` },
    ]);
  });

  it("makes a schema a job accepts, and every sampled row passes it", () => {
    const text =
      "id,price,when,ok,tag\n1,9.5,2024-01-01T00:00:00Z,true,a\n2,,2024-01-02T00:00:00+01:00,false,\n";
    const { schema, sample } = infer(text);
    const job = JobInput.parse({
      source: { bucket: "b-in", key: "k.csv" },
      destination: { bucket: "b-out", key: "k.csv" },
      schema: JSON.parse(JSON.stringify(schema)),
    });
    const judge = compileTableSchema(job.schema as NonNullable<typeof job.schema>).bind(
      sample.header,
    );
    for (const row of sample.rows) expect(judge.judge(row).ok).toBe(true);
  });
});

describe("refusing what is not CSV", () => {
  it("refuses binary content: NUL bytes, control bytes, invalid UTF-8, archives", () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d]);
    expect(refusal(png)).toBe("is a PNG image, not CSV text");
    const binary = Buffer.from([0x42, 0x4d, 0x1a, 0x0a, 0, 0, 0, 0x0d]);
    expect(refusal(binary)).toMatch(/^looks binary, not like CSV text: .* 3 NUL and 1 other/);
    const controls = Buffer.from(
      Array.from({ length: 400 }, (_, i) => (i % 10 === 0 ? 0x01 : 0x61)),
    );
    expect(refusal(controls)).toMatch(/^looks binary.* 40 other control bytes/);
    const invalid = Buffer.from(Array.from({ length: 400 }, (_, i) => (i % 4 ? 0x61 : 0xff)));
    expect(refusal(invalid)).toMatch(
      /^is not UTF-8 text: 100 invalid byte sequences.*windows-1252/,
    );
    expect(refusal(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0]))).toMatch(/^is gzip-compressed/);
    expect(refusal(Buffer.from("PK\x03\x04rest of a workbook"))).toMatch(/^is a ZIP archive/);
    // One stray byte in a text file is an encoding error on its row, not a binary file.
    const rows = Buffer.from("ok\n".repeat(50));
    const stray = Buffer.concat([Buffer.from("a\n"), Buffer.from([0xff]), Buffer.from("\n"), rows]);
    expect(sampleOf(stray).unusable).toEqual({ "encoding-error": 1 });
  });

  it("refuses an empty object, blank lines, and a header without data rows", () => {
    expect(refusal("")).toBe("is empty");
    expect(refusal("\uFEFF")).toBe("is empty: it holds only blank lines");
    expect(refusal("\r\n\n  \n")).toBe("is empty: it holds only blank lines");
    expect(refusal("id,name\n")).toMatch(/^has a header row but no data rows/);
  });

  it("refuses one column where the lines hold several values, not a real one-column file", () => {
    expect(refusal("id;name;city\n1;Ann;Oslo\n2;Bob;Rome\n")).toBe(
      `reads as a single column: no "," was found, but its lines look ";"-separated (pass --delimiter ';')`,
    );
    expect(refusal("id\tname\n1\tAnn\n2\tBob\n")).toMatch(
      /look tab-separated \(pass --delimiter tab\)/,
    );
    expect(refusal("id name city\n1 Ann Oslo\n2 Bob Rome\n")).toMatch(/look " "-separated/);
    const emails = sampleOf("email\nann@example.com\nbob@example.com\n");
    expect(emails.header).toEqual(["email"]);
    const names = sampleOf('name\nAnn Lee\nBob Ray\n"Smith; John"\n');
    expect(names.rows).toHaveLength(3);
  });

  it("refuses a head whose rows mostly do not fit its header, and a header a job fails on", () => {
    const prose =
      "Dear team, thanks\nfor the report, the numbers, and the charts.\nI read it twice\nBest, Ann\n";
    expect(refusal(prose)).toBe(
      `does not read as CSV with delimiter "," and quote "\\"": 2 of the 3 sampled rows would be rejected whatever the schema (extra-cell 1, missing-cell 1)`,
    );
    expect(refusal("id,,id\n1,2,3\n")).toBe(
      `has a header row a job would fail on (column 2 has no label; "id" appears more than once): fix its labels, or pass --options '{"header":false}' if the first row is data`,
    );
  });

  it("refuses a UTF-16 encoding without its byte order mark", () => {
    expect(refusal("a,b\n1,2\n", { options: { encoding: "utf-16" } })).toMatch(
      /^has no UTF-16 byte order mark/,
    );
  });
});

describe("reading the head of an object", () => {
  /** An S3 client whose every GET answers with these bytes as the head of a `size`-byte object. */
  function answering(head: Buffer, size: number, requests: unknown[] = []): S3Client {
    return {
      send: async (command: { input: unknown }) => {
        requests.push(command.input);
        return {
          Body: Readable.from([head]),
          ContentRange: `bytes 0-${head.length - 1}/${size}`,
          ContentLength: head.length,
        };
      },
    } as unknown as S3Client;
  }

  it("decompresses a gzip head the range cut, and leaves out the row the cut ends in", async () => {
    const rows = Array.from({ length: 2000 }, (_, i) => `${i},${(i * 7919) % 1000}.5`);
    const gz = gzipSync(`id,amount\n${rows.join("\n")}\n`);
    const cut = gz.subarray(0, Math.floor(gz.length / 2));
    const requests: unknown[] = [];
    const sampler = new HeadSampler(JobOptions.parse({}), 10_000);
    const head = await readHead(
      answering(cut, HEAD_BYTES + gz.length, requests),
      { bucket: "b-in", key: "in/data.csv.gz" },
      "auto",
      (chunk) => sampler.push(chunk),
    );
    expect(requests).toEqual([
      { Bucket: "b-in", Key: "in/data.csv.gz", Range: `bytes=0-${HEAD_BYTES - 1}` },
    ]);
    expect(head).toEqual({ size: HEAD_BYTES + gz.length, gzip: true, complete: false });
    const sample = sampler.finish(head.complete);
    expect(sample.read).toBeGreaterThan(100);
    expect(sample.read).toBeLessThan(2000);
    // Every row read is whole: the last one the cut reached is not among them.
    expect(sample.rows.at(-1)).toEqual(rows[sample.read - 1]?.split(","));
    expect(sample.unusable).toEqual({});
  });

  it("stops reading once it has the rows asked for, gzip or not", async () => {
    const csv = Buffer.from(`id\n${Array.from({ length: 300_000 }, (_, i) => i).join("\n")}\n`);
    for (const [body, key] of [
      [csv, "in/plain.csv"],
      [gzipSync(csv), "in/packed.csv.gz"],
    ] as const) {
      const sampler = new HeadSampler(JobOptions.parse({}), 10);
      const head = await readHead(
        answering(body, body.length),
        { bucket: "b-in", key },
        "auto",
        (chunk) => sampler.push(chunk),
      );
      expect(head.complete).toBe(false);
      expect(sampler.finish(head.complete).rows).toHaveLength(10);
    }
  });
});
