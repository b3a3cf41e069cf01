import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import type { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../dev/redisServer.ts";
import type { JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import {
  CLI,
  enqueueArgs,
  eventually,
  job,
  queueFor,
  run,
  runCli,
  writeSchemaFile,
} from "./helpers.ts";

// Least privilege and hostile cells: allowlists checked before any S3 call, spreadsheet
// formulas neutralized on request, payload limits, and credentials that never reach a log or
// the job's data.

const SECRET = "s3csv-test-secret-7f3a9c";

describe("security", () => {
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  let worker: WorkerProcess;

  beforeAll(async () => {
    stack = await startStack({
      AWS_SECRET_ACCESS_KEY: SECRET,
      ALLOWED_SOURCES: `${BUCKET}/in/`,
      ALLOWED_DESTINATIONS: `${BUCKET}/out/`,
      LOG_LEVEL: "debug",
    });
    queue = queueFor(stack);
    worker = spawnWorker(stack.env);
    await stack.put("in/people.csv", peopleData({ rows: 40, invalidEvery: 5 }).csv);
  });
  afterAll(async () => {
    await worker?.kill("SIGTERM");
    await queue?.close();
    await stack?.stop();
  });

  it("fails a job outside the allowlists before any S3 call", async () => {
    const before = stack.s3Server.requests.length;
    await expect(run(queue, job("secret/people.csv", "out/x.csv", peopleSchema))).rejects.toThrow(
      /source s3:\/\/s3csv-test\/secret\/people.csv is outside this worker's ALLOWED_SOURCES \(s3csv-test\/in\/\)/,
    );
    await expect(run(queue, job("in/people.csv", "elsewhere/x.csv", peopleSchema))).rejects.toThrow(
      /output s3:\/\/s3csv-test\/elsewhere\/x.csv is outside this worker's ALLOWED_DESTINATIONS/,
    );
    await expect(
      run(
        queue,
        job("in/people.csv", "out/x.csv", peopleSchema, {
          rejects: { bucket: BUCKET, key: "leak/r.csv" },
        }),
      ),
    ).rejects.toThrow(/output s3:\/\/s3csv-test\/leak\/r.csv is outside/);
    expect(stack.s3Server.requests.slice(before)).toEqual([]);
  });

  it("neutralizes spreadsheet formulas on request, in the output and the reject report", async () => {
    const csv =
      'id,email,score,active,joined,note\n1,a@example.com,5,true,2024-01-01,=HYPERLINK("x")\n=2+2,b@example.com,-5,true,2024-01-01,@SUM(A1)\n';
    await stack.put("in/formulas.csv", csv);
    await run(
      queue,
      job("in/formulas.csv", "out/formulas.csv", peopleSchema, { neutralizeFormulas: true }),
    );
    const output = (await stack.get("out/formulas.csv")).toString();
    expect(output).toContain(`1,a@example.com,5,true,2024-01-01,"'=HYPERLINK(""x"")"`);
    const report = (await stack.get("out/formulas.rejects.csv")).toString();
    // The invalid row's raw text starts with "=": the report cell is neutralized too.
    expect(report).toContain("id,type-error");
    expect(report).toContain(`"'=2+2,b@example.com,-5,true,2024-01-01,@SUM(A1)"`);
  });

  it("refuses a payload over MAX_JOB_BYTES at enqueue", async () => {
    const fields = Array.from({ length: 300 }, (_, i) => ({
      name: `f${i}`,
      type: "string",
      description: "x".repeat(100),
    }));
    const schemaFile = await writeSchemaFile("big-schema", { fields });
    const cli = await runCli(enqueueArgs("in/a.csv", "out/a.csv", schemaFile), {
      ...stack.env,
      MAX_JOB_BYTES: "4096",
    });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/bytes of JSON, more than MAX_JOB_BYTES \(4096\)/);
  });

  it("never writes credentials to logs or job data", async () => {
    await run(queue, job("in/people.csv", "out/people.csv", peopleSchema));
    const dashboard = spawn(process.execPath, [CLI, "dashboard", "--port", "0"], {
      env: { ...stack.env, DASHBOARD_USER: "ops", DASHBOARD_PASSWORD: SECRET },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let dashboardLog = "";
    const collect = (d: Buffer) => {
      dashboardLog += d.toString();
    };
    dashboard.stdout.on("data", collect);
    dashboard.stderr.on("data", collect);
    await eventually(() => (dashboardLog.includes("dashboard:") ? true : undefined), 30_000);
    dashboard.kill("SIGTERM");
    const redis = new Redis(stack.redis.port, "127.0.0.1");
    const keys = await redis.keys("bull:*");
    const values = await Promise.all(
      keys.map(async (k) =>
        (await redis.type(k)) === "hash" ? JSON.stringify(await redis.hgetall(k)) : "",
      ),
    );
    redis.disconnect();
    expect(worker.output()).toContain("job completed");
    expect(worker.output()).not.toContain(SECRET);
    expect(dashboardLog).toContain("dashboard");
    expect(dashboardLog).not.toContain(SECRET);
    expect(values.join("\n")).toContain("out/people.csv");
    expect(values.join("\n")).not.toContain(SECRET);
  });
});

describe("Redis AUTH", () => {
  const PASSWORD = "s3csv-redis-pass-41d9";
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ LOG_LEVEL: "debug" }, { redisPassword: PASSWORD });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("runs jobs against a Redis that requires a password, never logging it", async () => {
    // The server really refuses a client without the password.
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = createConnection(stack.redis.port, "127.0.0.1", () =>
        socket.write("PING\r\n"),
      );
      socket.once("data", (d) => {
        socket.destroy();
        resolve(d.toString());
      });
      socket.once("error", reject);
    });
    expect(reply).toMatch(/^-NOAUTH/);
    const queue = queueFor(stack);
    const worker = spawnWorker(stack.env);
    try {
      await stack.put("auth/in.csv", peopleData({ rows: 40, invalidEvery: 5 }).csv);
      const result = await run(queue, job("auth/in.csv", "auth/out.csv", peopleSchema));
      expect(result.rows.read).toBe(40);
    } finally {
      await queue.close();
      await worker.kill("SIGTERM");
    }
    expect(worker.output()).toContain("job completed");
    expect(worker.output()).not.toContain(PASSWORD);
  });
});

