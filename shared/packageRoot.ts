import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The folder of s3csv's package.json: the clone's root when run from sources, the installed
 * package's when run from its compiled `dist/`, wherever that sits.
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("s3csv: cannot find its own package.json");
    dir = parent;
  }
  return dir;
}
