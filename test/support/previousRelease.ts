import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

// A previous release of s3csv, beside this one: checked out from the project's own history,
// installed in a folder of its own under .cache/releases, and run by its own `s3csv` command, as
// an operator's older workers and producers would be during a rolling upgrade. Two are named in
// .ci/: `previous-release`, the last release of the job contract before this one (every
// rolling-upgrade test runs against it), and `latest-release`, the last release of this
// contract (the hand-offs run against it: what an upgrade to this commit meets).

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface PreviousRelease {
  tag: string;
  /** The release's folder: its `bin/s3csv` runs its own sources on its own Node 24. */
  dir: string;
  command: string;
}

/** Which release of the two .ci/ names. */
export type ReleaseFile = "previous-release" | "latest-release";

/**
 * The release to test against: the one `.ci/<file>` names, by its tag, or, in a clone without
 * tags, by its commit (its history has it); or why there is none (a shallow clone).
 */
export async function previousTag(
  file: ReleaseFile = "previous-release",
): Promise<string | { missing: string }> {
  const git = (...args: string[]) => run("git", args, { cwd: ROOT }).then((r) => r.stdout.trim());
  // S3CSV_PREVIOUS_RELEASE names another release to run the hand-offs against (a tag).
  const [tag, commit] =
    process.env.S3CSV_PREVIOUS_RELEASE && file === "previous-release"
      ? [process.env.S3CSV_PREVIOUS_RELEASE, undefined]
      : (await readFile(join(ROOT, ".ci", file), "utf8")).split(/\s+/);
  for (const name of [tag, commit]) {
    if (name && (await git("cat-file", "-t", `${name}^{commit}`).catch(() => "")) === "commit")
      return name;
  }
  return { missing: `neither ${tag} nor commit ${commit} is in this clone` };
}

/** Runs a command to its end, its output kept for the error should it fail. */
function sh(command: string, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", command], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited ${code}:\n${out.slice(-4000)}`)),
    );
  });
}

/**
 * The previous release, checked out and installed (once; later runs reuse the folder), or why
 * it cannot be had here.
 */
export async function previousRelease(
  file: ReleaseFile = "previous-release",
): Promise<PreviousRelease | { missing: string }> {
  const tag = await previousTag(file);
  if (typeof tag !== "string") return tag;
  // Not under node_modules: Node strips types only outside it, and the release runs its sources.
  const dir = join(ROOT, ".cache", "releases", tag);
  const ready = join(dir, ".installed");
  if (!existsSync(ready)) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await sh(`git -C '${ROOT}' archive '${tag}' | tar -x -C '${dir}'`, ROOT);
    // Its own lock file, its own Node 24 (the `node` package), its build (prepare). Releases up
    // to v0.4.1 do not allow their dependencies' install scripts, which npm refuses under
    // strict-allow-scripts (and warns of from 11.19 on).
    await sh("npm pkg set allowScripts.node=true allowScripts.msgpackr-extract=true --json", dir);
    await sh("npm ci --no-audit --no-fund --loglevel=error", dir);
    await writeFile(ready, `${tag}\n`);
  }
  return { tag, dir, command: join(dir, "bin", "s3csv") };
}
