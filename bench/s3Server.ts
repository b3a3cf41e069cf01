import { buildApp } from "fauxqs";

// The benchmark's S3-compatible server, in a process of its own so that its CPU is not billed
// to the variant being measured. Prints its address on the first line of stdout; GET /__counts
// answers how many requests of each kind it served and how many bytes it received in uploads
// and sent in GETs; on SIGTERM it prints the same and exits.

const counts: Record<string, number> = {};
const app = buildApp({ logger: false });
app.addHook("onRequest", async (request, reply) => {
  if (request.url === "/__counts") return reply.send(counts);
  const query = request.url.includes("?") ? request.url.slice(request.url.indexOf("?") + 1) : "";
  const kind =
    request.method === "PUT" && query.includes("partNumber=")
      ? "UploadPart"
      : request.method === "POST" && query.startsWith("uploads")
        ? "CreateMultipartUpload"
        : request.method === "POST" && query.includes("uploadId=")
          ? "CompleteMultipartUpload"
          : request.method === "DELETE" && query.includes("uploadId=")
            ? "AbortMultipartUpload"
            : request.method === "GET" && query.includes("list-type=2")
              ? "ListObjectsV2"
              : ({ PUT: "PutObject", GET: "GetObject", HEAD: "HeadObject", DELETE: "DeleteObject" }[
                  request.method
                ] ?? request.method);
  counts[kind] = (counts[kind] ?? 0) + 1;
  if (kind === "UploadPart" || kind === "PutObject") {
    counts.bytesReceived =
      (counts.bytesReceived ?? 0) + Number(request.headers["content-length"] ?? 0);
  }
});
// Bytes read from the server, as it sent them (a resumed job's ranged GET counts what it read).
app.addHook("onResponse", async (request, reply) => {
  if (request.method !== "GET" || request.url === "/__counts") return;
  const sent = Number(reply.getHeader("content-length") ?? 0);
  counts.bytesSent = (counts.bytesSent ?? 0) + sent;
  // Ranged reads on their own: what a resumed job reads again.
  if (reply.statusCode === 206) counts.bytesSentRanged = (counts.bytesSentRanged ?? 0) + sent;
});
const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${address}\n`);
process.on("SIGTERM", () => {
  process.stdout.write(`${JSON.stringify(counts)}\n`);
  void app.close().then(() => process.exit(0));
});
