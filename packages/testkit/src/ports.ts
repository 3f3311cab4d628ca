import { createConnection, createServer } from "node:net";

/**
 * A TCP port that was free on `host` a moment ago (the kernel picks it; the listener is closed
 * before returning, so callers that bind later must still handle EADDRINUSE).
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const [port] = await freePorts(1, host);
  return port!;
}

/**
 * `count` TCP ports that were free on `host` a moment ago and differ from each other: all the
 * listeners are held until every port is picked (calls of freePort one after the other can get
 * the same port back, the first having been closed: a 3-node test cluster once got its monitor
 * port equal to another of its ports and failed with EADDRINUSE).
 */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.unref();
            server.once("error", reject);
            server.listen({ host, port: 0, exclusive: true }, () => {
              const address = server.address();
              if (address === null || typeof address === "string")
                reject(new Error(`unexpected listener address ${String(address)}`));
              else resolve(address.port);
            });
          }),
      ),
    );
  } finally {
    await Promise.all(
      servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }
}

/** True when a TCP connection to host:port is accepted within `timeoutMs`. */
export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const finish = (ok: boolean): void => {
      socket.removeAllListeners();
      socket.on("error", () => undefined);
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}
