import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { InvalidJobError, validateJobInput } from "../../producer/enqueue.ts";
import { ConfigError, loadConfig } from "../../shared/config.ts";
import { JobData, rejectsLocation } from "../../shared/job.ts";
import { jobJsonSchema } from "../../shared/jobJsonSchema.ts";

const good = {
  source: { bucket: "in-bucket", key: "data/a.csv" },
  destination: { bucket: "out-bucket", key: "data/a.csv" },
  schema: { fields: [{ name: "id", type: "integer" }] },
};

function refusal(input: unknown): string {
  try {
    validateJobInput(input);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidJobError);
    return (error as Error).message;
  }
  throw new Error("the job was accepted");
}

describe("job contract", () => {
  it("accepts a valid job and fills in the defaults", () => {
    const job = validateJobInput(good);
    expect(job.options).toMatchObject({ delimiter: ",", onInvalid: "reject", header: true });
  });

  it("refuses select/rename that name no schema field, or give two columns one label", () => {
    const schema = {
      fields: [
        { name: "id", type: "integer" },
        { name: "email", type: "string" },
      ],
    };
    expect(refusal({ ...good, schema, options: { select: ["id", "mail"] } })).toMatch(
      /options\.select.*names no schema field: "mail"/,
    );
    expect(refusal({ ...good, schema, options: { rename: { e: "E" } } })).toMatch(
      /options\.rename.*names no schema field: "e"/,
    );
    expect(refusal({ ...good, schema, options: { rename: { id: "email" } } })).toMatch(
      /options\.rename.*same label/,
    );
    expect(refusal({ ...good, schema, options: { select: ["id", "id"] } })).toMatch(
      /options\.select.*twice/,
    );
    expect(refusal({ ...good, schema: { ...schema, fieldsMatch: "loose" } })).toMatch(
      /schema\.fieldsMatch/,
    );
    expect(
      validateJobInput({ ...good, schema, options: { select: ["email"], rename: { email: "E" } } })
        .options.select,
    ).toEqual(["email"]);
  });

  it("refuses bad payloads with a message naming the field", () => {
    expect(refusal({ ...good, source: { bucket: "Bad_Bucket", key: "k" } })).toContain(
      "source.bucket",
    );
    expect(refusal({ ...good, destination: { bucket: "out-bucket" } })).toContain(
      "destination.key",
    );
    expect(refusal({ ...good, transform: "contacts-normalize" })).toContain(
      "exactly one of `schema`",
    );
    expect(refusal({ ...good, schema: { fields: [{ name: "x", type: "decimal" }] } })).toContain(
      "schema.fields.0.type",
    );
    expect(refusal({ ...good, options: { delimiter: ";;" } })).toContain("options.delimiter");
    expect(refusal({ ...good, options: { partSize: 1024 } })).toContain("options.partSize");
    expect(refusal({ ...good, options: { values: "as-read", format: "ndjson" } })).toMatch(
      /options\.values.*needs CSV output/,
    );
    expect(refusal({ ...good, checkpoint: {} })).toMatch(/checkpoint/);
    expect(refusal({ ...good, destination: good.source })).toContain("three different objects");
  });

  it("puts the reject report next to the destination by default", () => {
    const job = validateJobInput(good);
    expect(rejectsLocation(job)).toEqual({ bucket: "out-bucket", key: "data/a.rejects.csv" });
  });

  it("keeps the published JSON Schema in sync with the zod contract (npm run schema:write)", async () => {
    const file = await readFile(new URL("../../shared/job.schema.json", import.meta.url), "utf8");
    expect(file).toBe(jobJsonSchema());
  });
});

describe("output columns", () => {
  const fields = [
    { name: "id", type: "integer" },
    { name: "name", type: "string" },
  ];
  it("names the option that gives two columns one label, and only a real problem", () => {
    const twice = refusal({ ...good, schema: { fields: [fields[0], fields[0]] } });
    expect(twice).toContain('schema.fields.1.name: duplicate field name "id"');
    expect(twice).not.toContain("options.rename");
    expect(refusal({ ...good, schema: { fields }, options: { select: ["id", "id"] } })).toContain(
      "options.select: gives two output columns the same label",
    );
    expect(refusal({ ...good, schema: { fields }, options: { rename: { name: "id" } } })).toContain(
      "options.rename: gives two output columns the same label",
    );
    expect(
      refusal({
        ...good,
        schema: { fields },
        options: { select: ["id", "id"], rename: { name: "label" } },
      }),
    ).toContain("options.select: gives two output columns the same label");
  });
});

