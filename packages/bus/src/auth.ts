import { readFileSync } from "node:fs";
import { credsAuthenticator, nkeyAuthenticator } from "@nats-io/transport-node";
import type { Authenticator, TlsOptions } from "@nats-io/transport-node";
import { UsageError, errorMessage } from "@hsmfleet/core";

/**
 * How a client proves who it is to NATS, and the TLS it uses. Only one way of authentication at a
 * time: user/password, token, a creds file (JWT + NKey seed, as `nsc` writes them) or an NKey seed
 * file. TLS options combine with any of them (a client certificate is mutual TLS).
 */
export interface BusAuth {
  user?: string | undefined;
  password?: string | undefined;
  token?: string | undefined;
  /** Path of a `.creds` file (decentralised JWT auth). */
  credsFile?: string | undefined;
  /** Path of a file holding an NKey user seed (`SU…`). */
  nkeySeedFile?: string | undefined;
  /** CA bundle to trust for the server's certificate (PEM file). Setting any TLS file requires TLS. */
  tlsCaFile?: string | undefined;
  /** Client certificate and key (PEM files) for mutual TLS. */
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
}

/** The parts of nats.js ConnectionOptions that carry authentication and TLS. */
export interface NatsAuthOptions {
  user?: string;
  pass?: string;
  token?: string;
  authenticator?: Authenticator;
  tls?: TlsOptions;
}

const readSecretFile = (path: string, what: string): Uint8Array => {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read the NATS ${what} ${path}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
};

/** Whether any authentication or TLS setting is given. */
export const hasBusAuth = (auth: BusAuth | undefined): boolean =>
  auth !== undefined && Object.values(auth).some((v) => v !== undefined && v !== "");

/** A short description for logs and messages: which method, never a secret. */
export const describeBusAuth = (auth: BusAuth | undefined): string => {
  if (!hasBusAuth(auth)) return "no authentication";
  const parts: string[] = [];
  if (auth!.user !== undefined) parts.push(`user "${auth!.user}" with a password`);
  if (auth!.token !== undefined) parts.push("a token");
  if (auth!.credsFile !== undefined) parts.push(`creds file ${auth!.credsFile}`);
  if (auth!.nkeySeedFile !== undefined) parts.push(`NKey seed file ${auth!.nkeySeedFile}`);
  if (auth!.tlsCertFile !== undefined) parts.push("a TLS client certificate");
  else if (auth!.tlsCaFile !== undefined) parts.push("TLS");
  return parts.join(", ");
};

/**
 * Turns BusAuth into nats.js connection options, reading the files it names. Throws UsageError
 * for a combination that cannot work (two methods, a password without a user, a key without a
 * certificate) and for files that cannot be read.
 */
