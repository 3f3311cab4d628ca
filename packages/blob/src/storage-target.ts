/**
 * Where blobs go: parsing --storage / AZURE_STORAGE_CONNECTION_STRING, and keeping secrets (account
 * keys, SAS signatures, tokens) out of every message and log line.
 */
import { UsageError } from "@hsmfleet/core";

/** What --storage / AZURE_STORAGE_CONNECTION_STRING can say. */
export type StorageTarget =
  | {
      kind: "connection-string";
      connectionString: string;
      accountName: string;
      /** Without trailing '/'; path-style for emulators (http://127.0.0.1:10000/devstoreaccount1). */
      blobEndpoint: string;
    }
  | {
      /** Microsoft Entra ID via DefaultAzureCredential (managed identity on a VM). */
      kind: "account-url";
      accountUrl: string;
      /** Container named in the URL's path, if any. */
      container?: string;
    }
  | {
      /** Account or container SAS. */
      kind: "sas-url";
      accountUrl: string;
      /** Query string without '?'. */
      sas: string;
      /** Container named in the URL's path (container SAS URLs carry one). */
      container?: string;
    };

const REDACTED = "[redacted]";

/**
 * Replaces secrets in any text with "[redacted]": AccountKey=… (also "accountKey": "…" in JSON),
 * SharedAccessSignature=…, sig=…
 * (also URL-encoded sig%3D…), `Bearer <token>` and `SharedKey <account>:<signature>`.
 * Other SAS fields (sv, se, sp, …) are not secret and stay readable, so an expired SAS (se=)
 * can still be diagnosed.
 */
