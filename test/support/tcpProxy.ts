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
  /**
   * Once a client sends `pattern` (a command holding it) and the server has answered it, every
   * connection is frozen and `tripped` called: the command took effect, and nothing the client
   * sends after it arrives (a crash point between two writes).
   */
  freezeAfter(pattern: string, tripped: () => void): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let watch: { pattern: Buffer; tripped: () => void } | undefined;
  const freezeAll = () => {
    for (const [client, upstream] of pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  };
  const server = createServer((client) => {
    const upstream = createConnection(targetPort, "127.0.0.1");
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    // The watched command: the last bytes of the previous chunk too, for a pattern cut in two.
    let tail = Buffer.alloc(0);
    let sent = false;
    client.on("data", (chunk: Buffer) => {
      if (!watch || sent) return;
      const seen = Buffer.concat([tail, chunk]);
      sent = seen.includes(watch.pattern);
      tail = seen.subarray(Math.max(0, seen.length - watch.pattern.length));
    });
    upstream.on("data", () => {
      if (!watch || !sent) return;
      const { tripped } = watch;
      watch = undefined;
      freezeAll();
      tripped();
    });
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
    freezeAll,
    freezeAfter(pattern, tripped) {
      watch = { pattern: Buffer.from(pattern), tripped };
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
