import { startFauxqs } from "fauxqs";

// The benchmark's S3-compatible server, in a process of its own so that its CPU is not billed
// to the variant being measured. Prints its address on the first line of stdout.
const server = await startFauxqs({ port: 0, logger: false });
process.stdout.write(`${server.address}\n`);
process.on("SIGTERM", () => {
  void server.stop().then(() => process.exit(0));
});
