import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../dev/redisServer.ts";
import type { JobResult } from "../../shared/job.ts";
import { peopleData, peopleSchema } from "../support/peopleData.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { spawnWorker, type WorkerProcess } from "../support/workerProcess.ts";
import { enqueueArgs, eventually, runCli, writeSchemaFile } from "./helpers.ts";

// Workers and producers against a Redis Cluster of three masters (started here with
// `redis-server --cluster-enabled yes` and `redis-cli --cluster create`), the queue prefix
// hash-tagged so that each job's keys share a slot.

const MiB = 1024 * 1024;

describe("Redis Cluster", () => {
  let stack: Stack;
  const masters: ChildProcess[] = [];
  const workers: WorkerProcess[] = [];
  let env: NodeJS.ProcessEnv;
  let ports: number[] = [];

  beforeAll(async () => {
    stack = await startStack({ PART_SIZE: String(5 * MiB) });
    const dir = await mkdtemp(join(tmpdir(), "s3csv-cluster-"));
    ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) {
      masters.push(
        spawn(
          "redis-server",
          [
            "--port",
            String(port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            join(dir, `nodes-${port}.conf`),
            "--dir",
            dir,
            "--save",
            "",
          ],
          { stdio: "ignore" },
        ),
      );
    }
    const cli = (...args: string[]) =>
      spawnSync("redis-cli", args, { encoding: "utf8", timeout: 30_000 });
    for (const port of ports) {
      await eventually(() => cli("-p", String(port), "ping").stdout.includes("PONG") || undefined);
    }
    const created = cli(
      "--cluster",
      "create",
      ...ports.map((p) => `127.0.0.1:${p}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    );
    expect(created.status, created.stdout + created.stderr).toBe(0);
    await eventually(
      () =>
        ports.every((p) =>
          cli("-p", String(p), "cluster", "info").stdout.includes("cluster_state:ok"),
        ) || undefined,
      30_000,
    );
    env = {
      ...stack.env,
      REDIS_CLUSTER_NODES: ports.map((p) => `127.0.0.1:${p}`).join(","),
      QUEUE_PREFIX: "{s3csv}",
      // Nothing listens here: every connection must go to the cluster.
      REDIS_URL: "redis://127.0.0.1:1",
    };
  });
  afterAll(async () => {
    for (const w of workers) await w.kill("SIGTERM");
    for (const m of masters) m.kill("SIGTERM");
    await stack?.stop();
  });

  it("runs jobs through two workers, multipart checkpoints included, with exact output", async () => {
    workers.push(spawnWorker(env), spawnWorker(env));
    const big = peopleData({ rows: 60_000, invalidEvery: 9, pad: 120 });
    const small = peopleData({ rows: 50, invalidEvery: 7 });
    await stack.put("cluster/big.csv", big.csv);
    await stack.put("cluster/small.csv", small.csv);
    const schemaFile = await writeSchemaFile("cluster-schema", peopleSchema);
    const enqueue = (name: string) =>
      runCli(
        [
          ...enqueueArgs(`cluster/${name}.csv`, `cluster/${name}.out.csv`, schemaFile),
          "--wait",
          "--json",
        ],
        env,
      );
    const [bigRun, smallRun] = await Promise.all([enqueue("big"), enqueue("small")]);
    expect(bigRun.stderr).toBe("");
    expect(smallRun.stderr).toBe("");
    const bigResult = JSON.parse(bigRun.stdout) as JobResult;
    expect(bigResult.parts).toBeGreaterThanOrEqual(2);
    expect(bigResult.rows.rejected).toBe(big.rejected.length);
    expect((await stack.get("cluster/big.out.csv")).equals(big.expectedOutput)).toBe(true);
    expect((await stack.get("cluster/small.out.csv")).equals(small.expectedOutput)).toBe(true);
    // The queue's keys live in the cluster, all in the slot of the hash tag.
    const slot = spawnSync("redis-cli", ["-p", String(ports[0]), "cluster", "keyslot", "{s3csv}"], {
      encoding: "utf8",
    }).stdout.trim();
    const keys = ports.map((port) =>
      Number(
        spawnSync("redis-cli", ["-p", String(port), "cluster", "countkeysinslot", slot], {
          encoding: "utf8",
        }).stdout.trim(),
      ),
    );
    expect(keys.reduce((a, b) => a + b, 0)).toBeGreaterThan(5);

    // One CLI waits for several jobs on the cluster's shared client: each wait leaves it open.
    const manifest = join(tmpdir(), `cluster-manifest-${process.pid}.ndjson`);
    await writeFile(
      manifest,
      ["a", "b", "c"]
        .map((n) =>
          JSON.stringify({
            source: { bucket: BUCKET, key: "cluster/small.csv" },
            destination: { bucket: BUCKET, key: `cluster/bulk-${n}.csv` },
            schema: peopleSchema,
          }),
        )
        .join("\n"),
    );
    const bulk = await runCli(["enqueue", "--manifest", manifest, "--wait", "--json"], env);
    expect(bulk.code, bulk.stderr).toBe(0);
    const results = bulk.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as JobResult);
    expect(results.map((r) => r.rows.read)).toEqual([50, 50, 50]);
  });
});
