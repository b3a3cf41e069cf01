import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { pipeline } from "node:stream/promises";
import type { Fault, SeenRequest, TestS3Server } from "./s3Server.ts";

// The hooks of the emulated S3 server (s3Server.ts), in front of a real S3 implementation: a
// loopback HTTP proxy that forwards each request as it came (Host included, so SigV4 signatures
// stay valid) and lets a test watch, hold, fail or cut requests and hold responses.

export type S3Proxy = Omit<TestS3Server, "store">;
// A test of the proxy reads its requests with the same helpers as one of the emulator.
export { type Fault, isPartUpload, type SeenRequest } from "./s3Server.ts";

function seen(req: IncomingMessage): SeenRequest {
  const url = req.url ?? "/";
  const query = Object.fromEntries(new URL(url, "http://proxy").searchParams);
  return {
    method: req.method ?? "GET",
    url,
    query,
    ...(typeof req.headers.range === "string" ? { range: req.headers.range } : {}),
  };
}

function isCompleteMultipartUpload(entry: SeenRequest): boolean {
  return entry.method === "POST" && entry.query.uploadId !== undefined;
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function partNumbers(xml: string): number[] {
  return [...xml.matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => Number(m[1]));
}

function sendFault(res: ServerResponse, fault: { status: number; code: string }): void {
  res
    .writeHead(fault.status, { "content-type": "application/xml" })
    .end(
      `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected by the test</Message></Error>`,
    );
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding"]);

/** The upstream's answer headers, less those about its own connection to the proxy. */
function endToEnd(rawHeaders: string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const [name, value] = [rawHeaders[i] as string, rawHeaders[i + 1] as string];
    if (!HOP_BY_HOP.has(name.toLowerCase())) kept.push(name, value);
  }
  return kept;
}

function forward(
  upstream: URL,
  agent: Agent,
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer | IncomingMessage,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const out = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      resolve,
    );
    out.on("error", reject);
    // A client that hung up mid-body must not leave a half-sent request upstream.
    res.once("close", () => {
      if (!res.writableFinished) out.destroy();
    });
    if (Buffer.isBuffer(body)) out.end(body.length > 0 ? body : undefined);
    else body.pipe(out);
  });
}

export async function startS3Proxy(upstream: string): Promise<S3Proxy> {
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true });
  const proxy: S3Proxy = { endpoint: "", requests: [], stop: async () => {} };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const entry = seen(req);
    // Data (parts, objects) streams through. A completion's part list is small and the hooks see
    // it, so it is read first, as are empty bodies: like s3Server.ts, which reads every body
    // before its hooks, such a request still reaches the server if its client hung up while held.
    const buffered = isCompleteMultipartUpload(entry) || !hasBody(req);
    const bytes = buffered ? await readAll(req) : undefined;
    if (bytes && isCompleteMultipartUpload(entry)) {
      entry.completedParts = partNumbers(bytes.toString("utf8"));
    }
    proxy.requests.push(entry);
    const fault = (await proxy.beforeRequest?.(entry)) as Fault | undefined;
    if (fault === "reset") {
      req.socket.destroy();
      return;
    }
    if (fault) {
      sendFault(res, fault);
      return;
    }
    // A streamed body whose client is gone never arrives whole: there is nothing to forward.
    if (!bytes && req.destroyed) return;
    const answer = await forward(target, agent, req, res, bytes ?? req);
    await proxy.beforeResponse?.(entry, answer.statusCode ?? 502);
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.rawHeaders));
    await pipeline(answer, res);
  }

  const server = createServer(
    // A test may hold a request for as long as it likes; idle keep-alive sockets stay reusable.
    { requestTimeout: 0, keepAliveTimeout: 60_000 },
    (req, res) => {
      handle(req, res).catch(() => {
        // The upstream failed or a side hung up: the client sees a 502, or a cut connection.
        if (res.headersSent || res.destroyed) res.destroy();
        else res.writeHead(502).end();
      });
    },
  );
  const sockets = new Set<Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  proxy.endpoint = `http://127.0.0.1:${port}`;
  proxy.stop = async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    for (const socket of sockets) socket.destroy();
    agent.destroy();
    await closed;
  };
  return proxy;
}
