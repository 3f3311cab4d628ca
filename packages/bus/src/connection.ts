import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { DependencyError, errorMessage } from "@hsmfleet/core";

export interface BusConnectOptions {
  /** NATS URL(s), e.g. nats://10.0.0.4:4222. */
  servers: string | string[];
  /** Connection name shown by the server (`nats server report connections`). */
  name?: string | undefined;
  /** Default 5000. */
  timeoutMs?: number | undefined;
  /** Keep reconnecting forever (workers) or give up after a few tries (CLI one-shots). Default true. */
  reconnectForever?: boolean | undefined;
}

/** Connects to NATS, turning low-level failures into a message that names the server. */
export const connectBus = async (options: BusConnectOptions): Promise<NatsConnection> => {
  const servers = Array.isArray(options.servers) ? options.servers : [options.servers];
  try {
    return await connect({
      servers,
      name: options.name,
      timeout: options.timeoutMs ?? 5000,
      maxReconnectAttempts: (options.reconnectForever ?? true) ? -1 : 10,
      reconnectTimeWait: 1000,
    });
  } catch (err) {
    throw new DependencyError(
      `cannot connect to NATS at ${servers.join(", ")}: ${errorMessage(err)} ` +
        `(is nats-server running with JetStream enabled, and is --nats right?)`,
      { cause: err },
    );
  }
};
