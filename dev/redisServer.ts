import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";

// Starts a private `redis-server` (Debian's package, or any on PATH) on a free loopback port,
// for `s3csv dev` and the test suite. AOF is on, as production should run it.

export interface RedisServer {
  url: string;
  port: number;
  /** The data directory (AOF), so a test can restart the server on the same data. */
  dir: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export class RedisServerMissingError extends Error {
  override name = "RedisServerMissingError";
  constructor() {
    super(
      "redis-server was not found on PATH. Install it (Debian/Ubuntu: `apt-get install -y redis-server`, macOS: `brew install redis`) or point REDIS_URL at a running Redis.",
    );
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export async function startRedisServer(options: {
  dir: string;
  port?: number;
  /** Turns on AUTH (`requirepass`); the URL then carries the password. */
  password?: string;
}): Promise<RedisServer> {
  if (spawnSync("redis-server", ["--version"]).error) throw new RedisServerMissingError();
  await mkdir(options.dir, { recursive: true });
  const port = options.port ?? (await freePort());
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      options.dir,
      "--appendonly",
      "yes",
      "--save",
      "",
      "--protected-mode",
      "yes",
      ...(options.password ? ["--requirepass", options.password] : []),
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : "";
  const url = `redis://${auth}127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`redis-server exited with code ${code}`))),
  );
  exited.catch(() => {});
  const probe = new Redis(port, "127.0.0.1", {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...(options.password ? { password: options.password } : {}),
  });
  probe.on("error", () => {});
  try {
    for (let i = 0; ; i++) {
      try {
        await probe.connect();
        await Promise.race([probe.ping(), exited]);
        break;
      } catch (error) {
        if (i > 100 || child.exitCode !== null) throw error;
        probe.disconnect();
        await sleep(50);
      }
    }
  } finally {
    probe.disconnect();
  }
  return {
    url,
    port,
    dir: options.dir,
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await gone;
    },
  };
}
