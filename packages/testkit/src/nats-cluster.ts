/**
 * A JetStream cluster of real nats-server processes on loopback (routes between them on free
 * ports), for tests of replicated (R3) streams and KV and of losing a node.
 */
import { freePorts } from "./ports.js";
import { startNatsServer } from "./nats-server.js";
import type { NatsServerFixture } from "./nats-server.js";

export interface NatsClusterOptions {
  /** Nodes; default 3. */
  size?: number;
  /** Cluster name; default "hsmfleet-test". */
  name?: string;
  /** Extra config text appended to every node's config (e.g. authorization). */
  configText?: string;
  /** Serve each node's HTTP monitoring endpoints (NatsServerFixture.monitorUrl). Default false. */
  monitoring?: boolean;
}

export interface NatsClusterFixture {
  nodes: NatsServerFixture[];
  /** Client URLs of every node, for a client's server list. */
  urls: string[];
  /** Stops every node (idempotent). */
  stop(): Promise<void>;
}

/** Whole-cluster starts tried when a node finds its route port taken (another process took it). */
const CLUSTER_START_TRIES = 3;

/**
 * Starts the cluster; a start whose node lost its route port to another process between
 * freePorts() and its bind ("address already in use": seen in CI) is stopped and made again on
 * new ports, up to CLUSTER_START_TRIES times. Any other failure is thrown at once.
 */
export async function startNatsCluster(
  options: NatsClusterOptions = {},
): Promise<NatsClusterFixture> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNatsClusterOnce(options);
    } catch (err) {
      const portTaken = err instanceof Error && /address already in use/.test(err.message);
      if (!portTaken || attempt >= CLUSTER_START_TRIES) throw err;
    }
  }
}

async function startNatsClusterOnce(options: NatsClusterOptions): Promise<NatsClusterFixture> {
  const size = options.size ?? 3;
  const name = options.name ?? "hsmfleet-test";
  // One freePorts call holds every listener until all are picked: separate freePort calls could
  // hand two nodes the same port (each released before the next was asked for).
  const routePorts = await freePorts(size);
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(", ");
  // All nodes start at once: JetStream waits for a quorum of peers before it answers.
  const settled = await Promise.allSettled(
    routePorts.map((port, i) =>
      startNatsServer({
        monitoring: options.monitoring ?? false,
        configText:
          `server_name: "n${i + 1}"\n` +
          `cluster {\n  name: "${name}"\n  listen: "127.0.0.1:${port}"\n  routes: [${routes}]\n}\n` +
          (options.configText ?? ""),
      }),
    ),
  );
  const nodes = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed !== undefined) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
  }
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
