import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// PATHs for running what users run: an app or a Docker build on this machine's own Node and
// npm, and the s3csv command on a Node 24 (the one the tests run on).

export const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** This machine's PATH without the project's node_modules/.bin (and so without its Node 24). */
export const SYSTEM_PATH = (process.env.PATH ?? "")
  .split(":")
  .filter((dir) => !resolve(dir).startsWith(resolve(PROJECT_ROOT, "node_modules")))
  .join(":");

/** A machine (or image) whose `node` is Node 24. */
export const NODE24_PATH = `${dirname(process.execPath)}:${SYSTEM_PATH}`;
