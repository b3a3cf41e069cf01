import { defineConfig } from "vitest/config";

// Two projects in one run (one report): every test against the fauxqs emulator, and the suites
// that matter most against Ceph's RADOS Gateway (a real S3 implementation each file starts for
// itself; scripts/install-rgw.sh installs it). `npm test -- --project emulator` runs only the
// first, on a machine without Ceph.
const ON_REAL_S3 = [
  "test/integration/pipeline.test.ts",
  "test/integration/crashResume.test.ts",
  "test/integration/repeatedCrashes.test.ts",
  "test/integration/integrity.test.ts",
  "test/integration/sweep.test.ts",
  "test/integration/realS3.test.ts",
  "test/integration/tlsS3.test.ts",
  "test/integration/infer.test.ts",
  "test/integration/split.test.ts",
  "test/integration/watch.test.ts",
];

export default defineConfig({
  test: {
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Integration tests run real servers and worker processes; two files at a time on 2 cores.
    maxWorkers: 2,
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
    projects: [
      {
        extends: true,
        test: {
          name: "emulator",
          include: ["test/**/*.test.ts"],
          env: { S3CSV_TEST_S3: "emulator" },
          // Only a real S3 implementation has what it checks (ListParts, to begin with).
          exclude: ["test/integration/realS3.test.ts", "test/integration/tlsS3.test.ts"],
        },
      },
      {
        extends: true,
        // S3CSV_TEST_S3=endpoint (and its settings, see the README) points these at your own S3.
        test: {
          name: "rgw",
          include: ON_REAL_S3,
          env: { S3CSV_TEST_S3: process.env.S3CSV_TEST_S3 === "endpoint" ? "endpoint" : "rgw" },
        },
      },
    ],
  },
});
