/**
 * Put Blob and Put Block without the Azure SDK: the request built and authorized here and sent
 * over the same keep-alive agent the SDK client uses. For the many small files of an export, the
 * SDK's per-request pipeline (a dozen policies, header objects, URL parsing, serializer) costs
 * about four times the CPU of the request itself on a loopback endpoint; for large files it was
 * the largest piece of the worker's main thread after the socket writes. This path sends the same
 * headers (Put Blob: x-ms-blob-type BlockBlob, Content-MD5 + x-ms-blob-content-md5, x-ms-meta-*,
 * content type, x-ms-version; Put Block: comp=block&blockid=…, x-ms-content-crc64 or Content-MD5)
 * and goes through the same retry policy (retry-policy.ts) and pacing (request slots, job limits),
 * so throttling, resets and server errors are retried exactly as for SDK requests, and failures
 * become the same BlobOperationError (errors.ts) as the SDK's RestError would.
 *
 * Authorization: Shared Key (connection string with AccountKey; shared-key.ts), SAS (the token
 * appended to the URL) or a Microsoft Entra ID bearer token (bearer-token.ts; refused over
 * http://, as the SDK does). Secrets (key, signature, SAS, token) never appear in errors or logs:
 * messages carry the status, the Azure error code and the service's <Message> only.
 *
 * BlobContainer.putBlob and stageBlock use it when the client was made by createBlobServiceClient
 * (which registers one per pipeline, see directTransportOf). The GETs (direct-get.ts), listings
 * (direct-list.ts), Get Blob Properties (direct-head.ts) and the container's own calls
 * (direct-container.ts) go over the same transport; Put Block List stays on the SDK.
 */
import { randomUUID } from "node:crypto";
import type {
  Agent as HttpAgent,
  ClientRequest,
  IncomingMessage,
  OutgoingHttpHeaders,
} from "node:http";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { BearerTokenCache, type TokenSource } from "./bearer-token.js";
import type {
  RetryPipelinePolicy,
  RetryPipelineRequest,
  RetryPipelineResponse,
} from "./retry-policy.js";
import type { PacingPipelinePolicy } from "./request-pacing.js";
import { SharedKeySigner, type SignedHeaders } from "./shared-key.js";
import { errorText, headerGetter, msDate, readErrorText } from "./direct-http.js";
import type { BodyListener, SocketAnswer, SocketPool } from "./socket-get.js";

/** x-ms-version of direct requests: the one the SDK in use sends. */
export const DIRECT_API_VERSION = "2026-04-06";

/** How direct requests are authorized. */
export type DirectAuth =
  | { kind: "shared-key"; accountName: string; accountKey: string }
  /** Query string of the SAS, without '?'. */
  | { kind: "sas"; sas: string }
  | { kind: "bearer"; credential: TokenSource };

export interface DirectTransportOptions {
  auth: DirectAuth;
  /** The keep-alive agent (http or https, as the URLs). */
  agent: HttpAgent;
  /** The retry policy of the SDK client (createRetryPolicy). */
  retryPolicy: RetryPipelinePolicy;
  /** Per-try timeout; also sent as `timeout=` (seconds). Default: none. */
  timeoutMs?: number | undefined;
  /** Bearer tokens over http:// (loopback tests only). Default false, as the SDK. */
  allowInsecureBearer?: boolean;
  /**
   * The client's pacing policy (request-pacing.ts: request slots, job limits), applied to every
   * try as in the SDK pipeline. Default: none.
   */
  pacing?: PacingPipelinePolicy | undefined;
  /**
   * GETs into a caller's buffer go over these raw keep-alive connections (socket-get.ts) instead
   * of the agent. Default: none (node:http).
   */
  sockets?: SocketPool | undefined;
}

export interface DirectPutOptions {
  metadata: Record<string, string>;
  /** MD5 of the body: sent as Content-MD5 (checked by the service) and x-ms-blob-content-md5. */
  contentMD5: Buffer;
  contentType?: string | undefined;
  abortSignal?: AbortSignal | undefined;
}

export type DirectBlockOptions = {
  abortSignal?: AbortSignal | undefined;
} & (
  | { contentCrc64: Buffer; contentMD5?: undefined }
  | { contentMD5: Buffer; contentCrc64?: undefined }
);

const NO_QUERY: ReadonlyArray<readonly [string, string]> = [];

/** Where a container lives: from its SDK client's URL (query and credentials left out). */
export interface DirectContainerAddress {
  protocol: "http:" | "https:";
  hostname: string;
  port: string;
  /** Percent-encoded path of the container, no trailing '/' (e.g. /devstoreaccount1/box). */
  path: string;
}

