import { setTimeout as sleep } from "node:timers/promises";
import { Cluster, Redis } from "ioredis";
import type { Config } from "./config.ts";
import { redisConnectionOptions } from "./redis.ts";

// Before a command does anything with Redis: does it answer? A client left to itself retries
// forever and prints every failed attempt; a newcomer's first command without REDIS_URL would
// hang. One ping, within a bound, and one line that names the variable and the address.

export class RedisUnreachableError extends Error {
  override name = "RedisUnreachableError";
}

const DEFAULT_TIMEOUT_MS = 5000;

/** REDIS_URL without its password, to print. */
export function redactedRedisUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

/** Resolves once Redis answers a PING; RedisUnreachableError after `timeoutMs` or a refusal. */
export async function assertRedisReachable(
  config: Pick<Config, "REDIS_URL" | "REDIS_CLUSTER_NODES">,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<void> {
  const { maxRetriesPerRequest: _retries, ...options } = redisConnectionOptions(config);
  const once = {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  };
  const nodes = config.REDIS_CLUSTER_NODES;
  const client = nodes
    ? new Cluster(
        nodes.split(",").map((node) => {
          const at = node.lastIndexOf(":");
          return { host: node.slice(0, at), port: Number(node.slice(at + 1)) };
        }),
        {
          lazyConnect: true,
          clusterRetryStrategy: () => null,
          redisOptions: { ...options, ...once },
        },
      )
    : new Redis({ ...options, ...once });
  let lastError: Error | undefined;
  client.on("error", (error: Error) => {
    lastError = error;
  });
  const where = nodes
    ? `the cluster nodes ${nodes} (REDIS_CLUSTER_NODES)`
    : `${redactedRedisUrl(config.REDIS_URL)} (REDIS_URL)`;
  try {
    const answered = await Promise.race([
      client.connect().then(() => client.ping()),
      // Unref: once Redis answers, the timer must not keep the command alive.
      sleep(timeoutMs, "timeout" as const, { ref: false }),
    ]);
    if (answered === "timeout") throw lastError ?? new Error(`no answer in ${timeoutMs / 1000} s`);
  } catch (error) {
    // The connection's own error (ECONNREFUSED, say) says more than the "closed" that follows.
    const reason = reasonOf(lastError ?? (error as Error));
    throw new RedisUnreachableError(
      `cannot reach Redis at ${where}: ${reason}; set REDIS_URL to your Redis (s3csv dev prints the one it runs)`,
    );
  } finally {
    client.disconnect();
  }
}

function reasonOf(error: Error): string {
  const code = (error as { code?: string }).code;
  if (/WRONGPASS|NOAUTH|invalid password/i.test(error.message)) {
    return "it refused the password (the user and password in REDIS_URL)";
  }
  if (/Unknown RESP type/.test(error.message)) return "what answered there is not Redis";
  const known: Record<string, string> = {
    ECONNREFUSED: "connection refused (nothing listens there)",
    ENOTFOUND: "no such host",
    EAI_AGAIN: "the host name could not be looked up",
    ETIMEDOUT: "no answer",
  };
  return (code && known[code]) ?? code ?? error.message.split("\n")[0] ?? "no answer";
}