describe("Redis TLS (rediss://)", () => {
  let stack: Stack;
  let redis: ChildProcess | undefined;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    stack = await startStack();
    const dir = await mkdtemp(join(tmpdir(), "s3csv-tls-"));
    const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
    // A self-signed certificate for 127.0.0.1, trusted by the processes through NODE_EXTRA_CA_CERTS.
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { stdio: "ignore" },
    );
    const port = await freePort();
    redis = spawn(
      "redis-server",
      [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
        "--dir",
        dir,
        "--save",
        "",
      ],
      { stdio: "ignore" },
    );
    const ca = await readFile(cert);
    await eventually(
      () =>
        new Promise<true | undefined>((resolve) => {
          const socket = connect({ host: "127.0.0.1", port, ca }, () => {
            socket.destroy();
            resolve(true);
          });
          socket.on("error", () => resolve(undefined));
        }),
      10_000,
    );
    env = { ...stack.env, REDIS_URL: `rediss://127.0.0.1:${port}`, NODE_EXTRA_CA_CERTS: cert };
  });
  afterAll(async () => {
    redis?.kill("SIGTERM");
    await stack?.stop();
  });

  it("enqueues and runs jobs over TLS", async () => {
    const worker = spawnWorker(env);
    try {
      await stack.put("tls/in.csv", peopleData({ rows: 40, invalidEvery: 5 }).csv);
      const schemaFile = await writeSchemaFile("tls-schema", peopleSchema);
      const cli = await runCli(
        [...enqueueArgs("tls/in.csv", "tls/out.csv", schemaFile), "--wait", "--json"],
        env,
      );
      expect(cli.stderr).toBe("");
      expect((JSON.parse(cli.stdout) as JobResult).rows.read).toBe(40);
    } finally {
      await worker.kill("SIGTERM");
    }
  });
});
