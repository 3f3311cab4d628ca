import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { DependencyError, HsmfleetError, errorMessage } from "@hsmfleet/core";
import { checkServerIdentity } from "node:tls";
import type { PeerCertificate } from "node:tls";
import { isIP } from "node:net";
import {
  busAuthFromUrls,
  describeBusAuth,
  natsAuthOptions,
  redactBusSecrets,
  redactNatsUrl,
} from "./auth.js";
import type { BusAuth } from "./auth.js";
import { installSettledCancel } from "./request-settled-cancel.js";

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
/** Host of a NATS URL (no brackets around an IPv6 address), or undefined when it has none. */
const hostOf = (url: string): string | undefined => {
  const m = /^(?:[a-z]+:\/\/)?(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)/i.exec(url);
  return m?.[1]?.replace(/^\[(.*)\]$/, "$1");
};

/**
 * The server identity check for TLS. nats.js sends a server's host name as SNI and Node checks the
 * certificate against it; for a server given as an IP address there is no SNI name, and Node then
 * checks against "localhost" — so a certificate for DNS:localhost passed and one for the address
 * itself failed. Here a check without an SNI name is made against the IP addresses of the URLs
 * (the address's IP subjectAltName; with several addresses, any one of them).
 */
const serverIdentityCheck = (servers: string[]) => {
  const ips = [...new Set(servers.map(hostOf).filter((h): h is string => !!h && isIP(h) !== 0))];
  const names = new Set(servers.map(hostOf).filter((h) => h !== undefined && isIP(h) === 0));
  return (hostname: string, cert: PeerCertificate): Error | undefined => {
    // "localhost" is Node's fallback when no SNI name was sent, i.e. the server was an IP.
    if (hostname !== "localhost" || ips.length === 0 || names.has("localhost"))
      return checkServerIdentity(hostname, cert);
    let first: Error | undefined;
    for (const ip of ips) {
      const err = checkServerIdentity(ip, cert);
      if (err === undefined) return undefined;
      first ??= err;
    }
    return first;
  };
};

export const connectBus = async (options: BusConnectOptions): Promise<NatsConnection> => {
  // "nats://a:4222,nats://b:4222" (one --nats / HSMFLEET_NATS_URL naming every node of a cluster)
  // is a list, so a client starts even when the first node is down.
  const given = (Array.isArray(options.servers) ? options.servers : [options.servers])
    .flatMap((s) => s.split(","))
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const shown = given.map(redactNatsUrl).join(", ");
  const { servers, auth: busAuth } = busAuthFromUrls(given, options.auth);
  const auth = natsAuthOptions(busAuth);
  if (auth.tls !== undefined) {
    Object.assign(auth.tls, { checkServerIdentity: serverIdentityCheck(servers) });
  }
  // No RequestError made at the end of every answered request (request-settled-cancel.ts).
  installSettledCancel();
  try {
    return await connect({
      servers,
      name: options.name,
      timeout: options.timeoutMs ?? 5000,
      maxReconnectAttempts: (options.reconnectForever ?? true) ? -1 : 10,
      reconnectTimeWait: 1000,
      // No Error object (and stack capture) made up front for every request and its timer on the
      // chance it fails: a worker makes ~2 requests a work item (publish acks, the backlog read),
      // and the errors we throw name the subject and operation themselves (issue 22, profiled).
      noAsyncTraces: true,
      ...auth,
    });
  } catch (err) {
    if (err instanceof HsmfleetError) throw err;
    const cause = redactBusSecrets(errorMessage(err), busAuth);
    const chain = `${cause} ${redactBusSecrets(errorMessage((err as { cause?: unknown }).cause ?? ""), busAuth)}`;
    if (AUTH_FAILURE.test(chain)) {
      throw new BusAuthError(
        `NATS at ${shown} refused the connection (${cause}) when authenticating with ` +
          `${describeBusAuth(busAuth)}: check --nats-user/--nats-password, --nats-token, ` +
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
