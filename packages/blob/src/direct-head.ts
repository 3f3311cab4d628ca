/**
 * Get Blob Properties (HEAD) without the Azure SDK: the request built, signed, paced and retried
 * by the DirectBlobTransport (as direct Put Blob, Get Blob and List Blobs), the answer's headers
 * read directly. For autoimport, which reads the properties of every blob an event names, the
 * SDK's per-call pipeline (a new BlobClient and StorageClient, the serializer, tracing) was the
 * largest piece of the worker's main thread after the file-system calls (issue 20).
 *
 * What is read (x-ms-version 2026-04-06): Content-Length, Last-Modified, ETag, Content-MD5 and
 * every x-ms-meta-* header with a value (the key after the prefix, lower case as Node gives header names: the
 * same keys the SDK's getProperties returns under Node). A 404 resolves `undefined`; any other
 * non-2xx answer throws DirectHttpError (HEAD has no body: the message is the status line, the
 * Azure error code comes from x-ms-error-code).
 */
import type { IncomingMessage } from "node:http";
import type { DirectBlobTransport, DirectContainerAddress, DirectReceiver } from "./direct-put.js";
import { DIRECT_API_VERSION, DirectHttpError } from "./direct-put.js";
import { errorText, headerGetter } from "./direct-http.js";
import type { RetryPipelineResponse } from "./retry-policy.js";

export interface DirectBlobProperties {
  size: number;
  metadata: Record<string, string>;
  contentMD5?: Buffer;
  lastModified?: Date;
  etag?: string;
}

interface HeadAnswer extends RetryPipelineResponse {
  res: IncomingMessage;
}

/** A HEAD's answer: status, headers and the message (no body; direct-container.ts too). */
export const receiveHead: DirectReceiver<HeadAnswer> = (res, resolve, reject) => {
  res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: headerGetter(res), res }));
  res.on("error", reject);
  res.resume();
};

const META = "x-ms-meta-";

/** The properties of a HEAD answer's headers (Node: names in lower case). */
export const propertiesOfHeaders = (headers: IncomingMessage["headers"]): DirectBlobProperties => {
  const text = (v: string | string[] | undefined): string | undefined =>
    Array.isArray(v) ? v.join(", ") : v;
  const length = text(headers["content-length"]);
  const out: DirectBlobProperties = {
    size: length !== undefined && /^\d+$/.test(length) ? Number(length) : 0,
    metadata: {},
  };
  for (const [k, v] of Object.entries(headers)) {
    const value = text(v);
    // An empty value is left out, as the SDK's getProperties leaves it out.
    if (k.startsWith(META) && value !== undefined && value !== "")
      out.metadata[k.slice(META.length)] = value;
  }
  const md5 = text(headers["content-md5"]);
  if (md5 !== undefined && md5 !== "") out.contentMD5 = Buffer.from(md5, "base64");
  const modified = text(headers["last-modified"]);
  if (modified !== undefined) {
    const d = new Date(modified);
    if (!Number.isNaN(d.getTime())) out.lastModified = d;
  }
  const etag = text(headers["etag"]);
  if (etag !== undefined && etag !== "") out.etag = etag;
  return out;
};

/**
 * Get Blob Properties of `name`: undefined when the blob does not exist (404). Throws
 * DirectHttpError for any other non-2xx status once the retry policy gave up, or the last network
 * error.
 */
export const directBlobProperties = async (
  transport: DirectBlobTransport,
  address: DirectContainerAddress,
  name: string,
  signal?: AbortSignal,
): Promise<DirectBlobProperties | undefined> => {
  const r = await transport.request(
    "HEAD",
    address,
    name,
    { "x-ms-version": DIRECT_API_VERSION },
    receiveHead,
    signal,
  );
  if (r.status === 404) return undefined;
  if (r.status < 200 || r.status >= 300) {
    throw new DirectHttpError(r.status, r.headers.get("x-ms-error-code"), errorText(r.status, ""));
  }
  return propertiesOfHeaders(r.res.headers);
};
