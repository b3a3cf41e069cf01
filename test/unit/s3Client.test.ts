import { createHash } from "node:crypto";
import { GetObjectCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/config.ts";
import { createS3Client } from "../../shared/s3Client.ts";

// How the worker's S3 client signs a part's body: the real client and signer, with a transport
// that keeps each request it is given (as it would go on the wire) and answers 200.

interface Sent {
  headers: Record<string, string>;
}

function clientTo(endpoint: string, checksums: "when_supported" | "when_required") {
  const sent: Sent[] = [];
  const config = loadConfig({
    S3_ENDPOINT: endpoint,
    S3_CHECKSUMS: checksums,
    S3_MAX_ATTEMPTS: "1",
  });
  const s3 = createS3Client(config, {
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
    requestHandler: {
      async handle(request: Sent) {
        sent.push({ headers: { ...request.headers } });
        return {
          response: { statusCode: 200, headers: { etag: '"e"' }, body: new Uint8Array(0) },
        };
      },
      updateHttpClientConfig() {},
      httpHandlerConfigs: () => ({}),
    } as never,
  });
  return { s3, sent };
}

const body = Buffer.from("id,name\n1,a\n".repeat(1000));
const part = { Bucket: "b", Key: "k", UploadId: "u", PartNumber: 1, Body: body };
const bodyHash = createHash("sha256").update(body).digest("hex");

/** The headers a request signed: a header outside them is not covered by the signature. */
const signedHeaders = (sent: Sent) =>
  /SignedHeaders=([^,]+)/.exec(sent.headers.authorization ?? "")?.[1]?.split(";") ?? [];

describe("the S3 client's payload signing", () => {
  it("does not hash a part's body over HTTPS when the part carries its CRC32", async () => {
    const { s3, sent } = clientTo("https://s3.example.test", "when_supported");
    await s3.send(new UploadPartCommand(part));
    const [request] = sent as [Sent];
    expect(request.headers["x-amz-checksum-crc32"]).toMatch(/^[A-Za-z0-9+/]{6}==$/);
    expect(request.headers["x-amz-content-sha256"]).toBe("UNSIGNED-PAYLOAD");
    expect(signedHeaders(request)).toContain("x-amz-content-sha256");
    expect(signedHeaders(request)).toContain("x-amz-checksum-crc32");
  });

  it("signs the body's hash over plain HTTP, and over HTTPS without a checksum", async () => {
    for (const [endpoint, checksums] of [
      ["http://127.0.0.1:9", "when_supported"],
      ["https://s3.example.test", "when_required"],
    ] as const) {
      const { s3, sent } = clientTo(endpoint, checksums);
      await s3.send(new UploadPartCommand(part));
      const [request] = sent as [Sent];
      expect(request.headers["x-amz-content-sha256"]).toBe(bodyHash);
      expect(signedHeaders(request)).toContain("x-amz-content-sha256");
    }
  });

  it("leaves a request without a body as the SDK signs it", async () => {
    const { s3, sent } = clientTo("https://s3.example.test", "when_supported");
    await s3.send(new GetObjectCommand({ Bucket: "b", Key: "k" })).catch(() => undefined);
    const [request] = sent as [Sent];
    expect(request.headers["x-amz-content-sha256"]).toBe(createHash("sha256").digest("hex"));
  });
});
