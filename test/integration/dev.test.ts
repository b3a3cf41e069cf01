import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "./helpers.ts";

describe("s3csv dev", () => {
  it("runs the sample job on an embedded Redis and S3 and shows where the outputs are", async () => {
    const dir = await mkdtemp(join(tmpdir(), "s3csv-dev-"));
    try {
      const env = { PATH: process.env.PATH, HOME: process.env.HOME };
      const run = await runCli(["dev", "--once", "--dir", dir], env);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("done: 4 valid rows, 4 rejected of 8");
      expect(run.stdout).toContain("reject report s3://s3csv-dev/out/orders.rejects.csv");
      expect(run.stdout).toMatch(/3,4,email,type-error/);
      expect(run.stdout).toContain("the servers have stopped");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
