import { oneLine } from "./commandLine.ts";
import { ConfigError } from "./config.ts";
import { RedisUnreachableError } from "./redisReachable.ts";
import { UsageError } from "./usageError.ts";

// How the s3csv command reports a failure: the exit codes the README documents, and one line.

/**
 * What the user is told when a command fails: one line naming the problem and the fix, and the
 * exit code documented for it. The stack only with --verbose or LOG_LEVEL=debug.
 */
export function failure(
  error: unknown,
  env: NodeJS.ProcessEnv = process.env,
): { code: number; line: string } {
  const e = error as {
    name?: string;
    code?: string;
    hostname?: string;
    address?: string;
    port?: number;
  } | null;
  if (error instanceof ConfigError || error instanceof UsageError) {
    return { code: 2, line: (error as Error).message };
  }
  // A command's parseArgs left unwrapped (parseCommandLine): node's text, in one line still.
  if (e?.code?.startsWith("ERR_PARSE_ARGS"))
    return { code: 2, line: oneLine(String((error as Error).message)) };
  if (error instanceof RedisUnreachableError) return { code: 4, line: error.message };
  if (e?.name === "CredentialsProviderError") {
    return {
      code: 2,
      line: "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with an IAM role); for s3csv dev, the ones it prints",
    };
  }
  if (e?.code === "ENOTFOUND" || e?.code === "ECONNREFUSED" || e?.code === "EAI_AGAIN") {
    const where = e.hostname ?? (e.address ? `${e.address}:${e.port ?? ""}` : "the S3 endpoint");
    const endpoint = env.S3_ENDPOINT
      ? `S3_ENDPOINT is ${env.S3_ENDPOINT}: is the server running?`
      : "S3_ENDPOINT is not set, so AWS was tried: set it to your S3-compatible server (s3csv dev prints its own)";
    return { code: 2, line: `cannot reach S3 at ${where} (${e.code}); ${endpoint}` };
  }
  const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
  return { code: 1, line: `${message} (run again with --verbose for the details)` };
}
