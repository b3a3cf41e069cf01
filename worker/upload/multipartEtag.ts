import { createHash } from "node:crypto";

// The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, "-", the part count.
// It holds only where every part's ETag is a plain MD5, so it is a cross-check, never a rule:
// undefined means "cannot tell".
export function expectedMultipartEtag(partEtags: readonly string[]): string | undefined {
  const digests: Buffer[] = [];
  for (const etag of partEtags) {
    const hex = etag.replaceAll('"', "");
    if (!/^[0-9a-f]{32}$/i.test(hex)) return undefined;
    digests.push(Buffer.from(hex, "hex"));
  }
  const md5 = createHash("md5").update(Buffer.concat(digests)).digest("hex");
  return `"${md5}-${partEtags.length}"`;
}
