/**
 * Get Blob without the Azure SDK: the download direction's counterpart of direct-put.ts. Its
 * requests are built, authorized (Shared Key, SAS, bearer token), paced (request slots, job
 * limits) and retried (retry-policy.ts) by the same DirectBlobTransport as Put Blob, over the same
 * keep-alive agent; each body chunk node:http hands over is copied into the caller's buffer (no
 * async iterator, no per-request pipeline, no deserializer). For the many small files of an import or restore the
 * SDK's pipeline was the largest piece of the worker's main thread after the file-system calls.
 *
 * A body that breaks off, is longer than announced or shorter than Content-Length fails the try,
 * which the retry policy repeats like a connection reset; a non-2xx answer resolves with its
 * status (the retry policy retries 408/429/5xx) and the caller throws DirectHttpError (status,
 * Azure error code, service message; httpErrorInfo reads it as it reads the SDK's RestError).
 */
import type { IncomingMessage } from "node:http";
import type { DirectBlobTransport, DirectContainerAddress, DirectReceiver } from "./direct-put.js";
import {
  DIRECT_API_VERSION,
  DirectHttpError,
  errorText,
  headerGetter,
  readErrorText,
} from "./direct-put.js";
import type { RetryPipelineResponse } from "./retry-policy.js";
import type { SignedHeaders } from "./shared-key.js";
import type { BodyListener, SocketAnswer } from "./socket-get.js";
import { parseCrc64Header } from "./range-crc64.js";

export interface DirectGetOptions {
  /** First byte of a ranged GET; with `count`, x-ms-range bytes=offset-(offset+count-1). */
  offset?: number;
  /** Bytes of a ranged GET. Without both, the whole blob is asked for. */
  count?: number;
  /** Sent as If-Match. */
  ifMatch?: string | undefined;
  /**
   * Ranged GET only (count ≤ 4 MiB): sends x-ms-range-get-content-crc64: true, so that the service
   * returns the range's CRC64 in x-ms-content-crc64 (`contentCrc64`; range-crc64.ts). Default false.
   */
  rangeCrc64?: boolean;
  /**
   * Where the body goes (from byte 0). A 2xx answer whose Content-Length differs from
   * into.length is not read into it: `lengthMismatch` is set and the body drained.
   */
  into: Buffer;
  /**
   * Told as the body lands in `into` (socket-get.ts BodyListener), over the socket pool only: a
   * GET read with node:http never calls it (the body is all in `into` when the promise resolves).
   */
  onBody?: BodyListener | undefined;
  abortSignal?: AbortSignal | undefined;
}

export interface DirectGetResult extends RetryPipelineResponse {
  /** Content-Length of the answer. */
  contentLength: number | undefined;
  etag: string | undefined;
  /** Content-MD5 (whole-blob GET of a blob that has one). */
  contentMD5: Buffer | undefined;
  /** x-ms-blob-content-md5 (ranged GET of a blob that has one). */
  blobContentMD5: Buffer | undefined;
  /** A 2xx answer whose length was not into.length: the body was drained, not kept. */
  lengthMismatch: boolean;
  /** Error body text of a non-2xx answer. */
  errorBody: string;
  /** x-ms-content-crc64 of the answer (rangeCrc64), when the service sent a well-formed one. */
  contentCrc64?: bigint | undefined;
}

/** A body of an unexpected length up to this size is read and dropped; a longer one ends the connection. */
const DRAIN_MAX_BYTES = 1024 * 1024;

const md5Header = (res: IncomingMessage, name: string): Buffer | undefined => {
  const v = res.headers[name];
  return typeof v === "string" && v !== "" ? Buffer.from(v, "base64") : undefined;
};

