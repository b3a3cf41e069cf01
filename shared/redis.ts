import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Config } from "./config.ts";

/** Connection options both ioredis and BullMQ accept. */
export interface RedisConnectionOptions {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: Record<string, never>;
  maxRetriesPerRequest: null;
}

/** One Redis (options), or a Redis Cluster (a client: BullMQ takes a cluster only as one). */
export type RedisConnection = RedisConnectionOptions | Cluster;

type RedisConfig = Pick<Config, "REDIS_URL" | "REDIS_CLUSTER_NODES">;

/** From REDIS_URL: AUTH (user and password in the URL) and TLS (`rediss://`) included. */
export function redisConnectionOptions(config: Pick<Config, "REDIS_URL">): RedisConnectionOptions {
  const url = new URL(config.REDIS_URL);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : 6379,
    db,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === "rediss:" ? { tls: {} } : {}),
    // BullMQ workers block on Redis; retries must not give up while Redis restarts.
    maxRetriesPerRequest: null,
  };
}

/**
 * What queues, workers and our own commands connect with. A cluster client is shared by the
 * BullMQ objects given it (they duplicate it for blocking reads); its owner quits it
 * (closeRedisConnection) after closing them.
 */
export function redisConnection(config: RedisConfig): RedisConnection {
  const options = redisConnectionOptions(config);
  if (!config.REDIS_CLUSTER_NODES) return options;
  const { host: _host, port: _port, db: _db, ...redisOptions } = options;
  const nodes = config.REDIS_CLUSTER_NODES.split(",").map((node) => {
    const at = node.lastIndexOf(":");
    return { host: node.slice(0, at), port: Number(node.slice(at + 1)) };
  });
  return new Cluster(nodes, { redisOptions });
}

/**
 * A client for commands of our own (checkpoint writes, readiness probes): a new one for one
 * Redis (with `options` on top), the shared client for a cluster.
 */
export function redisClient(
  connection: RedisConnection,
  options: RedisOptions = {},
): Redis | Cluster {
  return connection instanceof Cluster ? connection : new Redis({ ...connection, ...options });
}

/** Closes a connection made by redisConnection (options hold nothing open). */
export function closeRedisConnection(connection: RedisConnection): void {
  if (connection instanceof Cluster) connection.disconnect();
}
