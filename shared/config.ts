import { z } from "zod";
import { MIN_PART_SIZE } from "./job.ts";

// Configuration comes from the environment, parsed once at start-up; every error names the
// variable. Credentials are not here: the AWS SDK's default provider chain finds them.

const int = (min: number, fallback: number) => z.coerce.number().int().min(min).default(fallback);

export const ConfigEnv = z
  .object({
    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//, "must start with redis:// or rediss://")
      .default("redis://127.0.0.1:6379"),
    QUEUE_NAME: z
      .string()
      .regex(/^[A-Za-z0-9_.{}-]+$/, "letters, digits, _ . - { } only")
      .default("csv-transform"),
    QUEUE_PREFIX: z.string().min(1).default("bull"),
    /**
     * A Redis Cluster's nodes, `host:port,host:port` (a few seeds are enough). REDIS_URL then
     * gives only the credentials and TLS. QUEUE_PREFIX must be hash-tagged, like `{s3csv}`.
     */
    REDIS_CLUSTER_NODES: z
      .string()
      .regex(/^[^,:\s]+:\d+(,[^,:\s]+:\d+)*$/, "must be host:port,host:port")
      .optional(),
    S3_ENDPOINT: z.url().optional(),
    AWS_REGION: z.string().min(1).default("us-east-1"),
    S3_CHECKSUMS: z.enum(["when_supported", "when_required"]).default("when_supported"),
    /** A connection to S3 idle this long (a stalled response) is dropped and the request retried. */
    S3_IDLE_TIMEOUT_MS: int(100, 60_000),
    /** Attempts per S3 request (the SDK's retries with backoff on 5xx, throttling, resets). */
    S3_MAX_ATTEMPTS: int(1, 5),
    WORKER_CONCURRENCY: int(1, 2),
    PART_SIZE: int(MIN_PART_SIZE, 8 * 1024 * 1024),
    PARTS_IN_FLIGHT: int(1, 2),
    JOB_ATTEMPTS: int(1, 5),
    JOB_BACKOFF_MS: int(0, 2000),
    LOCK_DURATION_MS: int(1000, 30_000),
    STALLED_INTERVAL_MS: int(500, 15_000),
    MAX_STALLED_COUNT: int(2, 5),
    LOG_LEVEL: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
      .default("info"),
    SHUTDOWN_GRACE_MS: int(0, 30_000),
    /** When set, the worker serves /healthz, /readyz and Prometheus /metrics on this port. */
    WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
    /** Comma-separated `bucket` or `bucket/prefix` entries a job may read from (empty: any). */
    ALLOWED_SOURCES: z.string().optional(),
    /** Comma-separated `bucket` or `bucket/prefix` entries a job may write to (empty: any). */
    ALLOWED_DESTINATIONS: z.string().optional(),
    /** Modules of transforms a worker loads at start-up (comma-separated paths). */
    TRANSFORM_MODULES: z
      .string()
      .transform((list) => list.split(",").map((path) => path.trim()))
      .pipe(z.array(z.string().min(1, "names an empty module path")))
      .optional(),
    /** Largest job payload, in bytes of JSON, a producer may enqueue and a worker will run. */
    MAX_JOB_BYTES: int(1024, 1024 * 1024),
    DASHBOARD_PORT: int(0, 3000),
    DASHBOARD_HOST: z.string().min(1).default("0.0.0.0"),
    DASHBOARD_USER: z.string().min(1).optional(),
    DASHBOARD_PASSWORD: z.string().min(8, "must be at least 8 characters").optional(),
  })
  // Every key of a job must live in one cluster slot (BullMQ's scripts and the fenced
  // checkpoint write touch several at once): a hash tag in the prefix puts them there.
  .refine((c) => !c.REDIS_CLUSTER_NODES || /\{[^}]+\}/.test(c.QUEUE_PREFIX), {
    message: "must contain a hash tag like {s3csv} when REDIS_CLUSTER_NODES is set",
    path: ["QUEUE_PREFIX"],
  });
export type Config = z.infer<typeof ConfigEnv>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", as in most shells' `VAR= cmd`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ""));
  const parsed = ConfigEnv.safeParse(present);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((issue) => {
    const name = String(issue.path[0]);
    return `  ${name}=${JSON.stringify(env[name] ?? "")}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
}
