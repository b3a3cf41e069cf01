import { execFile, spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOB_NAME } from "../../producer/enqueue.ts";
import { waitForResult } from "../../producer/waitForResult.ts";
import type { JobResult } from "../../shared/job.ts";
import { nodeBinary } from "../support/nodeVersions.ts";
import { NODE24_PATH, PROJECT_ROOT, SYSTEM_PATH } from "../support/runtimePaths.ts";
import { BUCKET, type Stack, startStack } from "../support/stack.ts";
import { eventually, queueFor } from "./helpers.ts";

// The package as a user gets it: `npm pack`, then `npm install ./s3csv-*.tgz` in a new app
// folder (dependencies from npm's cache or the registry). From that folder: `s3csv dev --once`
// on Node 24, an app script that enqueues with the producer library and waits, on Node 20 and
// on Node 22 (binaries from the npm registry's `node` package), and a worker on Node 24 that
// loads the app's own transforms module.

const exec = promisify(execFile);

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runIn(
  cwd: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): { child: ReturnType<typeof spawn>; ran: Ran; exited: Promise<Ran> } {
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const ran: Ran = { code: null, stdout: "", stderr: "" };
  child.stdout?.on("data", (d: Buffer) => {
    ran.stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    ran.stderr += d.toString();
  });
  const exited = new Promise<Ran>((done) =>
    child.on("exit", (code) => {
      ran.code = code;
      done(ran);
    }),
  );
  return { child, ran, exited };
}

