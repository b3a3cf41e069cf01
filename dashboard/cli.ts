import { parseCommandLine } from "../shared/commandLine.ts";
import { loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { UsageError } from "../shared/usageError.ts";
import { BOARD_PATH, createDashboard } from "./server.ts";

export const usage = `s3csv dashboard [--port N] [--host H] [--no-auth]

Serves Bull Board at ${BOARD_PATH} (basic auth from DASHBOARD_USER and DASHBOARD_PASSWORD),
/healthz, /readyz (Redis reachable) and Prometheus /metrics, on DASHBOARD_PORT (3000).
Without credentials it refuses to start; --no-auth runs without them on 127.0.0.1 only.`;

export async function dashboardCommand(argv: string[]): Promise<void> {
  const { values } = parseCommandLine(
    {
      args: argv,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        "no-auth": { type: "boolean", default: false },
      },
    },
    { port: "a port number, 0 to 65535" },
  );
  const config = loadConfig({
    ...process.env,
    ...(values.port ? { DASHBOARD_PORT: values.port } : {}),
    ...(values.host ? { DASHBOARD_HOST: values.host } : {}),
  });
  const log = createLogger(config, "s3csv-dashboard");
  const noAuth = values["no-auth"];
  const { DASHBOARD_USER: user, DASHBOARD_PASSWORD: password } = config;
  if (!noAuth && (!user || !password)) {
    throw new UsageError(
      "the dashboard requires authentication: set DASHBOARD_USER and DASHBOARD_PASSWORD, or pass --no-auth to run without it on 127.0.0.1 only",
    );
  }
  const host = noAuth ? "127.0.0.1" : config.DASHBOARD_HOST;
  const dashboard = await createDashboard({
    config,
    credentials: noAuth ? null : { user: user as string, password: password as string },
  });
  const address = await dashboard.app.listen({ port: config.DASHBOARD_PORT, host });
  log.info({ address: `${address}${BOARD_PATH}`, auth: !noAuth }, "dashboard listening");
  process.stdout.write(
    `dashboard: ${address}${BOARD_PATH}${noAuth ? " (no authentication, 127.0.0.1 only)" : ""}\n`,
  );
  const stop = () => {
    dashboard.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}