export const containerAddress = (containerUrl: string): DirectContainerAddress => {
  const u = new URL(containerUrl);
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new Error(`not an http(s) container URL: ${u.protocol}`);
  }
  return {
    protocol: u.protocol,
    hostname: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port,
    path: u.pathname.replace(/\/+$/, ""),
  };
};

/**
 * Blob name → URL path part, as the SDK builds it (ContainerClient.getBlockBlobClient: each
 * '/'-separated segment encodeURIComponent'ed; the WHATWG URL path setter then escapes "'").
 */
export const encodeBlobName = (name: string): string => {
  let out = "";
  let start = 0;
  for (;;) {
    const slash = name.indexOf("/", start);
    const seg = slash < 0 ? name.slice(start) : name.slice(start, slash);
    out += encodeURIComponent(seg);
    if (slash < 0) break;
    out += "/";
    start = slash + 1;
  }
  return out.includes("'") ? out.replace(/'/g, "%27") : out;
};

/** A non-2xx answer to a direct request (fields read by errors.ts's httpErrorInfo). */
export class DirectHttpError extends Error {
  readonly statusCode: number;
  readonly code: string | undefined;
  readonly details: { errorCode?: string };
  constructor(statusCode: number, errorCode: string | undefined, message: string) {
    super(message);
    this.name = "DirectHttpError";
    this.statusCode = statusCode;
    this.code = errorCode;
    this.details = errorCode !== undefined ? { errorCode } : {};
  }
}

interface DirectResponse extends RetryPipelineResponse {
  body: string;
}

const USER_AGENT = `hsmfleet-direct/1 Node/${process.version}`;
/** The User-Agent of GETs read over the socket pool. */
const SOCKET_USER_AGENT = `hsmfleet-direct/1 (socket) Node/${process.version}`;
const socketHeaders = (out: SignedHeaders): SignedHeaders => {
  out["user-agent"] = SOCKET_USER_AGENT;
  return out;
};

/**
 * Sends Put Blob requests for one storage account (all its containers). One per BlobServiceClient.
 */
export class DirectBlobTransport {
  readonly #agent: HttpAgent;
  readonly #policy: RetryPipelinePolicy;
  readonly #timeoutMs: number | undefined;
  readonly #signer: SharedKeySigner | undefined;
  readonly #sas: string | undefined;
  readonly #tokens: BearerTokenCache | undefined;
  readonly #allowInsecureBearer: boolean;
  readonly #pacing: PacingPipelinePolicy | undefined;
  readonly #sockets: SocketPool | undefined;

  constructor(options: DirectTransportOptions) {
    this.#pacing = options.pacing;
    this.#sockets = options.sockets;
    this.#agent = options.agent;
    this.#policy = options.retryPolicy;
    this.#timeoutMs = options.timeoutMs;
    this.#allowInsecureBearer = options.allowInsecureBearer ?? false;
    const auth = options.auth;
    if (auth.kind === "shared-key")
      this.#signer = new SharedKeySigner(auth.accountName, auth.accountKey);
    else if (auth.kind === "sas") this.#sas = auth.sas.replace(/^\?/, "");
    else this.#tokens = new BearerTokenCache(auth.credential);
  }

  /** Whether this transport can send to `address` (bearer tokens need https). */
  supports(address: DirectContainerAddress): boolean {
    return this.#tokens === undefined || address.protocol === "https:" || this.#allowInsecureBearer;
  }

  /**
   * Put Blob of `body` as a block blob named `name` in the container at `address`. Resolves on
   * 201; throws the last failure after the retry policy gave up: DirectHttpError (status, Azure
   * error code, service message), a Node network error (code ECONNRESET, …), ETIMEDOUT, or an
   * AbortError.
   */
  async putBlob(
    address: DirectContainerAddress,
    name: string,
    body: Buffer,
    options: DirectPutOptions,
  ): Promise<void> {
    const md5 = options.contentMD5.toString("base64");
    const headers: SignedHeaders = {
      "content-length": String(body.length),
      "content-md5": md5,
      "content-type": "application/octet-stream",
      "x-ms-blob-type": "BlockBlob",
      "x-ms-blob-content-md5": md5,
      "x-ms-version": DIRECT_API_VERSION,
    };
    if (options.contentType !== undefined) headers["x-ms-blob-content-type"] = options.contentType;
    for (const key in options.metadata) headers[`x-ms-meta-${key}`] = options.metadata[key];
    await this.put(address, name, NO_QUERY, headers, body, options.abortSignal);
  }

  /**
   * Put Block of `body` as block `blockId` (base64) of blob `name`, with its transactional
   * checksum: `contentCrc64` (x-ms-content-crc64, the 8 little-endian bytes) or `contentMD5`
   * (Content-MD5), never both (the service refuses that). The same headers as the SDK's
   * stageBlock; errors, retries and pacing as putBlob's.
   */
  async putBlock(
    address: DirectContainerAddress,
    name: string,
    blockId: string,
    body: Buffer,
    options: DirectBlockOptions,
  ): Promise<void> {
    const headers: SignedHeaders = {
      "content-length": String(body.length),
      "content-type": "application/octet-stream",
      "x-ms-version": DIRECT_API_VERSION,
    };
    if (options.contentCrc64 !== undefined)
      headers["x-ms-content-crc64"] = options.contentCrc64.toString("base64");
    else headers["content-md5"] = options.contentMD5.toString("base64");
    const query: Array<[string, string]> = [
      ["comp", "block"],
      ["blockid", blockId],
    ];
    await this.put(address, name, query, headers, body, options.abortSignal);
  }

  /**
   * One PUT with a body through the pacing and retry policies; a 2xx answer or a throw
   * (DirectHttpError with the status and Azure error code). `name` "" is the container itself
   * (direct-container.ts).
   */
  async put(
    address: DirectContainerAddress,
    name: string,
    query: ReadonlyArray<readonly [string, string]>,
    headers: SignedHeaders,
    body: Buffer,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // name "": the container itself (Create Container).
    const path = name === "" ? address.path : `${address.path}/${encodeBlobName(name)}`;
    let search = "";
    for (const [k, v] of query)
      search += `${search === "" ? "" : "&"}${encodeURIComponent(k)}=${encodeURIComponent(v)}`;
    const request: RetryPipelineRequest = {
      method: "PUT",
      url: search === "" ? path : `${path}?${search}`,
      abortSignal: signal,
    };
    const tryOnce = (): Promise<DirectResponse> =>
      this.#try("PUT", address, path, query, search, headers, signal, (target, out) =>
        this.#send("PUT", address, target, out, body, signal, receiveText),
      );
    const pacing = this.#pacing;
    const paced =
      pacing === undefined
        ? tryOnce
        : async (): Promise<DirectResponse> =>
            (await pacing.sendRequest(
              {
                method: "PUT",
                // Only the path and query matter to the policy (isDataRequest).
                url: `${address.protocol}//direct${request.url}`,
                headers: { get: (n) => (n === "content-length" ? String(body.length) : undefined) },
                body,
                abortSignal: signal,
              },
              tryOnce,
            )) as DirectResponse;
    const response = (await this.#policy.sendRequest(request, paced)) as DirectResponse;
    if (response.status !== 201 && response.status !== 200) {
      throw new DirectHttpError(
        response.status,
        response.headers.get("x-ms-error-code"),
        errorText(response.status, response.body),
      );
    }
  }

  /**
   * A GET (or HEAD) of blob `name` through the pacing and retry policies, its answer handed to
   * `receive` (which reads the body, e.g. into a caller's buffer; a failure while reading is a
   * failure of the try, so a broken body is retried like a reset). Used by direct-get.ts.
   * A GET given `direct` goes over the transport's socket pool (socket-get.ts) when it has one:
   * its body lands in `direct.into` (`direct.onBody` told as it does), and `direct.result` makes
   * the answer of it.
   */
  async request<R extends RetryPipelineResponse>(
    method: "GET" | "HEAD",
    address: DirectContainerAddress,
    name: string,
    headers: SignedHeaders,
    receive: DirectReceiver<R>,
    signal: AbortSignal | undefined,
    direct?: { into: Buffer; result: (answer: SocketAnswer) => R; onBody?: BodyListener },
    query: ReadonlyArray<readonly [string, string]> = NO_QUERY,
  ): Promise<R> {
    // name "": the container itself (with a query such as restype=container&comp=list).
    const path = name === "" ? address.path : `${address.path}/${encodeBlobName(name)}`;
    let search = "";
    for (const [k, v] of query)
      search += `${search === "" ? "" : "&"}${encodeURIComponent(k)}=${encodeURIComponent(v)}`;
    const url = search === "" ? path : `${path}?${search}`;
    const request: RetryPipelineRequest = { method, url, abortSignal: signal };
    const sockets = method === "GET" && direct !== undefined ? this.#sockets : undefined;
    const tryOnce = (): Promise<R> =>
      this.#try(method, address, path, query, search, headers, signal, (target, out) =>
        sockets !== undefined
          ? sockets
              .get(
                address,
                target,
                socketHeaders(out),
                direct!.into,
                signal,
                this.#timeoutMs,
                direct!.onBody,
              )
              .then(direct!.result)
          : this.#send(method, address, target, out, undefined, signal, receive),
      );
    const pacing = this.#pacing;
    const paced =
      pacing === undefined
        ? tryOnce
        : (): Promise<R> =>
            pacing.sendRequest(
              {
                method,
                url: `${address.protocol}//direct${url}`,
                headers: { get: (n) => headers[n] },
                abortSignal: signal,
              },
              tryOnce,
            ) as Promise<R>;
    return (await this.#policy.sendRequest(request, paced)) as R;
  }

  /** One try: authorize (fresh date, token) and send; a 401 with a cached token is sent again once. */
  #try<R extends RetryPipelineResponse>(
    method: string,
    address: DirectContainerAddress,
    path: string,
    requestQuery: ReadonlyArray<readonly [string, string]>,
    requestSearch: string,
    headers: SignedHeaders,
    signal: AbortSignal | undefined,
    send: (target: string, headers: SignedHeaders) => Promise<R>,
  ): Promise<R> {
    let query = requestQuery;
    let search = requestSearch;
    if (this.#timeoutMs !== undefined) {
      const timeout = String(Math.max(1, Math.ceil(this.#timeoutMs / 1000)));
      query = [...query, ["timeout", timeout]];
      search = search === "" ? `timeout=${timeout}` : `${search}&timeout=${timeout}`;
    }
    if (this.#sas !== undefined) search = search === "" ? this.#sas : `${search}&${this.#sas}`;
    const target = search === "" ? path : `${path}?${search}`;
    // One header object per try: signed as it is (the signer reads the standard and x-ms-*
    // headers only), then given the Authorization.
    const out: SignedHeaders = Object.assign({}, headers);
    out["user-agent"] = USER_AGENT;
    out["x-ms-client-request-id"] = randomUUID();
    if (this.#signer !== undefined) {
      out["x-ms-date"] = msDate();
      out["authorization"] = this.#signer.authorization(method, path, query, out);
      return send(target, out);
    }
    if (this.#tokens !== undefined) return this.#tryBearer(this.#tokens, target, out, signal, send);
    return send(target, out);
  }

  async #tryBearer<R extends RetryPipelineResponse>(
    tokens: BearerTokenCache,
    target: string,
    out: SignedHeaders,
    signal: AbortSignal | undefined,
    send: (target: string, headers: SignedHeaders) => Promise<R>,
  ): Promise<R> {
    out["authorization"] = `Bearer ${await tokens.get(signal)}`;
    const res = await send(target, out);
    if (res.status !== 401) return res;
    tokens.invalidate();
    out["authorization"] = `Bearer ${await tokens.get(signal)}`;
    return send(target, out);
  }

  #send<R extends RetryPipelineResponse>(
    method: string,
    address: DirectContainerAddress,
    target: string,
    headers: OutgoingHttpHeaders,
    body: Buffer | undefined,
    signal: AbortSignal | undefined,
    receive: DirectReceiver<R>,
  ): Promise<R> {
    return new Promise((resolve, reject) => {
      const options = {
        hostname: address.hostname,
        port: address.port,
        method,
        path: target,
        headers,
        agent: this.#agent,
        ...(signal !== undefined ? { signal } : {}),
      };
      const onResponse = (res: IncomingMessage): void => receive(res, resolve, reject);
      const req: ClientRequest =
        address.protocol === "https:"
          ? httpsRequest(options, onResponse)
          : httpRequest(options, onResponse);
      req.on("error", reject);
      const timeoutMs = this.#timeoutMs;
      if (timeoutMs !== undefined) {
        req.setTimeout(timeoutMs, () => {
          const err = new Error(`no answer within ${timeoutMs} ms`) as NodeJS.ErrnoException;
          err.code = "ETIMEDOUT";
          req.destroy(err);
        });
      }
      if (body !== undefined) req.end(body);
      else req.end();
    });
  }
}

/**
 * Reads one response: resolves with what the caller needs (status and headers at least), or
 * rejects (a broken body: the try failed and is retried).
 */
export type DirectReceiver<R extends RetryPipelineResponse> = (
  res: IncomingMessage,
  resolve: (r: R) => void,
  reject: (err: unknown) => void,
) => void;

/** The answer of a PUT: its status and headers, the error body's text (first 64 KiB). */
const receiveText: DirectReceiver<DirectResponse> = (res, resolve, reject) => {
  const status = res.statusCode ?? 0;
  if (status >= 200 && status < 300) {
    res.on("end", () => resolve({ status, headers: headerGetter(res), body: "" }));
    res.on("error", reject);
    res.resume();
    return;
  }
  readErrorText(res, (text) => resolve({ status, headers: headerGetter(res), body: text }), reject);
};

export { errorText, headerGetter, readErrorText };

/** The direct transport of an SDK pipeline (registered by createBlobServiceClient). */
const transports = new WeakMap<object, DirectBlobTransport>();

export const registerDirectTransport = (pipeline: object, transport: DirectBlobTransport): void => {
  transports.set(pipeline, transport);
};

export const directTransportOf = (pipeline: unknown): DirectBlobTransport | undefined =>
  pipeline !== null && typeof pipeline === "object" ? transports.get(pipeline) : undefined;
