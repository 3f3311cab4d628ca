import { HsmfleetError, errorCode, errorMessage } from "@hsmfleet/core";
import { redactSecrets } from "./storage-target.js";

/** What was being done when a blob operation failed. */
export type BlobOperation =
  | "open"
  | "stat"
  | "read"
  | "put-blob"
  | "stage-block"
  | "commit-block-list"
  | "get-properties"
  | "download"
  | "get-blob-range"
  | "write"
  | "delete-blob"
  | "set-metadata"
  | "copy-blob"
  | "list-blobs"
  | "create-container"
  | "container-properties";

/** HTTP statuses worth retrying later: timeouts, throttling, server errors. */
const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** Node/undici/SDK codes of transport failures (no HTTP status). */
const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "ESOCKETTIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EADDRNOTAVAIL",
  "REQUEST_SEND_ERROR",
  "TIMEOUT",
]);

export interface HttpErrorInfo {
  statusCode: number | undefined;
  /** Azure error code (x-ms-error-code) or the transport error code. */
  code: string | undefined;
  aborted: boolean;
}

const field = (value: unknown, key: string): unknown =>
  value !== null && typeof value === "object" && key in value
    ? (value as Record<string, unknown>)[key]
    : undefined;

/** Status, Azure error code and abort flag of an error thrown by the SDK or Node. */
export const httpErrorInfo = (err: unknown): HttpErrorInfo => {
  const status = field(err, "statusCode");
  const details = field(err, "details");
  const detailCode = field(details, "errorCode") ?? field(details, "Code");
  const rawCode = field(err, "code");
  const name = field(err, "name");
  const code =
    typeof detailCode === "string"
      ? detailCode
      : typeof rawCode === "string"
        ? rawCode
        : typeof rawCode === "number"
          ? String(rawCode)
          : undefined;
  return {
    statusCode: typeof status === "number" ? status : undefined,
    code,
    aborted: name === "AbortError" || code === "ABORT_ERR",
  };
};

/** Whether retrying the same operation later may succeed (429/5xx/network: yes; 4xx: no). */
export const isRetryableHttpError = (err: unknown): boolean => {
  const info = httpErrorInfo(err);
  if (info.aborted) return false;
  // The body was damaged on the way; sending it again can succeed.
  if (info.code === "Md5Mismatch" || info.code === "Crc64Mismatch") return true;
  if (info.statusCode !== undefined) return RETRYABLE_STATUS.has(info.statusCode);
  if (info.code !== undefined && NETWORK_CODES.has(info.code)) return true;
  const text = errorMessage(err).toUpperCase();
  return [...NETWORK_CODES].some((c) => text.includes(c));
};

/** First line of an SDK error message (Azure appends RequestId and Time lines). */
const shortMessage = (err: unknown): string => {
  const text = redactSecrets(errorMessage(err)).trim();
  const first = text.split("\n")[0] ?? "";
  return first.length > 300 ? `${first.slice(0, 300)}…` : first;
};

/** Error names @azure/identity gives a failed sign-in (DefaultAzureCredential and its parts). */
const SIGN_IN_ERRORS = new Set([
  "AggregateAuthenticationError",
  "CredentialUnavailableError",
  "AuthenticationError",
  "AuthenticationRequiredError",
]);

/**
 * What to do when no Microsoft Entra ID token could be had (the `--storage` account URL form):
 * the SDK's own text names only the credential chain.
 */
const signInHint = (cause: unknown): string =>
  SIGN_IN_ERRORS.has(String(field(cause, "name")))
    ? "; no Microsoft Entra ID token: an account URL signs in with DefaultAzureCredential (a managed identity on the VM, az login, or AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET); or give --storage a connection string or a SAS URL"
    : "";

/** What an operation was about, for messages. */
export interface BlobOperationSubject {
  /** Printable local path. */
  path?: string | undefined;
  blobName?: string | undefined;
  container?: string | undefined;
  /** Container or account URL without query, for errors about the container itself. */
  location?: string | undefined;
}

/**
 * A blob or local-file operation failed. Message:
 * `<operation> <local path> → blob "<name>" in container "<c>": HTTP <status> <AzureCode>: <text>`
 * (parts omitted when they do not apply); secrets are redacted. `retryable` follows
 * isRetryableHttpError for HTTP/network errors and is false for local file errors and aborts.
 */
