import type { Server } from "node:http";
import type { Cluster, Redis } from "ioredis";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { serveProbes } from "../../shared/probeServer.ts";

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

/** `idlePartBuffers`: how many part buffers the worker keeps between jobs now. */
export function createWorkerMetrics(idlePartBuffers: () => number): WorkerMetrics {
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
  new Gauge({
    name: "s3csv_worker_part_buffers_idle",
    help: "Part buffers this worker keeps between jobs (each PART_SIZE plus 112 KiB)",
    registers: [registry],
    collect() {
      this.set(idlePartBuffers());
    },
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

/** The worker's /healthz, /readyz and /metrics on `port` (see shared/probeServer.ts). */
export function serveWorkerMetrics(
  port: number,
  metrics: WorkerMetrics,
  redis: Redis | Cluster,
): Promise<Server> {
  return serveProbes(port, metrics.registry, redis);
}
