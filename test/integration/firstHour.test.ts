import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { failure } from "../../shared/cliFailure.ts";
import { jsonErrorOffset, parseJsonText } from "../../shared/jsonText.ts";
import { visible } from "../../shared/visible.ts";
import { BUCKET } from "../support/stack.ts";
import {
  CLI,
  enqueueArgs,
  runCli,
  runProcess,
  useWorkerStack,
  writeSchemaFile,
} from "./helpers.ts";

// The first hour of a new user: every mistake off the scripted path gets one line that names the
// problem and the fix, the documented exit code, no stack trace, and no command waits forever.
// Then dev mode serves the user's own files and transforms.

const orders = "order_id,email,amount\n1,a@example.com,19.90\n2,b@example.com,5\n";
const ordersSchema = {
  fields: [
    { name: "order_id", type: "integer" },
    { name: "email", type: "string" },
    { name: "amount", type: "number", constraints: { minimum: 0 } },
  ],
};
const noStack = /\n\s+at /;
const oneLine = (text: string) => text.trim().split("\n").length === 1;

describe("the first hour: mistakes a new user makes", () => {
  const t = useWorkerStack();

  it("an invalid bucket name is one line naming it (enqueue and infer), exit 2", async () => {
    const schema = await writeSchemaFile("first-hour", ordersSchema);
    const enqueue = await runCli(
      [
        "enqueue",
        "--source",
        "s3://S3csv_Dev/in/orders.csv",
        "--dest",
        `s3://${BUCKET}/o.csv`,
        "--schema",
        schema,
      ],
      t.stack.env,
    );
    expect(enqueue.code).toBe(2);
    expect(enqueue.stderr).toMatch(
      /^s3csv: --source: "s3:\/\/S3csv_Dev\/in\/orders.csv": bucket "S3csv_Dev" must be an S3 bucket name/,
    );
    expect(oneLine(enqueue.stderr)).toBe(true);
    const infer = await runCli(["infer", "s3://S3csv_dev/in/orders.csv"], t.stack.env);
    expect(infer.code).toBe(2);
    expect(infer.stderr).toMatch(/bucket "S3csv_dev" must be an S3 bucket name/);
    expect(oneLine(infer.stderr)).toBe(true);
  });

  it("no Redis: enqueue --wait fails within seconds naming REDIS_URL and the address, exit 4", async () => {
    const schema = await writeSchemaFile("first-hour", ordersSchema);
    const env = { ...t.stack.env, REDIS_URL: "redis://127.0.0.1:1" };
    const run = await runCli(
      [...enqueueArgs("first/in.csv", "first/out.csv", schema), "--wait"],
      env,
      60_000,
    );
    expect(run.code).toBe(4);
    expect(run.stderr).toBe(
      "s3csv: cannot reach Redis at redis://127.0.0.1:1 (REDIS_URL): connection refused (nothing listens there); set REDIS_URL to your Redis (s3csv dev prints the one it runs)\n",
    );
  });

  it("no credentials, or an S3 that is not there: one line saying what to set, exit 2", async () => {
    const { AWS_ACCESS_KEY_ID: _id, AWS_SECRET_ACCESS_KEY: _secret, ...noKeys } = t.stack.env;
    const creds = await runCli(["infer", `s3://${BUCKET}/first/in.csv`], {
      ...noKeys,
      HOME: tmpdir(),
    });
    expect(creds.code).toBe(2);
    expect(creds.stderr).toMatch(
      /^s3csv: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
    );
    expect(creds.stderr).not.toMatch(noStack);
    const gone = await runCli(["infer", `s3://${BUCKET}/first/in.csv`], {
      ...t.stack.env,
      S3_ENDPOINT: "http://127.0.0.1:1",
      S3_MAX_ATTEMPTS: "1",
    });
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(
      /^s3csv: cannot reach S3 at 127\.0\.0\.1:1 \(ECONNREFUSED\); S3_ENDPOINT is http:\/\/127\.0\.0\.1:1: is the server running\?/,
    );
    expect(oneLine(gone.stderr)).toBe(true);
    // Without S3_ENDPOINT, AWS is tried: the one line says to set it.
    const dns = Object.assign(
      new Error("getaddrinfo ENOTFOUND s3csv-dev.s3.us-east-1.amazonaws.com"),
      {
        code: "ENOTFOUND",
        hostname: "s3csv-dev.s3.us-east-1.amazonaws.com",
      },
    );
    expect(failure(dns, {})).toEqual({
      code: 2,
      line: "cannot reach S3 at s3csv-dev.s3.us-east-1.amazonaws.com (ENOTFOUND); S3_ENDPOINT is not set, so AWS was tried: set it to your S3-compatible server (s3csv dev prints its own)",
    });
  });

  it("a bad schema is refused at enqueue, naming the property (and the one it meant)", async () => {
    const zero = await writeSchemaFile("first-zero", {
      fields: [{ name: "amount", type: "number", constraints: { minimum: "zero" } }],
    });
    const run = await runCli(enqueueArgs("first/in.csv", "first/out.csv", zero), t.stack.env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'schema.fields.0.constraints.minimum: "zero" is not a value of type number/default',
    );
    const typo = await writeSchemaFile("first-typo", {
      fields: [{ name: "amount", type: "number", constraint: { minimum: 0 } }],
    });
    const misspelt = await runCli(enqueueArgs("first/in.csv", "first/out.csv", typo), t.stack.env);
    expect(misspelt.code).toBe(2);
    expect(misspelt.stderr).toContain(
      'schema.fields.0.constraint: is not a field property: did you mean "constraints"?',
    );
  });

  it("a job's header errors carry infer's hints: the delimiter to pass, a binary file or UTF-16 without a BOM named", async () => {
    const schema = await writeSchemaFile("first-hour", ordersSchema);
    await t.stack.put("first/semicolons.csv", orders.replaceAll(",", ";"));
    const semi = await runCli(
      [...enqueueArgs("first/semicolons.csv", "first/semi-out.csv", schema), "--wait"],
      t.stack.env,
    );
    expect(semi.code).toBe(1);
    expect(semi.stderr).toMatch(
      /the header does not match the schema .*; the header reads as a single column: no "," was found, but its lines look ";"-separated \(pass --delimiter ';'\)/,
    );
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      Buffer.alloc(64, 1),
    ]);
    await t.stack.put("first/image.csv", png);
    const image = await runCli(
      [...enqueueArgs("first/image.csv", "first/image-out.csv", schema), "--wait"],
      t.stack.env,
    );
    expect(image.code).toBe(1);
    expect(image.stderr).toContain("the source is a PNG image, not CSV text");
    // UTF-16 saved without a byte order mark reads as UTF-8 labels with NUL bytes: escaped, and
    // named for what they are.
    await t.stack.put("first/utf16.csv", Buffer.from(orders, "utf16le"));
    const utf16 = await runCli(
      [...enqueueArgs("first/utf16.csv", "first/utf16-out.csv", schema), "--wait"],
      t.stack.env,
    );
    expect(utf16.code).toBe(1);
    expect(utf16.stderr).toContain(
      'extra-label: "o\\u0000r\\u0000d\\u0000e\\u0000r\\u0000_\\u0000i\\u0000d\\u0000"',
    );
    expect(utf16.stderr).toContain(
      `the header holds NUL bytes: the file looks like UTF-16 without a byte order mark (save it as UTF-8, or as UTF-16 with one and pass --options '{"encoding":"utf-16"}')`,
    );
    // No raw NUL or other invisible character reaches the terminal.
    expect(utf16.stderr.replaceAll("\n", "")).not.toMatch(/[\p{Cc}\p{Cf}]/u);
  });

  it("a missing source says to upload it and retry the job; the summary says 1 part", async () => {
    const schema = await writeSchemaFile("first-hour", ordersSchema);
    const missing = await runCli(
      [...enqueueArgs("first/nowhere.csv", "first/n-out.csv", schema), "--wait"],
      t.stack.env,
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not exist; upload it, then retry the job/);
    // The command to run is named once, with the job's own id.
    expect(missing.stderr.match(/s3csv retry/g)).toHaveLength(1);
    expect(missing.stderr).toMatch(/\(fixed\? run: s3csv retry \d+\)/);
    await t.stack.put("first/in.csv", orders);
    const done = await runCli(
      [...enqueueArgs("first/in.csv", "first/done.csv", schema), "--wait"],
      t.stack.env,
    );
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/bytes, 1 part\)/);
    expect(done.stdout).toContain("(0 rows)");
  });
});