export class BlobOperationError extends HsmfleetError {
  readonly operation: BlobOperation;
  /** Printable local path, when a local file was involved. */
  readonly path: string | undefined;
  readonly blobName: string | undefined;
  readonly container: string | undefined;
  readonly statusCode: number | undefined;
  /** Azure error code (e.g. AuthorizationPermissionMismatch), errno code (EACCES) or "ABORTED". */
  readonly code: string | undefined;
  constructor(
    operation: BlobOperation,
    where: BlobOperationSubject,
    cause: unknown,
    options?: { retryable?: boolean; detail?: string; hint?: string },
  ) {
    const info = httpErrorInfo(cause);
    const aborted = info.aborted;
    const parts: string[] = [operation];
    if (where.path !== undefined) parts.push(where.path);
    if (where.blobName !== undefined) {
      parts.push(`${where.path !== undefined ? "→ " : ""}blob "${where.blobName}"`);
    }
    if (where.container !== undefined) {
      const location = where.location !== undefined ? ` (${redactSecrets(where.location)})` : "";
      parts.push(
        `${where.blobName !== undefined ? "in " : ""}container "${where.container}"${location}`,
      );
    }
    const status = info.statusCode !== undefined ? `HTTP ${info.statusCode} ` : "";
    const code = aborted ? "ABORTED" : info.code;
    const text = cause === undefined ? "" : shortMessage(cause);
    const detail =
      options?.detail ??
      (aborted
        ? "aborted"
        : [`${status}${code ?? ""}`.trim(), text].filter((s) => s !== "").join(": ") ||
          "unknown error");
    super(`${parts.join(" ")}: ${detail}${options?.hint || signInHint(cause)}`, {
      cause,
      retryable: options?.retryable ?? (!aborted && isRetryableHttpError(cause)),
    });
    this.name = "BlobOperationError";
    this.operation = operation;
    this.path = where.path;
    this.blobName = where.blobName;
    this.container = where.container;
    this.statusCode = info.statusCode;
    this.code = code;
  }
}

/** Snapshot of the fields change detection compares. */
export interface FileSnapshot {
  size: number;
  mtimeNs: bigint;
  ctimeNs?: bigint | undefined;
}

const formatNs = (ns: bigint): string => {
  const sec = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0");
  return `${sec}.${frac}`;
};

/**
 * A file changed while (or before) it was uploaded; nothing was committed. Retryable: a later
 * attempt, after the writer is done, can succeed.
 */
export class FileChangedError extends HsmfleetError {
  readonly path: string;
  readonly before: FileSnapshot;
  readonly after: FileSnapshot;
  constructor(path: string, before: FileSnapshot, after: FileSnapshot, phase: "listed" | "upload") {
    const changes: string[] = [];
    if (before.size !== after.size) changes.push(`size ${before.size}→${after.size}`);
    if (before.mtimeNs !== after.mtimeNs) {
      changes.push(`mtime ${formatNs(before.mtimeNs)}→${formatNs(after.mtimeNs)}`);
    }
    if (
      before.ctimeNs !== undefined &&
      after.ctimeNs !== undefined &&
      before.ctimeNs !== after.ctimeNs
    ) {
      changes.push(`ctime ${formatNs(before.ctimeNs)}→${formatNs(after.ctimeNs)}`);
    }
    if (changes.length === 0) changes.push("fewer bytes than its size");
    super(
      phase === "listed"
        ? `${path} changed since it was listed (${changes.join(", ")}); not uploaded`
        : `${path} changed while being uploaded (${changes.join(", ")}); not committed`,
      { retryable: true },
    );
    this.name = "FileChangedError";
    this.path = path;
    this.before = before;
    this.after = after;
  }
}

/** An AbortError carrying the signal's reason, so BlobOperationError reports "aborted". */
export const abortCause = (signal: AbortSignal): Error => {
  const err = new Error("aborted", { cause: signal.reason });
  err.name = "AbortError";
  return err;
};

/** Local file failure: `<op> <path> → blob …: EACCES: permission denied`. Not retryable. */
export const fsFailure = (
  operation: BlobOperation,
  where: BlobOperationSubject,
  err: unknown,
): BlobOperationError => {
  const code = errorCode(err);
  const text = errorMessage(err)
    .replace(/^[A-Z0-9_]+: /, "")
    .replace(/, \w+ '[\s\S]*'$/, "");
  return new BlobOperationError(operation, where, err, {
    detail: `${code}: ${text}`,
    retryable: false,
  });
};
