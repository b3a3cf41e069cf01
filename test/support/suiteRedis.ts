import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { type RedisServer, startRedisServer } from "../../dev/redisServer.ts";

// A real redis-server for the enclosing describe block, in a folder of its own, and a client
// of it: started before its tests (the fields are set then), stopped and removed after them.

export interface SuiteRedis {
  server: RedisServer;
  redis: Redis;
}

export function useSuiteRedis(name: string): SuiteRedis {
  const suite = {} as SuiteRedis;
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `s3csv-${name}-`));
    suite.server = await startRedisServer({ dir });
    suite.redis = new Redis(suite.server.url);
  });
  afterAll(async () => {
    suite.redis?.disconnect();
    await suite.server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return suite;
}
