/**
 * The pacing policy of a blob client's pipeline, run for every try (after the retry policy, so a
 * retry waiting out its backoff holds nothing):
 *
 * - job limits: every request takes one token of the job's requests-per-second bucket, and data
 *   requests take their payload bytes from its bandwidth bucket (uploads: the body length; ranged
 *   downloads: the range; a download of unknown size is charged when its answer says the size);
 * - request slots: data requests (Put Blob, Put Block, blob GETs) hold one of the worker's
 *   request slots from the moment they are sent until the response body is read; their bytes and
 *   durations, and every 429 / 503 answer, feed the concurrency controller.
 *
 * Other requests (listings, properties, metadata, commits) take tokens but no slot: they are small
 * and must not queue behind the data.
 */
import { finished } from "node:stream";
import type { RequestSlots, SlotRelease } from "./request-slots.js";
import type { TokenBucket } from "./token-bucket.js";

/** A job's share of its fleet-wide limits, on this worker. */
export interface RequestLimits {
  /** Tokens are requests. */
  requests?: TokenBucket | undefined;
  /** Tokens are payload bytes. */
  bytes?: TokenBucket | undefined;
}

export interface RequestPacing {
  slots?: RequestSlots | undefined;
  limits?: RequestLimits | undefined;
}

/** Structural subset of @azure/core-rest-pipeline's request and response. */
interface PacedRequest {
  method: string;
  url: string;
  headers: { get(name: string): string | undefined };
  body?: unknown;
  abortSignal?: unknown;
}

interface PacedResponse {
  status: number;
  headers: { get(name: string): string | undefined };
  readableStreamBody?: NodeJS.ReadableStream | undefined;
}

export interface PacingPipelinePolicy {
  name: string;
  sendRequest(
    request: PacedRequest,
    next: (request: PacedRequest) => Promise<PacedResponse>,
  ): Promise<PacedResponse>;
}

export const PACING_POLICY_NAME = "hsmfleetPacingPolicy";

/** Put Blob, Put Block and blob GETs (no comp / restype query) move data. */
export const isDataRequest = (method: string, url: string): boolean => {
  // An http(s) URL without a query or fragment has neither parameter: no URL object needed (a
  // blob GET or Put Blob per small file, issue 17).
  if (
    (url.startsWith("http://") || url.startsWith("https://")) &&
    !url.includes("?") &&
    !url.includes("#")
  )
    return method === "PUT" || method === "GET";
  let query: URLSearchParams;
  try {
    query = new URL(url).searchParams;
  } catch {
    return false;
  }
  const comp = query.get("comp");
  if (query.has("restype")) return false;
  if (method === "PUT") return comp === null || comp === "block";
  if (method === "GET") return comp === null;
  return false;
};

/** Bytes of a ranged GET from its x-ms-range / Range header ("bytes=a-b"); undefined if open. */
export const rangeLength = (headers: {
  get(name: string): string | undefined;
}): number | undefined => {
  const range = headers.get("x-ms-range") ?? headers.get("range");
  const m = range === undefined ? null : /^bytes=(\d+)-(\d+)$/.exec(range.trim());
  return m === null ? undefined : Number(m[2]) - Number(m[1]) + 1;
};

const bodyLength = (request: PacedRequest): number => {
  const header = request.headers.get("content-length");
  if (header !== undefined && /^\d+$/.test(header)) return Number(header);
  const body = request.body;
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) return body.byteLength;
  if (typeof body === "string") return Buffer.byteLength(body);
  return 0;
};

const THROTTLED = new Set([429, 503]);

export const createPacingPolicy = (pacing: RequestPacing): PacingPipelinePolicy => ({
  name: PACING_POLICY_NAME,
  async sendRequest(request, next) {
    const signal = request.abortSignal as AbortSignal | undefined;
    const data = isDataRequest(request.method, request.url);
    const upload = data && request.method === "PUT" ? bodyLength(request) : 0;
    const range = data && request.method === "GET" ? rangeLength(request.headers) : undefined;
    const limits = pacing.limits;
    if (limits?.requests !== undefined) await limits.requests.take(1, signal);
    if (limits?.bytes !== undefined && upload + (range ?? 0) > 0)
      await limits.bytes.take(upload + (range ?? 0), signal);
    const release: SlotRelease | undefined =
      data && pacing.slots !== undefined
        ? (pacing.slots.tryAcquire(signal) ?? (await pacing.slots.acquire(signal)))
        : undefined;
    let response: PacedResponse;
    try {
      response = await next(request);
    } catch (err) {
      release?.({ bytes: 0, ok: false });
      throw err;
    }
    if (THROTTLED.has(response.status)) pacing.slots?.throttled();
    const ok = response.status >= 200 && response.status < 300;
    const body = response.readableStreamBody;
    if (!data || request.method !== "GET") {
      release?.({ bytes: ok ? upload : 0, ok });
      return response;
    }
    if (body === undefined) {
      // A GET whose body was already read into the caller's buffer (direct-get.ts): a whole-blob
      // GET pays its bytes now, from its Content-Length, like one of unknown size below.
      const read = Number(response.headers.get("content-length") ?? "0");
      if (ok && range === undefined) limits?.bytes?.charge(read);
      release?.({ bytes: ok ? read : 0, ok });
      return response;
    }
    const length = Number(response.headers.get("content-length") ?? "0");
    // A GET of unknown size pays its bytes now (the next requests wait out the debt).
    if (ok && range === undefined) limits?.bytes?.charge(length);
    if (release !== undefined) {
      // The slot is held until the body is read (or the reader gives up on it).
      finished(body, (err) => release({ bytes: ok && !err ? length : 0, ok: ok && !err }));
    }
    return response;
  },
});

interface CorePipelineLike {
  addPolicy(policy: PacingPipelinePolicy, options?: { afterPhase?: string }): void;
}

/**
 * Adds the pacing policy to a client's pipeline after the retry phase (see installRetryPolicy for
 * why this reaches into `_corePipeline`). Returns false when the SDK no longer has that field.
 */
export const installPacingPolicy = (pipeline: unknown, policy: PacingPipelinePolicy): boolean => {
  const core =
    pipeline !== null && typeof pipeline === "object"
      ? ((pipeline as Record<string, unknown>)["_corePipeline"] as CorePipelineLike | undefined)
      : undefined;
  if (core === undefined || typeof core.addPolicy !== "function") return false;
  core.addPolicy(policy, { afterPhase: "Retry" });
  return true;
};
