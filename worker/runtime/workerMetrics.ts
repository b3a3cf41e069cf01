import { createServer, type Server } from "node:http";
import type { Cluster, Redis } from "ioredis";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

// A worker's own health and metrics endpoint (WORKER_METRICS_PORT): liveness, readiness (Redis
// answers) and Prometheus metrics that only a worker can see, such as part upload latency.

export interface WorkerMetrics {
  registry: Registry;
  partUploaded(seconds: number, bytes: number): void;
  jobStarted(): void;
  jobEnded(
    outcome: "completed" | "failed" | "handed-back" | "lock-lost" | "needs-newer-worker",
  ): void;
}

export function createWorkerMetrics(): WorkerMetrics {
  const registry = new Registry();
  const latency = new Histogram({
    name: "s3csv_part_upload_seconds",
    help: "UploadPart latency",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const bytes = new Counter({
    name: "s3csv_part_bytes_total",
    help: "Bytes uploaded in parts",
    registers: [registry],
  });
  const active = new Gauge({
    name: "s3csv_worker_active_jobs",
    help: "Jobs this worker is running",
    registers: [registry],
  });
  const ended = new Counter({
    name: "s3csv_worker_jobs_total",
    help: "Job attempts this worker ended, by outcome",
    labelNames: ["outcome"],
    registers: [registry],
  });
  return {
    registry,
    partUploaded(seconds, size) {
      latency.observe(seconds);
      bytes.inc(size);
    },
    jobStarted: () => active.inc(),
    jobEnded(outcome) {
      active.dec();
      ended.inc({ outcome });
    },
  };
}

export function serveWorkerMetrics(
  port: number,
  metrics: WorkerMetrics,
  redis: Redis | Cluster,
): Promise<Server> {
  const server = createServer((request, response) => {
    const reply = (status: number, body: string, type = "application/json") => {
      response.writeHead(status, { "content-type": type });
      response.end(body);
    };
    if (request.url === "/healthz") return reply(200, '{"status":"ok"}');
    if (request.url === "/readyz") {
      redis.ping().then(
        () => reply(200, '{"status":"ready"}'),
        (error: Error) =>
          reply(503, JSON.stringify({ status: "unavailable", redis: error.message })),
      );
      return;
    }
    if (request.url === "/metrics") {
      metrics.registry.metrics().then((text) => reply(200, text, metrics.registry.contentType));
      return;
    }
    reply(404, '{"error":"not found"}');
  });
  return new Promise((resolve) => server.listen(port, "0.0.0.0", () => resolve(server)));
}
