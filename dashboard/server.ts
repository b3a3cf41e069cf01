import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import { QueueEvents } from "bullmq";
import Fastify, { type FastifyInstance } from "fastify";
import { queueSettings, transformQueue } from "../producer/enqueue.ts";
import type { Config } from "../shared/config.ts";
import { closeRedisConnection, redisClient, redisConnection } from "../shared/redis.ts";
import { basicAuthChecker } from "./basicAuth.ts";
import { addJob, editJob } from "./guardedActions.ts";
import { jobTitle, resultFirst } from "./jobView.ts";
import { createMetrics } from "./metrics.ts";

// The dashboard: Bull Board at /admin/queues behind basic auth, health and readiness probes,
// and Prometheus metrics. A job's title says what it transforms, its result leads with a
// summary, a failure shows its reason (no stack). The two actions that write job data go
// through s3csv's own checks (guardedActions.ts): Duplicate and Add enqueue as a producer
// does; Edit changes only a job no worker has taken (the checkpoint lives in the data).

export const BOARD_PATH = "/admin/queues";

/**
 * The Bull Board routes that change a job's data or add jobs, as the router matched them
 * (however the URL is spelled, the route it reaches decides), and s3csv's own handlers for
 * them: Bull Board's would skip the producer's checks and could write over a checkpoint.
 */
const EDIT_ROUTE = `PATCH ${BOARD_PATH}/api/queues/:queueName/:jobId/update-data`;
const ADD_ROUTE = `POST ${BOARD_PATH}/api/queues/:queueName/add`;
const REFUSED = new Set([EDIT_ROUTE, ADD_ROUTE]);
const OPEN = new Set(["/healthz", "/readyz"]);

/**
 * Throws unless Bull Board registered every refused route: one renamed by an upgrade would
 * otherwise stop being refused without a word.
 */
function checkRefusedRoutesExist(registered: Set<string>): void {
  const missing = [...REFUSED].filter((route) => !registered.has(route));
  if (missing.length > 0)
    throw new Error(
      `Bull Board has no route ${missing.join(", ")}: update the dashboard's read-only guard for this Bull Board version`,
    );
}

export interface DashboardOptions {
  config: Config;
  /** null runs without authentication (the caller binds to 127.0.0.1 only). */
  credentials: { user: string; password: string } | null;
}

export interface Dashboard {
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function createDashboard({
  config,
  credentials,
}: DashboardOptions): Promise<Dashboard> {
  const connection = redisConnection(config);
  // With the producer's default job options: a job added here (Duplicate) retries as any does.
  const queue = transformQueue(queueSettings(config));
  const events = new QueueEvents(config.QUEUE_NAME, { connection, prefix: config.QUEUE_PREFIX });
  const probe = redisClient(connection, { maxRetriesPerRequest: 1, lazyConnect: true });
  probe.on("error", () => {});
  const registry = createMetrics(queue, events);

  const app = Fastify({ logger: false });
  const authorized = credentials
    ? basicAuthChecker(credentials.user, credentials.password)
    : () => true;
  const registered = new Set<string>();
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) registered.add(`${method} ${route.url}`);
  });
  // onRequest runs after routing: routeOptions.url is the matched route's pattern (undefined
  // when none matched, and the request ends in a 404).
  app.addHook("onRequest", async (request, reply) => {
    const route = request.routeOptions.url;
    if (route !== undefined && OPEN.has(route)) return;
    if (!authorized(request.headers.authorization)) {
      return reply
        .code(401)
        .header("www-authenticate", 'Basic realm="s3csv", charset="UTF-8"')
        .send("authentication required\n");
    }
  });
  // After the body is parsed (onRequest sees none): s3csv's own handlers for the routes that
  // write job data, in place of Bull Board's.
  app.addHook("preHandler", async (request, reply) => {
    const matched = `${request.method} ${request.routeOptions.url}`;
    if (!REFUSED.has(matched)) return;
    const { queueName } = request.params as { queueName: string };
    if (queueName !== queue.name) return reply.code(404).send({ error: "no such queue" });
    return matched === ADD_ROUTE ? addJob(queue, request, reply) : editJob(queue, request, reply);
  });

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    try {
      await probe.ping();
      return { status: "ready" };
    } catch (error) {
      return reply.code(503).send({ status: "unavailable", redis: (error as Error).message });
    }
  });
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });

  const board = new FastifyAdapter();
  const adapter = new BullMQAdapter(queue, { allowRetries: true, description: "CSV transforms" });
  adapter.setFormatter("name", jobTitle);
  adapter.setFormatter("returnValue", resultFirst);
  createBullBoard({
    queues: [adapter],
    serverAdapter: board,
    options: { uiConfig: { boardTitle: "s3csv", jobDetails: { defaultTab: "Data" } } },
  });
  board.setBasePath(BOARD_PATH);
  await app.register(board.registerPlugin(), { prefix: BOARD_PATH });
  checkRefusedRoutesExist(registered);
  app.get("/", async (_request, reply) => reply.redirect(BOARD_PATH));

  return {
    app,
    async close() {
      await app.close();
      await events.close();
      await queue.close();
      probe.disconnect();
      closeRedisConnection(connection);
    },
  };
}
