// S3 errors by name, whichever S3-compatible server sent them.

export function isS3Error(error: unknown, name: string): boolean {
  if (typeof error !== "object" || error === null) return false;
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name === name || e.Code === name) return true;
  // HEAD responses have no body, so the SDK can only name them by status.
  return name === "NotFound" && e.$metadata?.httpStatusCode === 404;
}

export function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}