/** Packs the project from a copy of its files (so the clone's own dist/ is left alone). */
async function pack(into: string): Promise<string> {
  const copy = await mkdtemp(join(tmpdir(), "s3csv-pack-"));
  const { stdout } = await exec("git", ["ls-files", "-co", "--exclude-standard"], {
    cwd: PROJECT_ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  for (const file of stdout.split("\n").filter(Boolean)) {
    await mkdir(dirname(join(copy, file)), { recursive: true });
    await cp(join(PROJECT_ROOT, file), join(copy, file));
  }
  await symlink(join(PROJECT_ROOT, "node_modules"), join(copy, "node_modules"));
  const env = { ...process.env, PATH: SYSTEM_PATH };
  await exec("npm", ["run", "build"], { cwd: copy, env });
  await exec("npm", ["pack", "--ignore-scripts", "--pack-destination", into], { cwd: copy, env });
  await rm(copy, { recursive: true, force: true });
  const [tarball] = (await readdir(into)).filter((f) => f.endsWith(".tgz"));
  return join(into, tarball as string);
}

const TRANSFORMS_JS = `import { defineTransform } from "s3csv";
import { z } from "zod";

export const shout = defineTransform({
  name: "shout",
  description: "id,word -> id,word upper-cased",
  input: z.object({ id: z.string().regex(/^\\d+$/), word: z.string().min(1) }),
  columns: ["id", "word"],
  map({ id, word }) {
    if (word === "boom") throw new Error("cannot shout boom");
    return { id, word: word.toUpperCase() };
  },
});

export const notATransform = 42;
`;

const TRANSFORMS_TS = `import { defineTransform, type Transform } from "s3csv";
import { z } from "zod";

const whisper: Transform = defineTransform({
  name: "whisper",
  description: "id,word -> id,word lower-cased",
  input: z.object({ id: z.string(), word: z.string() }),
  columns: ["id", "word"],
  map: ({ id, word }: { id: string; word: string }) => ({ id, word: word.toLowerCase() }),
});
export default whisper;
`;

const APP = `import {
  enqueueTransform,
  loadConfig,
  queueSettings,
  transformQueue,
  waitForResult,
} from "s3csv/producer";

const queue = transformQueue(queueSettings(loadConfig()));
const jobId = await enqueueTransform(
  {
    source: { bucket: process.env.BUCKET, key: "app/words.csv" },
    destination: { bucket: process.env.BUCKET, key: process.env.DEST },
    transform: "shout",
  },
  { queue },
);
const result = await waitForResult(queue, jobId, { timeoutMs: 60000 });
console.log(JSON.stringify({ version: process.version, jobId, result }));
await queue.close();
`;

describe("the packed package, installed into an app", () => {
  let app: string;
  let stack: Stack;
  let queue: Queue<unknown, JobResult>;
  const children: Array<ReturnType<typeof spawn>> = [];

  const s3csv = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const started = runIn(app, join(app, "node_modules/.bin/s3csv"), args, {
      ...env,
      PATH: NODE24_PATH,
      HOME: app,
    });
    children.push(started.child);
    return started;
  };

  beforeAll(async () => {
    app = await mkdtemp(join(tmpdir(), "s3csv-app-"));
    const tarball = await pack(await mkdtemp(join(tmpdir(), "s3csv-tgz-")));
    await writeFile(
      join(app, "package.json"),
      '{ "name": "app", "private": true, "type": "module" }',
    );
    await exec("npm", ["install", "--no-audit", "--no-fund", tarball], {
      cwd: app,
      env: { ...process.env, PATH: SYSTEM_PATH },
    });
    await writeFile(join(app, "transforms.mjs"), TRANSFORMS_JS);
    await writeFile(join(app, "more.ts"), TRANSFORMS_TS);
    await writeFile(join(app, "app.mjs"), APP);
    stack = await startStack();
    queue = queueFor(stack);
  }, 300_000);

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await queue?.close();
    await stack?.stop();
    if (app) await rm(app, { recursive: true, force: true });
  });

  it("runs `s3csv dev --once` from node_modules", async () => {
    const ran = await s3csv(["dev", "--once", "--dir", join(app, ".dev")]).exited;
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toMatch(/reject report/);
  });

  it("enqueues from an app on Node 20 and 22, for a worker on Node 24 running the app's transforms", async () => {
    await stack.put("app/words.csv", "id,word\n1,hello\n2,boom\n3,world\nx,bad id\n");
    const worker = s3csv(
      ["worker", "--transforms", "./transforms.mjs", "--transforms", "./more.ts"],
      {
        ...stack.env,
        LOG_LEVEL: "info",
      },
    );
    await eventually(() => (worker.ran.stdout.includes("worker started") ? true : undefined));
    expect(worker.ran.stdout).toMatch(/"transforms":\["contacts-normalize","shout","whisper"\]/);

    // The app on Node 20 and on Node 22: what apps run, while the worker runs on Node 24.
    const [node20, node22] = await Promise.all([nodeBinary(20), nodeBinary(22)]);
    for (const [major, node, dest] of [
      [20, node20, "app/shouted.csv"],
      [22, node22, "app/shouted-22.csv"],
    ] as const) {
      const ran = await runIn(app, node, ["app.mjs"], {
        ...stack.env,
        BUCKET,
        DEST: dest,
        PATH: SYSTEM_PATH,
      }).exited;
      expect(ran.code, ran.stderr).toBe(0);
      const { version, result } = JSON.parse(ran.stdout) as { version: string; result: JobResult };
      expect(version, "the app's Node").toMatch(new RegExp(`^v${major}\\.`));
      expect(result.rows).toMatchObject({ read: 4, valid: 2, rejected: 2 });
      expect((await stack.get(dest)).toString()).toBe("id,word\r\n1,HELLO\r\n3,WORLD\r\n");
    }
    const report = (await stack.get("app/shouted.rejects.csv")).toString();
    expect(report).toContain('2,3,,transform-error,cannot shout boom,"2,boom"');
    // A zod regex is a pattern: a constraint-error, as Frictionless reports it.
    expect(report).toMatch(/4,5,id,constraint-error,/);

    // A job naming a transform no worker has fails at once, unretried, naming it.
    const unknown = await queue.add(
      JOB_NAME,
      {
        source: { bucket: BUCKET, key: "app/words.csv" },
        destination: { bucket: BUCKET, key: "app/unknown.csv" },
        transform: "no-such-transform",
      },
      { attempts: 5 },
    );
    await expect(waitForResult(queue, unknown.id as string, { timeoutMs: 30_000 })).rejects.toThrow(
      /no worker here has the transform "no-such-transform"; this one has: contacts-normalize, shout, whisper/,
    );
    expect((await queue.getJob(unknown.id as string))?.attemptsMade).toBe(1);
    worker.child.kill("SIGTERM");
    expect((await worker.exited).code).toBe(0);
  });

  it("stops a worker at start-up whose transforms module is missing, empty or repeats a name", async () => {
    await writeFile(join(app, "empty.mjs"), "export const answer = 42;\n");
    await writeFile(
      join(app, "clash.mjs"),
      `import { defineTransform } from "s3csv";
import { z } from "zod";
export default defineTransform({
  name: "contacts-normalize",
  description: "a second one",
  input: z.object({ a: z.string() }),
  columns: ["a"],
  map: (row) => row,
});
`,
    );
    const cases: Array<[string, RegExp]> = [
      [
        "./missing.mjs",
        /transforms module \.\/missing\.mjs could not be loaded: Cannot find module/,
      ],
      ["./empty.mjs", /transforms module \.\/empty\.mjs exports no transform/],
      [
        "./clash.mjs",
        /transforms module \.\/clash\.mjs: a transform named "contacts-normalize" is already registered \(built in\)/,
      ],
    ];
    for (const [module, message] of cases) {
      const ran = await s3csv(["worker", "--transforms", module], stack.env).exited;
      expect(ran.code, module).toBe(2);
      expect(ran.stderr, module).toMatch(message);
    }
    const viaEnv = await s3csv(["worker"], { ...stack.env, TRANSFORM_MODULES: "./empty.mjs" })
      .exited;
    expect(viaEnv.code).toBe(2);
    expect(viaEnv.stderr).toMatch(/empty\.mjs exports no transform/);
  });
});