describe("the first hour: mistakes refused before S3 or Redis is touched", () => {
  // Nothing answers at these addresses: a command that got past its checks says so, exit 4.
  const env = {
    PATH: process.env.PATH,
    HOME: tmpdir(),
    REDIS_URL: "redis://127.0.0.1:1",
    S3_ENDPOINT: "http://127.0.0.1:1",
    S3_MAX_ATTEMPTS: "1",
    AWS_ACCESS_KEY_ID: "s3csv-dev",
    AWS_SECRET_ACCESS_KEY: "s3csv-dev",
  };
  const enqueue = (...args: string[]) => [
    "enqueue",
    "--source",
    `s3://${BUCKET}/in.csv`,
    "--dest",
    `s3://${BUCKET}/out.csv`,
    ...args,
  ];
  const textFile = async (name: string, text: string) => {
    const path = join(tmpdir(), `${name}-${process.pid}`);
    await writeFile(path, text);
    return path;
  };
  /** The command's stderr, which must be one line, and its exit code. */
  const refused = async (args: string[]) => {
    const run = await runCli(args, env);
    expect(oneLine(run.stderr), run.stderr).toBe(true);
    expect(run.stderr).not.toMatch(noStack);
    return { code: run.code, line: run.stderr.replace(/^s3csv: /, "").replace(/\n$/, "") };
  };

  it("a schema file that is not JSON: one line with the line and column, and what to do", async () => {
    const bad = await textFile("not-json.json", "not json {\n");
    expect(await refused(enqueue("--schema", bad))).toEqual({
      code: 2,
      line: `--schema ${bad} is not JSON: Unexpected token 'o' at line 1, column 2; fix the file, or pass a Table Schema file`,
    });
    // A BOM (as Windows editors save) shifts no column; a second one is shown, escaped.
    const third = await textFile(
      "third-line.json",
      '\uFEFF{\n  "fields": [\n    {"name": id}\n  ]\n}\n',
    );
    expect((await refused(enqueue("--schema", third))).line).toBe(
      `--schema ${third} is not JSON: Unexpected token 'i' at line 3, column 14; fix the file, or pass a Table Schema file`,
    );
    const twice = await textFile("two-boms.json", `\uFEFF\uFEFF${JSON.stringify(ordersSchema)}`);
    expect((await refused(enqueue("--schema", twice))).line).toContain(
      "is not JSON: Unexpected token '\\uFEFF' at line 1, column 1;",
    );
  });

  it("a schema file or a manifest saved with a BOM is read; a manifest line or --options that is not JSON is one line", async () => {
    const schema = await textFile("bom.json", `\uFEFF${JSON.stringify(ordersSchema, null, 2)}\r\n`);
    // Past every check: only Redis, which is not there, stops it.
    const run = await refused(enqueue("--schema", schema));
    expect(run.code, run.line).toBe(4);
    expect(run.line).toMatch(/^cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
    const job = (key: string) =>
      JSON.stringify({
        source: { bucket: BUCKET, key: "in.csv" },
        destination: { bucket: BUCKET, key },
        schema: ordersSchema,
      });
    const manifest = await textFile("bom.ndjson", `\uFEFF${job("a.csv")}\r\n${job("b.csv")}\r\n`);
    // Read and validated: the sources' versions are looked up next, at an S3 that is not there.
    const bulk = await refused(["enqueue", "--manifest", manifest]);
    expect(bulk.code, bulk.line).toBe(2);
    expect(bulk.line).toMatch(/^cannot reach S3 at 127\.0\.0\.1:1/);
    const broken = await textFile("broken.ndjson", `${job("a.csv")}\n{"source": tru}\n`);
    expect(await refused(["enqueue", "--manifest", broken])).toEqual({
      code: 2,
      line: `${broken} line 2 is not JSON: Unexpected token '}' at column 15; fix that line (one job, as JSON, a line)`,
    });
    const options = await refused(
      enqueue("--schema", schema, "--options", '{"encoding":\n "utf-16" x}'),
    );
    expect(options).toEqual({
      code: 2,
      line: `--options is not JSON: Expected ',' or '}' after property value at line 2, column 11; pass an object, like '{"encoding":"utf-16"}'`,
    });
  });

  it('a flag whose value starts with "-", or is missing: one line saying what it takes', async () => {
    const schema = await writeSchemaFile("first-flags", ordersSchema);
    const maxInvalid = "--max-invalid takes a whole number of rows, 0 or more";
    const cases: Array<[string[], string]> = [
      [enqueue("--schema", schema, "--max-invalid", "-1"), `${maxInvalid}: got -1`],
      [enqueue("--schema", schema, "--max-invalid=-1"), `${maxInvalid}: got -1`],
      [enqueue("--schema", schema, "--max-invalid"), maxInvalid],
      [enqueue("--schema", schema, "--max-invalid", "--wait"), `${maxInvalid}: got --wait`],
      [
        enqueue("--schema", schema, "--priority", "-5"),
        "--priority takes a whole number, 0 or more: got -5",
      ],
      [
        enqueue("--schema", schema, "--wait", "--timeout", "-3"),
        "--timeout takes a number of seconds above 0: got -3",
      ],
      [
        enqueue("--schema", schema, "--job-id", "-x"),
        "--job-id is followed by -x, which reads as an option: give --job-id its value, or write --job-id=-x if that is the value",
      ],
      [
        ["retry", "7", "--wait", "--timeout", "-1"],
        "--timeout takes a number of seconds above 0: got -1",
      ],
      [
        ["infer", `s3://${BUCKET}/in.csv`, "--rows", "-5"],
        "--rows takes a whole number of rows, 1 or more: got -5",
      ],
      [
        ["watch", "--source-prefix", `s3://${BUCKET}/in/`, "--interval", "-5"],
        "--interval takes a number of seconds above 0: got -5",
      ],
      [
        ["sweep", "--bucket", BUCKET, "--older-than", "-1h"],
        "--older-than takes a duration of 15m or more, like 30m, 6h or 2d: got -1h",
      ],
      [
        ["put", "--force", "f.csv", `s3://${BUCKET}/f.csv`],
        `Unknown option '--force'. To specify a positional argument starting with a '-', place it at the end of the command after '--', as in '-- "--force"`,
      ],
    ];
    for (const [args, line] of cases) {
      expect(await refused(args), args.join(" ")).toEqual({ code: 2, line });
    }
    // node's own text, were a command to leave it unwrapped, is one line too.
    let raw: unknown;
    try {
      parseArgs({ args: ["--n", "-1"], options: { n: { type: "string" } } });
    } catch (error) {
      raw = error;
    }
    expect(failure(raw)).toEqual({
      code: 2,
      line: "Option '--n' argument is ambiguous. Did you forget to specify the option argument for '--n'? To specify an option argument starting with a dash use '--n=-XYZ'.",
    });
  });

  it("the line and column a JSON message names are where the parser stopped", () => {
    // Broken JSON of every kind: valid JSON with a character cut, added or changed, and soup.
    const soup = fc
      .array(fc.constantFrom(...'{}[],:"a10-.e+ \n\\u\t\u0001\uFEFF', "true", "nul"), {
        maxLength: 30,
      })
      .map((parts) => parts.join(""));
    const edited = fc
      .tuple(
        fc.json(),
        fc.nat(),
        fc.constantFrom("cut", "add", "change"),
        fc.string({ maxLength: 1, minLength: 1 }),
      )
      .map(([json, at, edit, ch]) => {
        const i = at % (json.length + 1);
        if (edit === "cut") return json.slice(0, i) + json.slice(i + 1);
        return json.slice(0, i) + ch + json.slice(i + (edit === "change" ? 1 : 0));
      });
    fc.assert(
      // A leading BOM is read past (the test above); one anywhere else is a character.
      fc.property(
        fc.oneof(soup, edited).filter((t) => !t.startsWith("\uFEFF")),
        (text) => {
          let message: string | undefined;
          try {
            JSON.parse(text);
          } catch (error) {
            message = (error as Error).message;
          }
          if (message === undefined) {
            expect(jsonErrorOffset(text)).toBeUndefined();
            return;
          }
          const position = /at position (\d+)/.exec(message)?.[1];
          if (position !== undefined) expect(jsonErrorOffset(text), message).toBe(Number(position));
          let ours = "";
          try {
            parseJsonText(text);
          } catch (error) {
            ours = (error as Error).message;
          }
          expect(ours).toMatch(/^[^\p{Cc}\p{Cf}]* at line \d+, column \d+$/u);
          // The character named is the parser's own (V8 names half of one past U+FFFF).
          const token = /^Unexpected token '(.+?)', /su.exec(message)?.[1];
          if (token?.isWellFormed())
            expect(ours).toContain(`Unexpected token '${visible(token)}' at`);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe("dev mode: your own CSV and your own transforms", () => {
  let dev: ChildProcess | undefined;
  let dir = "";
  /** The variables s3csv dev prints for another terminal, and what it printed. */
  let devEnv: NodeJS.ProcessEnv = {};
  let out = "";
  afterAll(async () => {
    if (dev && dev.exitCode === null) {
      const exited = new Promise((r) => dev?.once("exit", r));
      dev.kill("SIGTERM");
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("s3csv dev --transforms runs your transform; s3csv put puts your own CSV where a job reads it", async () => {
    // Inside the project, as an app's own module sits beside its node_modules (zod).
    await mkdir(join(process.cwd(), ".cache"), { recursive: true });
    dir = await mkdtemp(join(process.cwd(), ".cache", "dev-own-"));
    const module = join(dir, "transforms.ts");
    await writeFile(
      module,
      `import { defineTransform } from "${join(process.cwd(), "worker/index.ts")}";
import { z } from "zod";
export const upperSku = defineTransform({
  name: "upper-sku",
  input: z.object({ sku: z.string().regex(/^[a-z0-9-]+$/i), qty: z.coerce.number().int().min(0) }),
  columns: ["sku", "qty"],
  map: ({ sku, qty }) => ({ sku: sku.toUpperCase(), qty }),
});
`,
    );
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    dev = spawn(
      process.execPath,
      [CLI, "dev", "--dir", join(dir, "state"), "--transforms", module],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    dev.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    dev.stderr?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exports = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dev did not start:\n${out}`)), 60_000);
      dev?.once("exit", () => reject(new Error(`dev exited:\n${out}`)));
      const check = setInterval(() => {
        const line =
          /export (REDIS_URL=\S+ S3_ENDPOINT=\S+ AWS_ACCESS_KEY_ID=\S+ AWS_SECRET_ACCESS_KEY=\S+)/.exec(
            out,
          );
        if (line) {
          clearInterval(check);
          clearTimeout(timer);
          resolve(line[1] as string);
        }
      }, 100);
    });
    devEnv = { ...env };
    for (const pair of exports.split(" ")) {
      const at = pair.indexOf("=");
      devEnv[pair.slice(0, at)] = pair.slice(at + 1);
    }
    // Your own file, put where the dev worker reads it.
    const mine = join(dir, "stock.csv");
    await writeFile(mine, "sku,qty\nab-1,3\nCD-2,4\nbad sku!,1\n");
    const put = await runCli(["put", mine, "s3://s3csv-dev/in/stock.csv"], devEnv);
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toBe("s3://s3csv-dev/in/stock.csv (33 bytes)\n");
    // A bucket that is not there: s3csv's one line, and nothing of the AWS SDK's before it.
    const nowhere = await runCli(["put", mine, "s3://nosuchbkt/x.csv"], devEnv);
    expect(nowhere.code).toBe(2);
    expect(nowhere.stderr).toBe(
      's3csv: bucket "nosuchbkt" does not exist (s3csv dev\'s bucket is s3csv-dev)\n',
    );
    const run = await runCli(
      [
        "enqueue",
        "--source",
        "s3://s3csv-dev/in/stock.csv",
        "--dest",
        "s3://s3csv-dev/out/stock.csv",
        "--transform",
        "upper-sku",
        "--wait",
        "--json",
      ],
      devEnv,
    );
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as {
      rows: { valid: number; rejected: number; errors: Record<string, number> };
    };
    expect(result.rows).toMatchObject({ valid: 2, rejected: 1 });
    // A regex in the transform's zod schema is a pattern: a constraint-error, as Frictionless says.
    expect(result.rows.errors).toEqual({ "constraint-error": 1 });
    // The dev terminal stays quiet: no JSON log lines for the jobs it ran.
    expect(out).not.toMatch(/"level":\d+/);
  });

  it("walks the README: the first job (infer, enqueue) and your own CSV, as written", async () => {
    expect(devEnv.REDIS_URL, "the test before started s3csv dev").toBeDefined();
    const readme = await readFile(join(process.cwd(), "README.md"), "utf8");
    const section = (title: string) => {
      const from = readme.indexOf(title);
      return readme.slice(from, readme.indexOf("\n### ", from + title.length));
    };
    // The commands of the README's own code blocks: a console block's "$ " lines, a sh block's
    // lines (a trailing backslash continues one).
    const commands = (text: string) =>
      [...text.matchAll(/```(sh|console)\n([\s\S]*?)```/g)].flatMap(([, kind, body]) =>
        (body as string)
          .replaceAll("\\\n", " ")
          .split("\n")
          .filter((line) => (kind === "console" ? line.startsWith("$ ") : line.trim() !== ""))
          .map((line) => (kind === "console" ? line.slice(2) : line).trim()),
      );
    const first = commands(section("### Your first job"));
    const own = commands(section("### Your own CSV, and your own transform"));
    expect(first).toHaveLength(2);
    expect(own).toHaveLength(3);
    const cwd = await mkdtemp(join(dir, "walk-"));
    await writeFile(join(cwd, "stock.csv"), "sku,qty\nab-1,3\nCD-2,4\n");
    // `s3csv` on PATH, as scripts/setup.sh puts it there (npm link).
    const env = { ...devEnv, PATH: `${join(process.cwd(), "bin")}:${devEnv.PATH}` };
    for (const command of [...first, ...own]) {
      const run = await shell(command, cwd, env);
      expect(run.code, `${command}\n${run.stderr}`).toBe(0);
    }
    expect(JSON.parse(await readFile(join(cwd, "orders.schema.json"), "utf8")).fields).toHaveLength(
      6,
    );
    expect(JSON.parse(await readFile(join(cwd, "stock.schema.json"), "utf8")).fields).toHaveLength(
      2,
    );
  });

  it("s3csv dev --once stops, and says so instead of telling you to enqueue more", async () => {
    const once = await runCli(["dev", "--once", "--dir", join(dir || tmpdir(), "once")], {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
    });
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout).toContain("the servers have stopped");
    expect(once.stdout).not.toContain("npx s3csv enqueue");
  });
});

/** A command line run by sh in `cwd`, as a reader pastes it. */
function shell(command: string, cwd: string, env: NodeJS.ProcessEnv) {
  return runProcess("sh", ["-c", command], { env, cwd });
}
