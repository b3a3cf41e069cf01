import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { enqueueTransform, queueSettings, transformQueue } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { JobResult } from "../../shared/job.ts";
import { queueKeys } from "../../shared/queueKeys.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";

export const CLI = fileURLToPath(new URL("../../bin/main.ts", import.meta.url));

/** Writes a schema to a temporary file, for `--schema`. */
export async function writeSchemaFile(name: string, schema: unknown): Promise<string> {
  const path = join(tmpdir(), `${name}-${process.pid}.json`);
  await writeFile(path, JSON.stringify(schema));
  return path;
}

/** `s3csv enqueue` from one key of the test bucket to another, judged by a schema file. */
export function enqueueArgs(source: string, dest: string, schemaFile: string): string[] {
  return [
    "enqueue",
    "--source",
    `s3://${BUCKET}/${source}`,
    "--dest",
    `s3://${BUCKET}/${dest}`,
    "--schema",
    schemaFile,
  ];
}

export function queueFor(stack: Stack): Queue<unknown, JobResult> {
  return transformQueue(queueSettings(stack.config));
}

export interface WorkerStack {
  stack: Stack;
  worker: WorkerProcess;
  queue: Queue<unknown, JobResult>;
}

/**
 * A stack, one worker process and the queue for the enclosing describe block: started before
 * its tests (the fields are set then), stopped after them.
 */
export function useWorkerStack(overrides: NodeJS.ProcessEnv = {}): WorkerStack {
  const t = {} as WorkerStack;
  beforeAll(async () => {
    t.stack = await startStack(overrides);
    t.worker = spawnWorker(t.stack.env);
    t.queue = queueFor(t.stack);
  });
  afterAll(async () => {
    await t.queue?.close();
    await t.worker?.kill("SIGTERM");
    await t.stack?.stop();
  });
  return t;
}

export function job(
  source: string,
  destination: string,
  schema: unknown,
  options: Record<string, unknown> = {},
) {
  return {
    source: { bucket: BUCKET, key: source },
    destination: { bucket: BUCKET, key: destination },
    schema,
    options,
  };
}

export async function run(queue: Queue<unknown, JobResult>, input: unknown): Promise<JobResult> {
  const id = await enqueueTransform(input, { queue });
  return waitForResult(queue, id, { timeoutMs: 110_000 });
}

export interface Ran {
  /** The exit code; null when the process was killed (`timeoutMs` passed, say). */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program to its end, its output collected; killed after `timeoutMs` if given, so that
 * a command that hangs fails a test instead of blocking it.
 */
export function runProcess(
  file: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number },
): Promise<Ran> {
  return new Promise((resolve) => {
    const { env, cwd, timeoutMs } = options;
    const child = spawn(file, args, {
      env,
      ...(cwd ? { cwd } : {}),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer =
      timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    // "close", not "exit": the output pipes may still hold data when the process exits.
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The s3csv command, run from this clone's sources. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs?: number): Promise<Ran> {
  return runProcess(process.execPath, [CLI, ...args], { env, ...(timeoutMs ? { timeoutMs } : {}) });
}

/** Where a job's reject report goes by default: next to the destination. */
export function rejectsKeyOf(destination: string): string {
  return `${destination.replace(/\.csv$/i, "")}.rejects.csv`;
}

/** Polls until `check` returns a value (not undefined), or fails after `ms`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  ms = 60_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The keys s3csv keeps beside a job's hash (carried text, upload record, marks) still there. */
export async function jobRecordsLeft(stack: Stack, jobId: string): Promise<string[]> {
  const { QUEUE_PREFIX, QUEUE_NAME } = stack.config;
  const redis = new Redis(stack.redis.url);
  try {
    const keys = await redis.keys(`${queueKeys(QUEUE_PREFIX, QUEUE_NAME).job(jobId)}:*`);
    // BullMQ's own keys of a job, which it drops itself.
    return keys.filter((key) => !/:(lock|logs|dependencies|processed)$/.test(key)).sort();
  } finally {
    redis.disconnect();
  }
}
