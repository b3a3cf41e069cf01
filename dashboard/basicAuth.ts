import { createHash, timingSafeEqual } from "node:crypto";

// HTTP basic auth, compared in constant time: both sides are hashed first, so neither the
// length nor a matching prefix of the secret leaks through timing.

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

export function basicAuthChecker(
  user: string,
  password: string,
): (header: string | undefined) => boolean {
  const expected = digest(`${user}:${password}`);
  return (header) => {
    const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? "");
    const given = match ? Buffer.from(match[1] as string, "base64").toString("utf8") : "";
    return timingSafeEqual(digest(given), expected) && match !== null;
  };
}
