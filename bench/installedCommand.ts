import { execFile } from "node:child_process";
import { copyFile, cp, mkdir, symlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { here, node } from "./harness.ts";

// The s3csv command laid out as an install has it (package.json and its "files": the launcher,
// the compiled JavaScript in dist/, the examples and the job schema), the project's node_modules
// beside it. In a clone the launcher runs the TypeScript sources, and Node's type stripping
// (a WebAssembly compiler) holds about 30 MB more than the installed worker: workers are
// measured as users run them.

const exec = promisify(execFile);

/** Compiles the sources into `dir` and returns the path of the command there. */
export async function installedCommand(dir: string): Promise<string> {
  const root = join(dir, "installed");
  const tsc = here("../node_modules/typescript/bin/tsc");
  await exec(node, [tsc, "-p", here("../tsconfig.build.json"), "--outDir", join(root, "dist")]);
  await mkdir(join(root, "bin"));
  await mkdir(join(root, "shared"));
  // package.json too, which every install has: it makes dist/ ES modules and is where the
  // command finds its package root.
  await copyFile(here("../package.json"), join(root, "package.json"));
  await copyFile(here("../bin/s3csv"), join(root, "bin/s3csv"));
  await copyFile(here("../shared/job.schema.json"), join(root, "shared/job.schema.json"));
  await cp(here("../examples"), join(root, "examples"), { recursive: true });
  await symlink(here("../node_modules"), join(root, "node_modules"));
  return join(root, "bin/s3csv");
}