describe("where a job writes", () => {
  it("refuses a destination or reject report key that names a folder", () => {
    expect(refusal({ ...good, destination: { bucket: "out-bucket", key: "out/" } })).toContain(
      'destination.key: ends in "/", which names a folder',
    );
    expect(
      refusal({ ...good, options: { rejects: { bucket: "out-bucket", key: "bad/" } } }),
    ).toContain('options.rejects.key: ends in "/"');
    // A worker still runs such a job (an older producer's, or one an older worker began).
    const older = {
      ...good,
      destination: { bucket: "out-bucket", key: "out/" },
      options: { rejects: { bucket: "out-bucket", key: "bad/" } },
      schema: { fields: [{ name: "n", type: "integer", constraints: { maximum: 2 ** 60 } }] },
    };
    expect(JobData.safeParse(older).success).toBe(true);
    // A source key is the object's as S3 has it, whatever it ends in.
    expect(() =>
      validateJobInput({ ...good, source: { bucket: "in-bucket", key: "odd/" } }),
    ).not.toThrow();
  });
});

describe("Table Schema checked at enqueue against the specification", () => {
  const withField = (field: Record<string, unknown>) => ({
    ...good,
    schema: { fields: [{ name: "id", type: "integer" }, field] },
  });

  it("refuses constraint values the field's type does not read, naming the property", () => {
    expect(
      refusal(withField({ name: "price", type: "number", constraints: { minimum: "zero" } })),
    ).toContain(
      'schema.fields.1.constraints.minimum: "zero" is not a value of type number/default',
    );
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { maximum: 2.5 } })),
    ).toContain("schema.fields.1.constraints.maximum: 2.5 is not a value of type integer/default");
    expect(
      refusal(withField({ name: "d", type: "date", constraints: { minimum: "2024-13-01" } })),
    ).toContain("schema.fields.1.constraints.minimum");
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { enum: [1, "two"] } })),
    ).toContain('schema.fields.1.constraints.enum.1: "two" is not a value of type integer/default');
  });

  it("refuses an integer bound or enum value past 2^53 - 1 given as a JSON number, and takes it as text", () => {
    // JSON.parse reads 9007199254740993 as 9007199254740992: the job would judge cells against
    // a number nobody wrote.
    const schema = JSON.parse(
      '{"name":"n","type":"integer","constraints":{"maximum":9007199254740993}}',
    ) as Record<string, unknown>;
    expect(refusal(withField(schema))).toContain(
      'schema.fields.1.constraints.maximum: 9007199254740992 is beyond ±(2^53 - 1), where a JSON number loses digits: write the integer as a string ("9007199254740992" or the digits you meant)',
    );
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { enum: [1, 2 ** 60] } })),
    ).toContain("schema.fields.1.constraints.enum.1: 1152921504606847000 is beyond ±(2^53 - 1)");
    const exact = withField({
      name: "n",
      type: "integer",
      constraints: { minimum: Number.MIN_SAFE_INTEGER, maximum: "9007199254740993" },
    });
    expect(() => validateJobInput(exact)).not.toThrow();
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { minimum: -(2 ** 60) } })),
    ).toContain("schema.fields.1.constraints.minimum: -1152921504606847000 is beyond ±(2^53 - 1)");
  });

  it("refuses constraints where the specification does not apply them, and ones s3csv would ignore", () => {
    expect(
      refusal(withField({ name: "s", type: "string", constraints: { minimum: 3 } })),
    ).toContain("schema.fields.1.constraints.minimum: applies to ordered types");
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { maxLength: 3 } })),
    ).toContain(
      "schema.fields.1.constraints.maxLength: applies to string, array and object fields, not integer",
    );
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { exclusiveMinimum: 0 } })),
    ).toContain(
      "schema.fields.1.constraints.exclusiveMinimum: is a Table Schema constraint s3csv does not enforce",
    );
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { minimun: 0 } })),
    ).toContain(
      'schema.fields.1.constraints.minimun: is not a constraint: did you mean "minimum"?',
    );
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { colour: "red" } })),
    ).toContain("schema.fields.1.constraints.colour: is not a constraint");
  });

  it("refuses formats a type does not have, date patterns s3csv cannot read, pattern off strings, order on durations", () => {
    expect(refusal(withField({ name: "e", type: "string", format: "emial" }))).toContain(
      'schema.fields.1.format: "emial" is not a format of string (default, email, uri, uuid, binary)',
    );
    expect(refusal(withField({ name: "n", type: "integer", format: "whatever" }))).toContain(
      'schema.fields.1.format: "whatever" is not a format of integer',
    );
    expect(refusal(withField({ name: "d", type: "date", format: "YYYY-MM-DD" }))).toContain(
      'schema.fields.1.format: "YYYY-MM-DD" is not a date pattern s3csv reads',
    );
    expect(refusal(withField({ name: "d", type: "date", format: "%d %b %Y" }))).toContain(
      "is not a date pattern s3csv reads",
    );
    expect(
      refusal(withField({ name: "n", type: "integer", constraints: { pattern: "\\d{2}" } })),
    ).toContain("schema.fields.1.constraints.pattern: applies to string fields, not integer");
    expect(
      refusal(withField({ name: "p", type: "duration", constraints: { maximum: "P2D" } })),
    ).toContain("schema.fields.1.constraints.maximum: applies to ordered types");
    expect(() =>
      validateJobInput(withField({ name: "d", type: "date", format: "%d/%m/%Y" })),
    ).not.toThrow();
  });

  it("refuses a property one typo from a known one, and keeps other custom properties", () => {
    expect(
      refusal(withField({ name: "n", type: "integer", constraint: { minimum: 0 } })),
    ).toContain('schema.fields.1.constraint: is not a field property: did you mean "constraints"?');
    expect(refusal(withField({ name: "b", type: "boolean", trueValue: ["y"] }))).toContain(
      'did you mean "trueValues"?',
    );
    expect(refusal({ ...good, schema: { ...good.schema, primarykey: "id" } })).toContain(
      'schema.primarykey: is not a schema property: did you mean "primaryKey"?',
    );
    const custom = withField({
      name: "weight",
      type: "number",
      unit: "kg",
      "x-source": "scale 4",
      rdfType: "https://schema.org/weight",
      constraints: { minimum: 0, maximum: "1e3", enum: [1, 2.5, "3"] },
    });
    expect(() => validateJobInput(custom)).not.toThrow();
  });
});