export const redactSecrets = (text: string): string =>
  text
    .replace(/(AccountKey["']?\s*[:=]\s*["']?)[^;\s"'&,}]+/gi, `$1${REDACTED}`)
    .replace(/(SharedAccessSignature\s*=\s*)[^;\s"']+/gi, `$1${REDACTED}`)
    .replace(/((?<![A-Za-z_])sig(?:=|%3D))(?:(?!%26)[^&;\s"'#])+/gi, `$1${REDACTED}`)
    .replace(/(\bBearer\s+)[^\s"',;]+/g, `$1${REDACTED}`)
    .replace(/(\bSharedKey(?:Lite)?\s+[^:\s]+:)[A-Za-z0-9+/=]+/g, `$1${REDACTED}`);

/** Printable form of a target, secrets replaced by "[redacted]". */
export const describeStorageTarget = (t: StorageTarget): string => {
  switch (t.kind) {
    case "connection-string":
      return redactSecrets(t.connectionString);
    case "account-url":
      return `${t.accountUrl}${t.container !== undefined ? `/${t.container}` : ""} (Microsoft Entra ID)`;
    case "sas-url":
      return `${t.accountUrl}${t.container !== undefined ? `/${t.container}` : ""}?${redactSecrets(t.sas)}`;
  }
};

/** Azurite / storage emulator well-known development account. */
const DEV_ACCOUNT = "devstoreaccount1";
const DEV_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/** The parts of a connection string createBlobServiceClient needs. */
export interface ConnectionStringParts {
  accountName: string;
  blobEndpoint: string;
  accountKey?: string;
  /** SAS query string without '?'. */
  sas?: string;
}

const isLoopbackHost = (hostname: string): boolean => {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
};

/** Hosts addressed path-style (http://host:port/<account>/<container>): IPs and localhost. */
const isPathStyleHost = (hostname: string): boolean => {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h.includes(":") || /^\d+\.\d+\.\d+\.\d+$/.test(h);
};

/** Azure container names: 3–63 lower-case letters, digits and single inner hyphens, or $root/$logs/$web. */
export const CONTAINER_NAME = /^(?:\$root|\$logs|\$web|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$/;

const checkUrl = (url: URL, source: string): void => {
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UsageError(`${source}: ${url.protocol} URLs are not storage endpoints; use https://`);
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw new UsageError(
      `${source}: http:// is only allowed for a local emulator; use https://${url.host}`,
    );
  }
  if (url.username !== "" || url.password !== "") {
    throw new UsageError(`${source}: a storage URL must not contain a user name or password`);
  }
  if (/\.dfs\./i.test(url.hostname)) {
    throw new UsageError(
      `${source}: ${url.hostname} is a Data Lake (dfs) endpoint; use the blob endpoint (${url.hostname.replace(/\.dfs\./i, ".blob.")})`,
    );
  }
};

const parseUrl = (raw: string, source: string): URL => {
  try {
    return new URL(raw);
  } catch {
    // URL's own message repeats the input, which may carry a signature.
    throw new UsageError(`${source} is not a valid URL`);
  }
};

/** Splits a URL into its account URL and the container its path names (if any). */
const splitAccountUrl = (url: URL, source: string): { accountUrl: string; container?: string } => {
  const segments = url.pathname.split("/").filter((s) => s !== "");
  let accountSegments: string[] = [];
  let rest = segments;
  if (isPathStyleHost(url.hostname)) {
    if (segments.length === 0) {
      throw new UsageError(
        `${source}: ${url.origin} is an emulator address; the account name must follow it (${url.origin}/${DEV_ACCOUNT})`,
      );
    }
    accountSegments = segments.slice(0, 1);
    rest = segments.slice(1);
  }
  if (rest.length > 1) {
    throw new UsageError(
      `${source}: the URL names a blob path (${rest.join("/")}); give the account or container URL`,
    );
  }
  const accountUrl = [url.origin, ...accountSegments].join("/");
  const container = rest[0] !== undefined ? decodeURIComponent(rest[0]) : undefined;
  if (container !== undefined && !CONTAINER_NAME.test(container)) {
    throw new UsageError(
      `${source}: "${container}" is not a container name (3–63 lower-case letters, digits and single hyphens)`,
    );
  }
  return container === undefined ? { accountUrl } : { accountUrl, container };
};

const parseUrlTarget = (raw: string, source: string): StorageTarget => {
  const url = parseUrl(raw, source);
  checkUrl(url, source);
  const { accountUrl, container } = splitAccountUrl(url, source);
  const query = url.search.replace(/^\?/, "");
  const extra = container === undefined ? {} : { container };
  if (query === "") return { kind: "account-url", accountUrl, ...extra };
  if (!url.searchParams.has("sig")) {
    throw new UsageError(
      `${source}: the URL has a query string but no sig= (not a SAS URL); give the account URL without a query to use Microsoft Entra ID`,
    );
  }
  if ((url.searchParams.get("sig") ?? "") === "") {
    throw new UsageError(`${source}: the SAS in the URL has an empty sig=`);
  }
  return { kind: "sas-url", accountUrl, sas: query, ...extra };
};

const CS_HINT =
  "expected DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net, " +
  "BlobEndpoint=…;SharedAccessSignature=… or UseDevelopmentStorage=true";

/**
 * Parses a storage connection string. Throws UsageError naming the problem but never the values
 * of AccountKey or SharedAccessSignature.
 */
export const parseConnectionString = (
  connectionString: string,
  source = "connection string",
): ConnectionStringParts => {
  const fields = new Map<string, string>();
  const parts = connectionString.split(";").map((p) => p.trim());
  parts.forEach((part, i) => {
    if (part === "") return;
    const eq = part.indexOf("=");
    if (eq <= 0) {
      throw new UsageError(`${source}: part ${i + 1} is not Key=Value (${CS_HINT})`);
    }
    fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  });
  if (fields.get("usedevelopmentstorage")?.toLowerCase() === "true") {
    const proxy = fields.get("developmentstorageproxyuri");
    const base = proxy !== undefined ? proxy.replace(/\/+$/, "") : "http://127.0.0.1";
    const hostUrl = parseUrl(base, `${source} (DevelopmentStorageProxyUri)`);
    return {
      accountName: DEV_ACCOUNT,
      accountKey: DEV_KEY,
      blobEndpoint: `${hostUrl.protocol}//${hostUrl.hostname}:10000/${DEV_ACCOUNT}`,
    };
  }
  const accountKey = fields.get("accountkey");
  const sas = fields.get("sharedaccesssignature")?.replace(/^\?/, "");
  let accountName = fields.get("accountname");
  let blobEndpoint = fields.get("blobendpoint")?.replace(/\/+$/, "");
  if (accountKey === undefined && sas === undefined) {
    throw new UsageError(
      `${source}: has neither AccountKey nor SharedAccessSignature (${CS_HINT})`,
    );
  }
  if (accountKey !== undefined && !/^[A-Za-z0-9+/]+={0,2}$/.test(accountKey)) {
    throw new UsageError(`${source}: AccountKey is not a base64 key`);
  }
  if (sas !== undefined && !/(^|&)sig=[^&]/.test(sas)) {
    throw new UsageError(`${source}: SharedAccessSignature has no sig=`);
  }
  if (blobEndpoint === undefined) {
    if (accountName === undefined) {
      throw new UsageError(`${source}: has neither AccountName nor BlobEndpoint (${CS_HINT})`);
    }
    const protocol = (fields.get("defaultendpointsprotocol") ?? "https").toLowerCase();
    if (protocol !== "https" && protocol !== "http") {
      throw new UsageError(`${source}: DefaultEndpointsProtocol must be https or http`);
    }
    const suffix = (fields.get("endpointsuffix") ?? "core.windows.net").replace(/^\.+|\/+$/g, "");
    blobEndpoint = `${protocol}://${accountName}.blob.${suffix}`;
  }
  const endpointUrl = parseUrl(blobEndpoint, `${source} (BlobEndpoint)`);
  checkUrl(endpointUrl, `${source} (BlobEndpoint)`);
  if (endpointUrl.search !== "") {
    throw new UsageError(`${source}: BlobEndpoint must not have a query string`);
  }
  if (accountName === undefined) {
    const pathAccount = endpointUrl.pathname.split("/").find((s) => s !== "");
    accountName = isPathStyleHost(endpointUrl.hostname)
      ? (pathAccount ?? "")
      : (endpointUrl.hostname.split(".")[0] ?? "");
  }
  if (accountKey !== undefined && accountName === "") {
    throw new UsageError(`${source}: AccountKey needs AccountName`);
  }
  const out: ConnectionStringParts = { accountName, blobEndpoint };
  if (accountKey !== undefined) out.accountKey = accountKey;
  if (sas !== undefined) out.sas = sas;
  return out;
};

/**
 * Parses --storage: a connection string, an account URL (https://acct.blob.core.windows.net[/],
 * optionally with a container path) or a SAS URL (…?sv=…&sig=…). Without a value (undefined or
 * blank), AZURE_STORAGE_CONNECTION_STRING from `env`; undefined when neither is given. Throws
 * UsageError for unparseable input; messages never contain the key or the signature.
 */
export const parseStorageTarget = (
  value: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): StorageTarget | undefined => {
  let raw = value?.trim();
  let source = "--storage";
  if (raw === undefined || raw === "") {
    raw = env.AZURE_STORAGE_CONNECTION_STRING?.trim();
    source = "AZURE_STORAGE_CONNECTION_STRING";
  }
  if (raw === undefined || raw === "") return undefined;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) return parseUrlTarget(raw, source);
  if (/^[A-Za-z]+\s*=/.test(raw)) {
    const parts = parseConnectionString(raw, source);
    return {
      kind: "connection-string",
      connectionString: raw,
      accountName: parts.accountName,
      blobEndpoint: parts.blobEndpoint,
    };
  }
  throw new UsageError(
    `${source} is neither a connection string (AccountName=…;AccountKey=…), an account URL ` +
      `(https://<account>.blob.core.windows.net) nor a SAS URL (https://…?sv=…&sig=…)`,
  );
};
