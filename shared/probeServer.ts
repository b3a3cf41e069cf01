import { createServer, type Server } from "node:http";
import type { Cluster, Redis } from "ioredis";
import type { Registry } from "prom-client";

// A long-lived process's own probes and metrics (a worker's, a watcher's): /healthz (the
// process is up), /readyz (Redis answers) and Prometheus /metrics, on a port of its own.

export function serveProbes(
  port: number,
  registry: Registry,
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
      registry.metrics().then((text) => reply(200, text, registry.contentType));
      return;
    }
    reply(404, '{"error":"not found"}');
  });
  return new Promise((resolve) => server.listen(port, "0.0.0.0", () => resolve(server)));
}
