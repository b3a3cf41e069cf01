import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  CompleteMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../shared/config.ts";
import { createS3Client, sdkLogger, sendsUnsigned } from "../../shared/s3Client.ts";

// What the worker's S3 client signs: the request as it leaves the signer, caught before it is
// sent (the servers' side is the integration tests').

async function signed(env: NodeJS.ProcessEnv, command: "put" | "part" | "get" | "complete") {
  const s3 = createS3Client(loadConfig({ AWS_REGION: "us-east-1", ...env }), {
    credentials: { accessKeyId: "id", secretAccessKey: "secret" },
    maxAttempts: 1,
  });
  let headers: Record<string, string> = {};
  s3.middlewareStack.addRelativeTo(
    (() => async (args: { request: unknown }) => {
      headers = { ...(args.request as { headers: Record<string, string> }).headers };
      return { response: { statusCode: 200, headers: {} }, output: { $metadata: {} } };
    }) as never,
    { relation: "after", toMiddleware: "httpSigningMiddleware", name: "caught" },
  );
  const body = Buffer.from("id,name\n1,Ada\n");
  const target = { Bucket: "b", Key: "k" };
  if (command === "put") await s3.send(new PutObjectCommand({ ...target, Body: body }));
  else if (command === "part") {
    await s3.send(new UploadPartCommand({ ...target, UploadId: "u", PartNumber: 1, Body: body }));
  } else if (command === "complete") {
    // The object's checksum in a header; the body is the parts' XML.
    await s3.send(
      new CompleteMultipartUploadCommand({
        ...target,
        UploadId: "u",
        ChecksumCRC32: "AAAAAA==",
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"e"', ChecksumCRC32: "AAAAAA==" }] },
      }),
    );
  } else await s3.send(new GetObjectCommand(target));
  if (command === "complete") return { headers, sha256: undefined };
  const sha256 = createHash("sha256")
    .update(command === "get" ? "" : body)
    .digest("hex");
  return { headers, sha256 };
}

describe("the S3 client's payload signing", () => {
  it("sends uploads over HTTPS unsigned, their CRC32 checked by the server, the signature covering the header", async () => {
    for (const command of ["put", "part"] as const) {
      const { headers } = await signed({ S3_ENDPOINT: "https://s3.example.test" }, command);
      expect(headers["x-amz-content-sha256"]).toBe("UNSIGNED-PAYLOAD");
      expect(headers["x-amz-checksum-crc32"]).toMatch(/^[A-Za-z0-9+/]{6}==$/);
      // The checksum the server verifies is itself signed.
      expect(/SignedHeaders=([^,]*)/.exec(headers.authorization ?? "")?.[1]?.split(";")).toContain(
        "x-amz-checksum-crc32",
      );
    }
  });

  it("leaves a body signed unless a header carries its checksum, not one that only names it", () => {
    const over = (headers: Record<string, string>, protocol = "https:") =>
      sendsUnsigned({ protocol, headers, body: Buffer.from("a") });
    for (const name of [
      "x-amz-checksum-crc32",
      "X-Amz-Checksum-CRC32C",
      "x-amz-checksum-crc64nvme",
      "x-amz-checksum-sha256",
      "x-amz-checksum-sha1",
      "Content-MD5",
    ]) {
      expect(over({ [name]: "x" }), name).toBe(true);
      expect(over({ [name]: "x" }, "http:"), `${name} over HTTP`).toBe(false);
    }
    for (const name of [
      "x-amz-checksum-algorithm",
      "x-amz-checksum-type",
      "x-amz-checksum-mode",
      "x-amz-sdk-checksum-algorithm",
      "content-type",
    ]) {
      expect(over({ [name]: "CRC32" }), name).toBe(false);
    }
    // A body already marked (a streaming trailer's) is left as it is; so is a request without one.
    expect(
      over({
        "x-amz-checksum-crc32": "x",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
      }),
    ).toBe(false);
    expect(sendsUnsigned({ protocol: "https:", headers: { "x-amz-checksum-crc32": "x" } })).toBe(
      false,
    );
  });

  it("signs the body's SHA-256 over plain HTTP, without a checksum, and for a body-less request", async () => {
    const cases = [
      [{ S3_ENDPOINT: "http://127.0.0.1:9000" }, "part"],
      [{ S3_ENDPOINT: "http://127.0.0.1:9000" }, "put"],
      [{ S3_ENDPOINT: "https://s3.example.test", S3_CHECKSUMS: "when_required" }, "part"],
      [{ S3_ENDPOINT: "https://s3.example.test" }, "get"],
    ] as const;
    for (const [env, command] of cases) {
      const { headers, sha256 } = await signed(env, command);
      expect(headers["x-amz-content-sha256"], `${env.S3_ENDPOINT} ${command}`).toBe(sha256);
    }
    // A checksum header that is the whole object's, not the body's, leaves the body signed.
    const { headers } = await signed({ S3_ENDPOINT: "https://s3.example.test" }, "complete");
    expect(headers["x-amz-checksum-crc32"]).toBe("AAAAAA==");
    expect(headers["x-amz-content-sha256"]).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("the S3 client's own output", () => {
  /** A PutObject of a stream that the server refuses (caught as it would be sent). */
  async function refusedStreamingPut(overrides: Parameters<typeof createS3Client>[1] = {}) {
    const s3 = createS3Client(loadConfig({ AWS_REGION: "us-east-1" }), {
      credentials: { accessKeyId: "id", secretAccessKey: "secret" },
      ...overrides,
    });
    s3.middlewareStack.addRelativeTo(
      (() => async () => {
        throw Object.assign(new Error("The specified bucket does not exist"), {
          name: "NoSuchBucket",
          $metadata: { httpStatusCode: 404 },
        });
      }) as never,
      { relation: "after", toMiddleware: "httpSigningMiddleware", name: "refused" },
    );
    const body = Readable.from([Buffer.from("id,name\n1,Ada\n")]);
    const put = new PutObjectCommand({ Bucket: "nosuchbkt", Key: "x.csv", Body: body });
    await expect(s3.send(put)).rejects.toThrow("The specified bucket does not exist");
  }

  it("prints nothing of the SDK's when a streaming upload fails: the command's one line is all", async () => {
    const console = [
      vi.spyOn(globalThis.console, "warn"),
      vi.spyOn(globalThis.console, "error"),
      vi.spyOn(globalThis.console, "log"),
      vi.spyOn(globalThis.console, "info"),
      vi.spyOn(process.stderr, "write"),
    ];
    try {
      await refusedStreamingPut();
      for (const spy of console) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of console) spy.mockRestore();
    }
  });

  it("passes the SDK's other warnings on, one line each, once", () => {
    const warnings: string[] = [];
    const logger = sdkLogger((message) => warnings.push(message));
    logger.warn("Multiple credential sources detected:\n  both AWS_PROFILE and the pair");
    logger.warn("Multiple credential sources detected:\n  both AWS_PROFILE and the pair");
    logger.warn("An error was encountered in a non-retryable streaming request.");
    logger.warn("Skipping CRC64NVME checksum validation:", "no implementation");
    expect(warnings).toEqual([
      "Multiple credential sources detected: both AWS_PROFILE and the pair",
      "Skipping CRC64NVME checksum validation: no implementation",
    ]);
  });
});