export const natsAuthOptions = (auth: BusAuth | undefined): NatsAuthOptions => {
  if (!hasBusAuth(auth)) return {};
  const a = auth!;
  const methods = [
    a.user !== undefined || a.password !== undefined ? "--nats-user/--nats-password" : undefined,
    a.token !== undefined ? "--nats-token" : undefined,
    a.credsFile !== undefined ? "--nats-creds" : undefined,
    a.nkeySeedFile !== undefined ? "--nats-nkey" : undefined,
  ].filter((m): m is string => m !== undefined);
  if (methods.length > 1) {
    throw new UsageError(`give one way to authenticate to NATS, not ${methods.join(" and ")}`);
  }
  if ((a.user === undefined) !== (a.password === undefined)) {
    throw new UsageError("--nats-user and --nats-password go together");
  }
  if ((a.tlsCertFile === undefined) !== (a.tlsKeyFile === undefined)) {
    throw new UsageError("--nats-tls-cert and --nats-tls-key go together");
  }
  const out: NatsAuthOptions = {};
  if (a.user !== undefined) {
    out.user = a.user;
    out.pass = a.password ?? "";
  }
  if (a.token !== undefined) out.token = a.token;
  if (a.credsFile !== undefined) {
    out.authenticator = credsAuthenticator(readSecretFile(a.credsFile, "creds file"));
  }
  if (a.nkeySeedFile !== undefined) {
    const seed = Buffer.from(readSecretFile(a.nkeySeedFile, "NKey seed file"))
      .toString("utf8")
      .split(/\s+/)
      .find((w) => /^SU[A-Z2-7]{50,}$/.test(w));
    if (seed === undefined) {
      throw new UsageError(`${a.nkeySeedFile} holds no NKey user seed (a line starting with SU)`);
    }
    out.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (a.tlsCaFile !== undefined || a.tlsCertFile !== undefined) {
    const tls: TlsOptions = {};
    for (const [key, file] of [
      ["caFile", a.tlsCaFile],
      ["certFile", a.tlsCertFile],
      ["keyFile", a.tlsKeyFile],
    ] as const) {
      if (file === undefined) continue;
      readSecretFile(file, key === "caFile" ? "TLS CA file" : `TLS ${key.slice(0, -4)} file`);
      tls[key] = file;
    }
    out.tls = tls;
  }
  return out;
};

/**
 * Credentials written into NATS URLs (`nats://user:password@host`, `nats://token@host`, as the
 * `nats` CLI and nats.js's own examples accept them): returned as BusAuth, with the URLs stripped
 * of them. Percent-encoded characters are decoded. Every URL that carries credentials must carry
 * the same ones, and they cannot be combined with another way of authenticating (UsageError).
 */
export const busAuthFromUrls = (
  servers: string[],
  given: BusAuth | undefined,
): { servers: string[]; auth: BusAuth | undefined } => {
  let fromUrl: { user?: string; password?: string; token?: string } | undefined;
  let fromUrlKey: string | undefined;
  const stripped = servers.map((url) => {
    const m = /^([a-z]+:\/\/)([^@/]*)@(.*)$/i.exec(url);
    if (!m) return url;
    const info = m[2]!;
    const colon = info.indexOf(":");
    const decode = (v: string) => {
      try {
        return decodeURIComponent(v);
      } catch {
        throw new UsageError(`the credentials in NATS URL ${redactNatsUrl(url)} are not valid`);
      }
    };
    const creds =
      colon < 0
        ? { token: decode(info) }
        : { user: decode(info.slice(0, colon)), password: decode(info.slice(colon + 1)) };
    const key = JSON.stringify(creds);
    if (fromUrlKey !== undefined && fromUrlKey !== key) {
      throw new UsageError("the NATS URLs carry different credentials; give one set");
    }
    fromUrl = creds;
    fromUrlKey = key;
    return `${m[1]}${m[3]}`;
  });
  if (fromUrl === undefined) return { servers, auth: given };
  const other = [given?.user, given?.password, given?.token, given?.credsFile, given?.nkeySeedFile];
  if (other.some((v) => v !== undefined && v !== "")) {
    throw new UsageError(
      "the NATS URL carries credentials and another way to authenticate is given too " +
        "(--nats-user/--nats-password, --nats-token, --nats-creds, --nats-nkey or NATS_*); give one",
    );
  }
  return { servers: stripped, auth: { ...given, ...fromUrl } };
};

/** Removes `user:password@` from NATS URLs (they may carry credentials). */
export const redactNatsUrl = (url: string): string =>
  url.replace(/^([a-z]+:\/\/)[^@/]*@/i, "$1***@");

/** Replaces every secret of `auth` that occurs in `text` with `***`. */
export const redactBusSecrets = (text: string, auth: BusAuth | undefined): string => {
  let out = text;
  for (const secret of [auth?.password, auth?.token]) {
    if (secret !== undefined && secret.length > 0) out = out.split(secret).join("***");
  }
  return out.replace(/\b(nats|tls|wss?):\/\/[^@\s/]*@/gi, "$1://***@");
};
