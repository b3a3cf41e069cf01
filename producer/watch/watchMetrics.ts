import { Counter, Gauge, Registry } from "prom-client";

// What a watcher counts, for Prometheus (WATCH_METRICS_PORT or --metrics-port).

export interface WatchMetrics {
  registry: Registry;
  seen: Counter;
  added: Counter;
  errors: Counter<"kind">;
  malformed: Counter;
  oldestWaiting: Gauge;
  forgotten: Counter;
  heldForOlderWorkers: Gauge;
}

export function createWatchMetrics(): WatchMetrics {
  const registry = new Registry();
  const counter = (name: string, help: string) =>
    new Counter({ name, help, registers: [registry] });
  return {
    registry,
    seen: counter(
      "s3csv_watch_objects_seen_total",
      "Object versions the watch looked at (listed or from events)",
    ),
    added: counter("s3csv_watch_jobs_added_total", "Jobs the watch added, one per object version"),
    errors: new Counter({
      name: "s3csv_watch_errors_total",
      help: "Rounds that failed (listing, sqs), keys S3 would not describe (head), objects no job could be made of (invalid-job), objects whose output is another's (output-clash), listings out of byte order (listing-order)",
      labelNames: ["kind"],
      registers: [registry],
    }),
    malformed: counter(
      "s3csv_watch_malformed_messages_total",
      "SQS messages that were no S3 event (deleted)",
    ),
    oldestWaiting: new Gauge({
      name: "s3csv_watch_oldest_waiting_seconds",
      help: "Age of the oldest object version not enqueued yet (its destination is busy), at the last listing",
      registers: [registry],
    }),
    forgotten: counter(
      "s3csv_watch_objects_forgotten_total",
      "Objects gone from the prefix (no longer listed, or removed) whose records were dropped",
    ),
    heldForOlderWorkers: new Gauge({
      name: "s3csv_watch_held_for_older_workers",
      help: "1 while the watch adds no jobs because a worker of s3csv 0.2 serves the queue",
      registers: [registry],
    }),
  };
}