describe("configuration", () => {
  it("has defaults for everything", () => {
    expect(loadConfig({})).toMatchObject({
      REDIS_URL: "redis://127.0.0.1:6379",
      QUEUE_NAME: "csv-transform",
      AWS_REGION: "us-east-1",
      S3_CHECKSUMS: "when_supported",
    });
  });

  it("names the variable in errors", () => {
    expect(() => loadConfig({ PART_SIZE: "1000" })).toThrow(ConfigError);
    const both = () => loadConfig({ PART_SIZE: "1000", S3_CHECKSUMS: "always" });
    expect(both).toThrow(/PART_SIZE="1000": Too small/);
    expect(both).toThrow(/S3_CHECKSUMS="always": Invalid option/);
    expect(() => loadConfig({ REDIS_URL: "localhost:6379" })).toThrow(/REDIS_URL/);
    const nodes = "127.0.0.1:7000,127.0.0.1:7001";
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: nodes })).toThrow(
      /QUEUE_PREFIX="": must contain a hash tag like \{s3csv\}/,
    );
    expect(loadConfig({ REDIS_CLUSTER_NODES: nodes, QUEUE_PREFIX: "{s3csv}" })).toMatchObject({
      QUEUE_PREFIX: "{s3csv}",
    });
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: "127.0.0.1" })).toThrow(
      /REDIS_CLUSTER_NODES="127.0.0.1": must be host:port,host:port/,
    );
  });
});
