import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { DependencyError, HsmfleetError, errorMessage } from "@hsmfleet/core";
import { describeBusAuth, natsAuthOptions, redactBusSecrets, redactNatsUrl } from "./auth.js";
import type { BusAuth } from "./auth.js";

export interface BusConnectOptions {
  /** NATS URL(s), e.g. nats://10.0.0.4:4222. */
  servers: string | string[];
  /** Connection name shown by the server (`nats server report connections`). */
  name?: string | undefined;
  /** Default 5000. */
  timeoutMs?: number | undefined;
  /** Keep reconnecting forever (workers) or give up after a few tries (CLI one-shots). Default true. */
  reconnectForever?: boolean | undefined;
  /** Credentials and TLS (auth.ts). Default none. */
  auth?: BusAuth | undefined;
}

/** The server refused this client's credentials (or demanded some): not worth retrying. */
export class BusAuthError extends DependencyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BusAuthError";
  }
}

const AUTH_FAILURE =
  /authori[sz]ation violation|authentication|user authentication|permissions? violation|auth.*(expired|revoked)|nkey|signature/i;
const TLS_FAILURE = /tls|ssl|certificate|self[- ]signed|handshake|EPROTO/i;

/** Connects to NATS, turning low-level failures into a message that names the server. */
export const connectBus = async (options: BusConnectOptions): Promise<NatsConnection> => {
  const servers = Array.isArray(options.servers) ? options.servers : [options.servers];
  const shown = servers.map(redactNatsUrl).join(", ");
  const auth = natsAuthOptions(options.auth);
  try {
    return await connect({
      servers,
      name: options.name,
      timeout: options.timeoutMs ?? 5000,
      maxReconnectAttempts: (options.reconnectForever ?? true) ? -1 : 10,
      reconnectTimeWait: 1000,
      ...auth,
    });
  } catch (err) {
    if (err instanceof HsmfleetError) throw err;
    const cause = redactBusSecrets(errorMessage(err), options.auth);
    const chain = `${cause} ${redactBusSecrets(errorMessage((err as { cause?: unknown }).cause ?? ""), options.auth)}`;
    if (AUTH_FAILURE.test(chain)) {
      throw new BusAuthError(
        `NATS at ${shown} refused the connection (${cause}) when authenticating with ` +
          `${describeBusAuth(options.auth)}: check --nats-user/--nats-password, --nats-token, ` +
          `--nats-creds or --nats-nkey (or the NATS_* variables)`,
        { cause: err },
      );
    }
    if (auth.tls !== undefined && (TLS_FAILURE.test(chain) || /timeout/i.test(chain))) {
      // A handshake the server rejects (no or untrusted client certificate) often shows up as
      // nothing but a timeout on the client side.
      throw new BusAuthError(
        `TLS with NATS at ${shown} did not succeed (${cause}): check --nats-tls-ca (the CA that ` +
          `signed the server's certificate) and, when the server verifies clients, ` +
          `--nats-tls-cert and --nats-tls-key`,
        { cause: err },
      );
    }
    throw new DependencyError(
      `cannot connect to NATS at ${shown}: ${cause} ` +
        `(is nats-server running with JetStream enabled, and is --nats right?)`,
      { cause: err },
    );
  }
};
