import { pino } from "pino";
import type { Config } from "./config.ts";

export type Logger = pino.Logger;

export function createLogger(config: Pick<Config, "LOG_LEVEL">, name: string): Logger {
  return pino({
    name,
    level: config.LOG_LEVEL,
    // Credentials can reach a log line only through these fields; never print them.
    redact: {
      paths: ["password", "*.password", "secretAccessKey", "*.secretAccessKey", "sessionToken"],
      censor: "[redacted]",
    },
  });
}
