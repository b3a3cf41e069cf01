import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { JobResult } from "../../shared/job.ts";
import { type LaidOutImage, layOutImage } from "../support/dockerLayout.ts";
import { NODE24_PATH, PROJECT_ROOT } from "../support/runtimePaths.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { eventually } from "./helpers.ts";

// The Docker image, laid out as its Dockerfile builds it (no Docker engine runs here), and every
// command of its CLI run from there: --help for each, then a worker, a job and the dashboard
// for real, against a local Redis and S3-compatible server. What compose starts must run.

const ROOT = PROJECT_ROOT;
/** The image is Node 24 on PATH. */
const IMAGE_PATH = NODE24_PATH;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("the Docker image, laid out from its Dockerfile", () => {
  let image: LaidOutImage;
  let stack: Stack;
  const children: Array<ReturnType<typeof spawn>> = [];

  /** Runs the image's entrypoint with `args`, as `docker run IMAGE args` would. */
  const start = (args: string[], env: NodeJS.ProcessEnv) => {
    const [entry = "", ...entryArgs] = image.entrypoint;
    const child = spawn(image.path(entry), [...entryArgs, ...args], {
      cwd: image.path(image.workdir),
      env: { ...env, ...image.env, PATH: IMAGE_PATH, HOME: image.path(image.workdir) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    const ran: Ran = { code: null, stdout: "", stderr: "" };
    child.stdout?.on("data", (d: Buffer) => {
      ran.stdout += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      ran.stderr += d.toString();
    });
    const exited = new Promise<Ran>((done) =>
      child.on("exit", (code) => {
        ran.code = code;
        done(ran);
      }),
    );
    return { child, ran, exited };
  };
  const runImage = (args: string[], env: NodeJS.ProcessEnv = {}) => start(args, env).exited;

  beforeAll(async () => {
    // RUN lines run on the image's Node 24 (and this machine's npm), with the machine's own
    // way to the registry (its CA bundle and proxy, where it has them).
    const network = Object.fromEntries(
      Object.entries(process.env).filter(([name]) =>
        /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|HTTPS?_PROXY|NO_PROXY)$/i.test(name),
      ),
    );
    image = await layOutImage(ROOT, "Dockerfile", {
      ...network,
      PATH: IMAGE_PATH,
      HOME: process.env.HOME,
    });
    stack = await startStack();
  }, 300_000);

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await stack?.stop();
    if (image) await rm(image.root, { recursive: true, force: true });
  });

  it("holds every file the CLI imports, starting from its entrypoint", async () => {
    const main = image.path("/app/dist/bin/main.js");
    const seen = new Set<string>();
    const pending = [main];
    while (pending.length) {
      const file = pending.pop() as string;
      if (seen.has(file)) continue;
      seen.add(file);
      expect(existsSync(file), `${file} is in the image`).toBe(true);
      const code = await readFile(file, "utf8");
      for (const [, spec] of code.matchAll(/(?:from|import\()\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        pending.push(join(dirname(file), spec as string));
      }
    }
    // The worker, producer, dashboard and dev commands with everything they import.
    expect(seen.size).toBeGreaterThan(40);
    expect(existsSync(image.path("/app/examples/orders.csv"))).toBe(true);
    expect(existsSync(image.path("/app/node_modules/zod/package.json")), "zod, its peer").toBe(
      true,
    );
  });

  it("answers --help for every command its CLI lists", async () => {
    const help = await runImage(["--help"]);
    expect(help.code, help.stderr).toBe(0);
    const commands = [...help.stdout.matchAll(/^ {2}s3csv (\w+)\s/gm)]
      .map((m) => m[1] as string)
      .filter((name) => name !== "help");
    expect(commands).toEqual(expect.arrayContaining(["worker", "enqueue", "dashboard", "sweep"]));
    for (const name of commands) {
      const ran = await runImage([name, "--help"]);
      expect(ran.code, `${name}: ${ran.stderr}`).toBe(0);
      expect(ran.stdout, name).toMatch(new RegExp(`^s3csv ${name}`));
    }
  });

  it("has, for every compose service built from it, the command that service runs", async () => {
    const compose = parse(await readFile(join(ROOT, "docker-compose.yml"), "utf8")) as {
      services: Record<string, { image?: string; build?: unknown; command?: string[] }>;
    };
    const fromImage = Object.entries(compose.services).filter(
      ([, s]) => s.build !== undefined || s.image === "s3csv:latest",
    );
    expect(fromImage.map(([name]) => name).sort()).toEqual(["dashboard", "watch", "worker"]);
    const help = await runImage(["--help"]);
    for (const [name, service] of fromImage) {
      expect(help.stdout, `${name} runs a command the CLI has`).toContain(
        `s3csv ${service.command?.[0]}`,
      );
    }
  });

  it("runs a worker that completes the README's job, enqueued from the image's CLI", async () => {
    const worker = start(image.cmd, { ...stack.env, LOG_LEVEL: "info" });
    await eventually(() => (worker.ran.stdout.includes("worker started") ? true : undefined));
    const orders = await readFile(join(ROOT, "examples/orders.csv"));
    await stack.put("incoming/orders.csv", orders);
    // docker compose run --rm worker enqueue ... --schema examples/orders.schema.json --wait
    const ran = await runImage(
      [
        "enqueue",
        "--source",
        `s3://${BUCKET}/incoming/orders.csv`,
        "--dest",
        `s3://${BUCKET}/processed/orders.csv`,
        "--schema",
        "examples/orders.schema.json",
        "--wait",
        "--json",
      ],
      stack.env,
    );
    expect(ran.code, ran.stderr).toBe(0);
    // The sample's eight orders, four of them invalid (see the README's reject report).
    expect((JSON.parse(ran.stdout) as JobResult).rows).toMatchObject({
      read: 8,
      valid: 4,
      rejected: 4,
    });
    const output = (await stack.get("processed/orders.csv")).toString();
    expect(output.split("\r\n")[0]).toBe("order_id,email,amount,status,ordered_at,note");
    worker.child.kill("SIGTERM");
    expect((await worker.exited).code).toBe(0);
  });

  it("serves the dashboard", async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const dashboard = start(["dashboard"], {
      ...stack.env,
      DASHBOARD_HOST: "127.0.0.1",
      DASHBOARD_PORT: String(port),
      DASHBOARD_USER: "ops",
      DASHBOARD_PASSWORD: "a long secret",
    });
    const ready = await eventually(async () => {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
      return response?.status;
    }, 30_000).catch((error: Error) => {
      throw new Error(`${error.message}; dashboard said:\n${dashboard.ran.stderr}`);
    });
    expect(ready).toBe(200);
    const board = await fetch(`http://127.0.0.1:${port}/admin/queues`, {
      headers: { authorization: `Basic ${Buffer.from("ops:a long secret").toString("base64")}` },
    });
    expect(board.status).toBe(200);
    dashboard.child.kill("SIGTERM");
  });
});