const receiverInto =
  (into: Buffer): DirectReceiver<DirectGetResult> =>
  (res, resolve, reject) => {
    const status = res.statusCode ?? 0;
    const lengthHeader = res.headers["content-length"];
    const contentLength =
      lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    const base = {
      status,
      headers: headerGetter(res),
      contentLength,
      etag: typeof res.headers.etag === "string" ? res.headers.etag : undefined,
      contentMD5: md5Header(res, "content-md5"),
      blobContentMD5: md5Header(res, "x-ms-blob-content-md5"),
      lengthMismatch: false,
      errorBody: "",
    };
    if (status < 200 || status >= 300) {
      readErrorText(res, (text) => resolve({ ...base, errorBody: text }), reject);
      return;
    }
    if (contentLength !== into.length) {
      // Another size: drained when short (the connection stays usable), dropped when long.
      if (contentLength === undefined || contentLength > DRAIN_MAX_BYTES) {
        res.destroy();
        resolve({ ...base, lengthMismatch: true });
        return;
      }
      res.on("end", () => resolve({ ...base, lengthMismatch: true }));
      res.on("error", reject);
      res.resume();
      return;
    }
    let got = 0;
    let failed = false;
    res.on("data", (chunk: Buffer) => {
      if (failed) return;
      if (got + chunk.length > into.length) {
        failed = true;
        const err = new Error(
          `the body is longer than its Content-Length ${into.length}`,
        ) as NodeJS.ErrnoException;
        err.code = "ECONNRESET";
        res.destroy(err);
        reject(err);
        return;
      }
      chunk.copy(into, got);
      got += chunk.length;
    });
    res.on("end", () => {
      if (failed) return;
      if (got !== into.length) {
        const err = new Error(
          `the body ended after ${got} of ${into.length} bytes`,
        ) as NodeJS.ErrnoException;
        err.code = "ECONNRESET";
        reject(err);
        return;
      }
      resolve(base);
    });
    res.on("aborted", () => {
      if (failed) return;
      failed = true;
      const err = new Error(`the body broke off after ${got} bytes`) as NodeJS.ErrnoException;
      err.code = "ECONNRESET";
      reject(err);
    });
    res.on("error", (err) => {
      if (failed) return;
      failed = true;
      reject(err);
    });
  };

const md5Of = (v: string | undefined): Buffer | undefined =>
  v !== undefined && v !== "" ? Buffer.from(v, "base64") : undefined;

/** The answer read by the socket pool (socket-get.ts) as a DirectGetResult. */
const fromSocket = (a: SocketAnswer): DirectGetResult => ({
  status: a.status,
  headers: { get: (n: string) => a.headers.get(n.toLowerCase()) },
  contentLength: a.contentLength,
  etag: a.headers.get("etag"),
  contentMD5: md5Of(a.headers.get("content-md5")),
  blobContentMD5: md5Of(a.headers.get("x-ms-blob-content-md5")),
  lengthMismatch: a.lengthMismatch,
  errorBody: a.errorBody,
});

/**
 * Get Blob (whole or ranged) of `name` into `options.into`. Resolves with a 2xx answer (its body
 * in `into`, unless `lengthMismatch`); throws DirectHttpError for any other status once the
 * retry policy gave up, or the last network error.
 */
export const directGetBlob = async (
  transport: DirectBlobTransport,
  address: DirectContainerAddress,
  name: string,
  options: DirectGetOptions,
): Promise<DirectGetResult> => {
  const headers: SignedHeaders = { "x-ms-version": DIRECT_API_VERSION };
  if (options.offset !== undefined && options.count !== undefined)
    headers["x-ms-range"] = `bytes=${options.offset}-${options.offset + options.count - 1}`;
  if (options.ifMatch !== undefined) headers["if-match"] = options.ifMatch;
  if (options.rangeCrc64 === true && headers["x-ms-range"] !== undefined)
    headers["x-ms-range-get-content-crc64"] = "true";
  const r = await transport.request(
    "GET",
    address,
    name,
    headers,
    receiverInto(options.into),
    options.abortSignal,
    {
      into: options.into,
      result: fromSocket,
      ...(options.onBody !== undefined ? { onBody: options.onBody } : {}),
    },
  );
  if (r.status < 200 || r.status >= 300) {
    throw new DirectHttpError(
      r.status,
      r.headers.get("x-ms-error-code"),
      errorText(r.status, r.errorBody),
    );
  }
  if (options.rangeCrc64 === true)
    r.contentCrc64 = parseCrc64Header(r.headers.get("x-ms-content-crc64") ?? undefined);
  return r;
};
