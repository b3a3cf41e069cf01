import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ConfigEnv } from "../../shared/config.ts";

// No Docker engine runs in CI: the compose file and the Dockerfile are checked statically.

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  container_name?: string;
  healthcheck?: unknown;
  stop_grace_period?: string;
}

const compose = parse(
  await readFile(new URL("../../docker-compose.yml", import.meta.url), "utf8"),
  { merge: true },
) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};
const dockerfile = await readFile(new URL("../../Dockerfile", import.meta.url), "utf8");

describe("docker-compose.yml", () => {
  const { redis, minio, worker } = compose.services as Record<string, Service>;

  it("runs Redis 7 with AOF on a volume, and MinIO with its buckets", () => {
    expect(redis?.image).toMatch(/^redis:7/);
    expect(redis?.command).toEqual(expect.arrayContaining(["--appendonly", "yes"]));
    expect(redis?.healthcheck).toBeDefined();
    expect(minio?.image).toMatch(/^minio\/minio/);
    expect(compose.services["create-buckets"]?.depends_on?.minio?.condition).toBe(
      "service_healthy",
    );
  });

  it("wires the worker to the services by name, with valid configuration", () => {
    const env = worker?.environment ?? {};
    expect(new URL(env.REDIS_URL as string).hostname).toBe("redis");
    expect(new URL(env.S3_ENDPOINT as string).hostname).toBe("minio");
    expect(ConfigEnv.safeParse(env).success).toBe(true);
    expect(worker?.depends_on?.redis?.condition).toBe("service_healthy");
    expect(worker?.depends_on?.["create-buckets"]?.condition).toBe(
      "service_completed_successfully",
    );
    expect(worker?.command).toEqual(["worker"]);
  });

  it("lets workers scale out (no fixed name or host port) and stop gracefully", () => {
    expect(worker?.build).toBeDefined();
    expect(worker?.container_name).toBeUndefined();
    expect(worker?.ports).toBeUndefined();
    expect(worker?.stop_grace_period).toBeDefined();
    expect(JSON.stringify(worker?.healthcheck)).toContain(
      `${worker?.environment?.WORKER_METRICS_PORT}/readyz`,
    );
  });

  it("serves the dashboard with credentials required and a readiness check", () => {
    const dashboard = compose.services.dashboard;
    expect(dashboard?.command).toEqual(["dashboard"]);
    expect(dashboard?.environment?.DASHBOARD_PASSWORD).toMatch(/^\$\{DASHBOARD_PASSWORD:\?/);
    expect(JSON.stringify(dashboard?.healthcheck)).toContain("/readyz");
    expect(dashboard?.depends_on?.redis?.condition).toBe("service_healthy");
  });

  it("declares every named volume it mounts", () => {
    for (const name of ["redis-data", "minio-data"]) expect(compose.volumes).toHaveProperty(name);
  });
});

describe("Dockerfile", () => {
  // What it builds is laid out and run by test/integration/dockerImage.test.ts.
  it("is multi-stage on node:24, installs the packed package and runs as a non-root user", () => {
    const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) expect(from).toMatch(/^node:24/);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/npm pack/);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/ENTRYPOINT \["\/app\/bin\/s3csv"\]/);
  });
});
