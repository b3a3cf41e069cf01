#!/usr/bin/env node
// Launcher. s3csv runs on Node 24 (TypeScript type stripping, node:sqlite for the embedded S3
// server); this file stays plain JavaScript so that an older `node` first on PATH can still start
// it and hand over to the Node 24 binary that `npm ci` installed from the `node` package.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";

const major = Number(process.versions.node.split(".")[0]);
if (major >= 24) {
  await import("./main.ts");
} else {
  let nodeBinary;
  try {
    nodeBinary = createRequire(import.meta.url).resolve("node/bin/node");
  } catch {
    process.stderr.write(
      `s3csv needs Node.js 24 (this is ${process.version}); run \`npm ci\` in the s3csv folder to install it.\n`,
    );
    process.exit(1);
  }
  const child = spawn(nodeBinary, [new URL(import.meta.url).pathname, ...process.argv.slice(2)], {
    stdio: "inherit",
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => child.kill(signal));
  }
  child.on("exit", (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
