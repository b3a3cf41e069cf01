import { createConnection, createServer, type Socket } from "node:net";

// A loopback TCP proxy the tests put between a worker and Redis or S3, to break the network
// under it: reset every open connection (RST, as a dropped NAT entry or a restarted load
// balancer does) or freeze the open ones (bytes stop flowing; new connections still pass).

export interface TcpProxy {
  port: number;
  /** Connections open through the proxy now. */
  readonly open: number;
  /** Resets every open connection, both ends. */
  resetAll(): void;
  /** Stops forwarding on every open connection (until thawAll). */
  freezeAll(): void;
  thawAll(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((client) => {
    const upstream = createConnection(targetPort, "127.0.0.1");
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    port,
    get open() {
      return pairs.size;
    },
    resetAll() {
      for (const [client, upstream] of [...pairs]) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
    },
    freezeAll() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    thawAll() {
      for (const [client, upstream] of pairs) {
        client.pipe(upstream);
        upstream.pipe(client);
      }
    },
    close() {
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
