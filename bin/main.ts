import { failure } from "../shared/cliFailure.ts";

const HELP = `s3csv: resumable, validated CSV transforms on S3

Usage:
  s3csv worker     run a worker that processes jobs from the queue
  s3csv enqueue    add a job (and optionally wait for its result)
  s3csv infer      draft a Table Schema from the head of a CSV object on S3
  s3csv retry      retry a job that failed for good (and optionally wait for its result)
  s3csv dashboard  serve Bull Board, health checks and Prometheus metrics
  s3csv sweep      abort the uploads and shard objects of jobs that are gone
  s3csv dev        run Redis, an S3-compatible server and a worker locally, with a sample job
  s3csv put        upload a local file to S3 (your own CSV, for s3csv dev)
  s3csv watch      make one job of every object version that lands under a prefix
  s3csv help CMD   help for one command

Configuration is read from the environment; see the README. --verbose (or LOG_LEVEL=debug)
prints the details of a failure.`;

const commands: Record<
  string,
  () => Promise<{ run(argv: string[]): Promise<void>; usage: string }>
> = {
  worker: async () => {
    const m = await import("../worker/runtime/cli.ts");
    return { run: m.workerCommand, usage: m.usage };
  },
  enqueue: async () => {
    const m = await import("../producer/cli.ts");
    return { run: m.enqueueCommand, usage: m.usage };
  },
  infer: async () => {
    const m = await import("../worker/infer/inferCli.ts");
    return { run: m.inferCommand, usage: m.usage };
  },
  retry: async () => {
    const m = await import("../producer/retryCli.ts");
    return { run: m.retryCommand, usage: m.usage };
  },
  dashboard: async () => {
    const m = await import("../dashboard/cli.ts");
    return { run: m.dashboardCommand, usage: m.usage };
  },
  sweep: async () => {
    const m = await import("../worker/operations/sweepCli.ts");
    return { run: m.sweepCommand, usage: m.usage };
  },
  watch: async () => {
    const m = await import("../producer/watch/watchCli.ts");
    return { run: m.watchCommand, usage: m.usage };
  },
  put: async () => {
    const m = await import("../producer/putCli.ts");
    return { run: m.putCommand, usage: m.usage };
  },
  dev: async () => {
    const m = await import("../dev/cli.ts");
    return { run: m.devCommand, usage: m.usage };
  },
};

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    const topic = rest[0] && commands[rest[0]];
    process.stdout.write(`${topic ? (await topic()).usage : HELP}\n`);
    return;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`s3csv: unknown command "${name}"\n\n${HELP}\n`);
    process.exitCode = 2;
    return;
  }
  const command = await load();
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${command.usage}\n`);
    return;
  }
  await command.run(rest);
}

const argv = process.argv.slice(2);
const verbose = argv.includes("--verbose") || process.env.LOG_LEVEL === "debug";
main(argv.filter((arg) => arg !== "--verbose")).catch((error: unknown) => {
  const { code, line } = failure(error);
  process.stderr.write(`s3csv: ${line}\n`);
  if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  process.exit(code);
});
