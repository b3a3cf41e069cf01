import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

// Workers run as real processes, started by the s3csv command users run (its launcher execs
// Node with the worker's V8 settings), so that a crash test can SIGKILL one.

const S3CSV = fileURLToPath(new URL("../../bin/s3csv", import.meta.url));

export interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** A worker process; `command` is another release's s3csv command (a rolling upgrade). */
export function spawnWorker(
  env: NodeJS.ProcessEnv,
  extra: NodeJS.ProcessEnv = {},
  command = S3CSV,
): WorkerProcess {
  const child = spawn(command, ["worker"], {
    env: { ...env, ...extra },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    output: () => log,
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
