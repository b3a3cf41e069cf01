import type { ListMultipartUploadsCommand, S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { NoUploadListingError, openUploads } from "../../worker/upload/multipartUploads.ts";

// The listing of open uploads that cleanup and `s3csv sweep` rely on, over a fake S3 that
// answers in pages the way S3 does (at most 1,000 uploads each, with next markers).

function pagedS3(total: number, pageSize: number, bucket = "out-bucket") {
  const seen: Array<{ keyMarker?: string; uploadIdMarker?: string }> = [];
  const uploads = Array.from({ length: total }, (_, i) => ({
    Key: `k/${String(i).padStart(4, "0")}`,
    UploadId: `u${i}`,
  }));
  const s3 = {
    send: async (command: ListMultipartUploadsCommand) => {
      const { KeyMarker, UploadIdMarker } = command.input;
      seen.push({ keyMarker: KeyMarker, uploadIdMarker: UploadIdMarker });
      const from = KeyMarker ? uploads.findIndex((u) => u.Key === KeyMarker) + 1 : 0;
      const page = uploads.slice(from, from + pageSize);
      const last = page.at(-1);
      const truncated = from + pageSize < total;
      return {
        Bucket: bucket,
        Uploads: page,
        IsTruncated: truncated,
        ...(truncated && last
          ? { NextKeyMarker: last.Key, NextUploadIdMarker: last.UploadId }
          : {}),
      };
    },
  } as unknown as S3Client;
  return { s3, seen };
}

describe("openUploads", () => {
  it("follows the markers across pages until the listing is complete", async () => {
    const { s3, seen } = pagedS3(2500, 1000);
    const listed: string[] = [];
    for await (const upload of openUploads(s3, "out-bucket")) listed.push(upload.UploadId ?? "");
    expect(listed).toHaveLength(2500);
    expect(new Set(listed).size).toBe(2500);
    expect(seen).toEqual([
      { keyMarker: undefined, uploadIdMarker: undefined },
      { keyMarker: "k/0999", uploadIdMarker: "u999" },
      { keyMarker: "k/1999", uploadIdMarker: "u1999" },
    ]);
  });

  it("refuses an answer that is not a listing of the bucket's uploads", async () => {
    const { s3 } = pagedS3(3, 1000, "");
    const drain = async () => {
      for await (const _ of openUploads(s3, "out-bucket"));
    };
    await expect(drain()).rejects.toThrow(NoUploadListingError);
  });
});
