import type { IRedisClient } from "bullmq";
import type { Cluster, Redis } from "ioredis";

// Lua scripts defined once per client and then run by EVALSHA: through our own ioredis
// connection (workers), or a BullMQ queue's client (producers), whichever library it wraps.

export interface ScriptClient {
  /** Defines a script whose first `keys` arguments are its KEYS (unless already defined). */
  define(name: string, lua: string, keys: number): void;
  run(name: string, args: ReadonlyArray<string | number | Buffer>): Promise<unknown>;
}

type Commands = Record<string, (...args: unknown[]) => Promise<unknown>>;

export function ioredisScripts(redis: Redis | Cluster): ScriptClient {
  const commands = redis as unknown as Commands;
  return {
    define: (name, lua, keys) => {
      if (!commands[name]) redis.defineCommand(name, { lua, numberOfKeys: keys });
    },
    run: (name, args) => (commands[name] as Commands[string])(...args),
  };
}

export function bullmqScripts(client: IRedisClient): ScriptClient {
  return {
    define: (name, lua, keys) => client.defineCommand(name, { lua, numberOfKeys: keys }),
    run: (name, args) => client.runCommand(name, [...args]),
  };
}
