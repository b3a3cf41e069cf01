import { execFile, spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, matchesGlob, relative } from "node:path";
import { promisify } from "node:util";

// No Docker engine runs here, so a Dockerfile is "built" by laying out what it would build: each
// stage is a folder standing for the image's root, COPY copies into it (from the build context,
// .dockerignore applied, or from an earlier stage), and RUN runs its shell command in the
// stage's working directory with this machine's npm. RUN commands must therefore use paths
// relative to WORKDIR, which the Dockerfile's do.

const run = promisify(execFile);

export interface Instruction {
  op: string;
  args: string;
}

export interface Stage {
  name: string | undefined;
  base: string;
  instructions: Instruction[];
}

export interface LaidOutImage {
  /** The folder that stands for the final image's root. */
  root: string;
  workdir: string;
  env: Record<string, string>;
  entrypoint: string[];
  cmd: string[];
  /** An absolute path inside the image, as a path on this machine. */
  path(inImage: string): string;
}

export function parseDockerfile(text: string): Stage[] {
  const lines = text
    .replaceAll(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op = "", args = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (op.toUpperCase() === "FROM") {
      const [, base = "", name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ name, base, instructions: [] });
    } else stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

/** Files of the build context: what git would check out (and untracked files), minus .dockerignore. */
async function contextFiles(context: string): Promise<string[]> {
  const { stdout } = await run("git", ["ls-files", "-co", "--exclude-standard"], {
    cwd: context,
    maxBuffer: 16 * 1024 * 1024,
  });
  const ignore = (await readFile(join(context, ".dockerignore"), "utf8").catch(() => ""))
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  return stdout
    .split("\n")
    .filter((file) => file !== "")
    .filter((file) => !ignore.some((p) => matchesGlob(file, p) || file.startsWith(`${p}/`)));
}

function shell(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", command], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`RUN ${command} exited ${code}:\n${output}`)),
    );
  });
}

/** Lays out every stage of the Dockerfile; `runEnv` is the environment RUN commands get. */
export async function layOutImage(
  context: string,
  dockerfile: string,
  runEnv: NodeJS.ProcessEnv,
): Promise<LaidOutImage> {
  const stages = parseDockerfile(await readFile(join(context, dockerfile), "utf8"));
  const roots = new Map<string, string>();
  let image: LaidOutImage | undefined;
  for (const [index, stage] of stages.entries()) {
    const root = await mkdtemp(join(tmpdir(), `s3csv-image-${stage.name ?? index}-`));
    const at = (inImage: string) => join(root, inImage);
    const state: LaidOutImage = {
      root,
      workdir: "/",
      env: {},
      entrypoint: [],
      cmd: [],
      path: at,
    };
    for (const { op, args } of stage.instructions) {
      if (op === "WORKDIR") {
        state.workdir = args;
        await mkdir(at(args), { recursive: true });
      } else if (op === "COPY") {
        await copy(args, state, context, roots);
      } else if (op === "RUN") {
        await shell(args, at(state.workdir), { ...runEnv, ...state.env });
      } else if (op === "ENV") {
        const [, key = "", value = ""] = /^(\S+?)[=\s]+(.*)$/.exec(args) ?? [];
        state.env[key] = value;
      } else if (op === "ENTRYPOINT") state.entrypoint = JSON.parse(args) as string[];
      else if (op === "CMD") state.cmd = JSON.parse(args) as string[];
      // The image's user only matters for what it may write, and nothing here writes.
      else if (op !== "USER") throw new Error(`${dockerfile}: ${op} is not laid out here`);
    }
    if (stage.name) roots.set(stage.name, root);
    image = state;
  }
  if (!image) throw new Error(`${dockerfile} has no stage`);
  return image;
}

async function copy(
  args: string,
  state: LaidOutImage,
  context: string,
  roots: ReadonlyMap<string, string>,
): Promise<void> {
  const words = args.split(/\s+/);
  const from = words[0]?.startsWith("--from=") ? words.shift()?.slice("--from=".length) : undefined;
  const dest = words.pop() ?? ".";
  const target = dest.startsWith("/") ? state.path(dest) : join(state.path(state.workdir), dest);
  for (const source of words) {
    if (from) {
      const stageRoot = roots.get(from);
      if (!stageRoot) throw new Error(`COPY --from=${from}: no such stage`);
      const origin = join(stageRoot, source);
      // A file copied into a folder (a destination ending in "/" or ".") keeps its name.
      const into = /\/$|^\.$/.test(dest) && (await stat(origin)).isFile();
      await cp(origin, into ? join(target, basename(source)) : target, { recursive: true });
      continue;
    }
    for (const file of await contextFiles(context)) {
      const inSource = source === "." ? file : relative(source, file);
      if (inSource.startsWith("..")) continue;
      // A single file copied into a folder keeps its name.
      const to = join(target, inSource === "" ? basename(file) : inSource);
      await mkdir(dirname(to), { recursive: true });
      await cp(join(context, file), to);
    }
  }
}
