import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { SYSTEM_PATH } from "./runtimePaths.ts";

const exec = promisify(execFile);

/**
 * A Node.js binary of the given major version, from the npm registry's `node` package (kept in
 * the temporary folder between runs): what an app on that version would run.
 */
export async function nodeBinary(major: number): Promise<string> {
  const dir = join(tmpdir(), `s3csv-node-${major}`);
  const binary = join(dir, "node_modules/node/bin/node");
  if (existsSync(binary)) return binary;
  await mkdir(dir, { recursive: true });
  // The `node` package's preinstall puts the binary in place: allowed, so that npm neither
  // warns (11.19 and later) nor, under strict-allow-scripts, refuses it.
  await writeFile(
    join(dir, "package.json"),
    '{ "private": true, "allowScripts": { "node": true } }',
  );
  await exec("npm", ["install", "--no-audit", "--no-fund", "--no-save", `node@${major}`], {
    cwd: dir,
    env: { ...process.env, PATH: SYSTEM_PATH },
  });
  return binary;
}
