import type { Queue, QueueEvents } from "bullmq";
import { Counter, Gauge, Registry } from "prom-client";
import { JobResult } from "../shared/job.ts";

// Prometheus metrics the dashboard serves: queue depth by state (read at scrape time) and
// totals from completed and failed jobs as this process sees them happen.

const STATES = ["waiting", "active", "delayed", "completed", "failed", "prioritized"] as const;

export function createMetrics(queue: Queue, events: QueueEvents): Registry {
  const registry = new Registry();
  new Gauge({
    name: "s3csv_queue_jobs",
    help: "Jobs in the queue by state",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      const counts = await queue.getJobCounts(...STATES);
      for (const state of STATES) this.set({ queue: queue.name, state }, counts[state] ?? 0);
    },
  });
  const labels = { queue: queue.name };
  const counter = (name: string, help: string) =>
    new Counter({ name, help, labelNames: ["queue"], registers: [registry] });
  const completed = counter("s3csv_jobs_completed_total", "Jobs completed");
  const failed = counter("s3csv_jobs_failed_total", "Jobs failed (each failed attempt)");
  const rowsRead = counter("s3csv_rows_read_total", "Rows read by completed jobs");
  const rowsRejected = counter("s3csv_rows_rejected_total", "Rows rejected by completed jobs");
  const bytesWritten = counter(
    "s3csv_output_bytes_total",
    "Output bytes written by completed jobs",
  );
  const resumes = counter("s3csv_resumes_total", "Times completed jobs resumed from a checkpoint");
  completed.inc(labels, 0);
  failed.inc(labels, 0);

  events.on("completed", ({ returnvalue }) => {
    completed.inc(labels);
    const value = typeof returnvalue === "string" ? safeJson(returnvalue) : returnvalue;
    const result = JobResult.safeParse(value);
    if (!result.success) return;
    rowsRead.inc(labels, result.data.rows.read);
    rowsRejected.inc(labels, result.data.rows.rejected);
    bytesWritten.inc(labels, result.data.output.bytes);
    resumes.inc(labels, result.data.resumes);
  });
  events.on("failed", () => failed.inc(labels));
  return registry;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
