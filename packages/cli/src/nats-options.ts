import { Option } from "commander";
import type { Command } from "commander";
import type { BusAuth } from "@hsmfleet/bus";

/** Global options for NATS authentication and TLS, with the `NATS_*` variables the `nats` CLI reads. */
export interface NatsAuthGlobals {
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
  natsCreds?: string;
  natsNkey?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
}

/**
 * Adds --nats-user, --nats-password, --nats-token, --nats-creds, --nats-nkey, --nats-tls-ca,
 * --nats-tls-cert and --nats-tls-key (env NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CREDS,
 * NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY). Secrets are better passed in the environment or in
 * files than on the command line, where `ps` shows them.
 */
export const addNatsAuthOptions = (program: Command): Command =>
  program
    .addOption(new Option("--nats-user <name>", "NATS user name").env("NATS_USER"))
    .addOption(
      new Option("--nats-password <password>", "NATS password (prefer NATS_PASSWORD)").env(
        "NATS_PASSWORD",
      ),
    )
    .addOption(
      new Option("--nats-token <token>", "NATS token (prefer NATS_TOKEN)").env("NATS_TOKEN"),
    )
    .addOption(
      new Option("--nats-creds <file>", "NATS credentials file (JWT + NKey seed, from nsc)").env(
        "NATS_CREDS",
      ),
    )
    .addOption(
      new Option("--nats-nkey <file>", "file holding a NATS NKey user seed").env("NATS_NKEY"),
    )
    .addOption(
      new Option(
        "--nats-tls-ca <file>",
        "CA certificate(s) to trust for the NATS server (PEM)",
      ).env("NATS_CA"),
    )
    .addOption(
      new Option("--nats-tls-cert <file>", "client certificate for mutual TLS (PEM)").env(
        "NATS_CERT",
      ),
    )
    .addOption(
      new Option("--nats-tls-key <file>", "private key of --nats-tls-cert (PEM)").env("NATS_KEY"),
    );

/** BusAuth from the global options; undefined when none is given. */
export const busAuthFrom = (g: NatsAuthGlobals): BusAuth | undefined => {
  const auth: BusAuth = {
    user: g.natsUser,
    password: g.natsPassword,
    token: g.natsToken,
    credsFile: g.natsCreds,
    nkeySeedFile: g.natsNkey,
    tlsCaFile: g.natsTlsCa,
    tlsCertFile: g.natsTlsCert,
    tlsKeyFile: g.natsTlsKey,
  };
  return Object.values(auth).some((v) => v !== undefined && v !== "") ? auth : undefined;
};
