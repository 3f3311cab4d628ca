/**
 * hsmfleet's request retry policy for the Azure SDK pipeline, in place of the SDK's own
 * StorageRetryPolicy. The SDK policy retries network errors, 500 and 503 only, with no jitter and a
 * first retry at once, and ignores Retry-After; storage throttling (429, 503 ServerBusy) is exactly
 * where a fleet of workers must back off and spread out. This one retries network errors, 408,
 * 429, 500, 502, 503, 504 and damaged bodies (Md5Mismatch, Crc64Mismatch) with capped exponential
 * backoff and "equal jitter" (a random delay between half and all of the backoff), and waits at
 * least what Retry-After / x-ms-retry-after-ms asks (up to the cap). Everything else (403, 404,
 * 409, 412, …) is returned at once: retrying cannot help.
 */
import { isRetryableHttpError } from "./errors.js";

/** What the SDK pipeline hands a policy (structural subset of @azure/core-rest-pipeline's types). */
export interface RetryPipelineRequest {
  method: string;
  url: string;
  abortSignal?: { aborted: boolean; addEventListener?: unknown } | undefined;
}

export interface RetryPipelineResponse {
  status: number;
  headers: { get(name: string): string | undefined };
}

export interface RetryPipelinePolicy<
  Req extends RetryPipelineRequest = RetryPipelineRequest,
  Res extends RetryPipelineResponse = RetryPipelineResponse,
> {
  name: string;
  sendRequest(request: Req, next: (request: Req) => Promise<Res>): Promise<Res>;
}

export interface RetryPolicyOptions {
  /** Retries after the first try. Default 5. */
  maxRetries?: number;
  /** Backoff of the first retry, doubled each time. Default 500 ms. */
  retryDelayMs?: number;
  /** Cap of one delay, Retry-After included. Default 30,000 ms. */
  maxRetryDelayMs?: number;
  /** Source of randomness in [0, 1) for the jitter. Default Math.random. */
  random?: () => number;
  /** Called before each wait (counters, logs). */
  onRetry?: (info: RetryInfo) => void;
}

export interface RetryInfo {
  /** 1 for the first retry. */
  retry: number;
  delayMs: number;
  /** HTTP status, or the network error code. */
  reason: string;
  method: string;
}

/** Status codes retried: timeouts, throttling, transient server errors. */
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** Azure error codes of a request body damaged on the way (sent again, it can succeed). */
const RETRY_ERROR_CODES = new Set(["Md5Mismatch", "Crc64Mismatch"]);

/** Process-wide retry counts, for reports (soak benchmark, heartbeats, logs). */
export const blobRetryStats = { retries: 0, byReason: new Map<string, number>() };

/**
 * Milliseconds the server asked to wait: `x-ms-retry-after-ms`, `retry-after-ms`, or
 * `Retry-After` in seconds or as an HTTP date. Undefined when absent or unreadable.
 */
export const retryAfterMs = (
  headers: { get(name: string): string | undefined },
  now: number = Date.now(),
): number | undefined => {
  for (const name of ["x-ms-retry-after-ms", "retry-after-ms"]) {
    const v = headers.get(name);
    if (v !== undefined && /^\d+(\.\d+)?$/.test(v.trim())) return Number(v);
  }
  const ra = headers.get("retry-after")?.trim();
  if (ra === undefined || ra === "") return undefined;
  if (/^\d+$/.test(ra)) return Number(ra) * 1000;
  const date = Date.parse(ra);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
};

/**
 * Delay before retry number `retry` (1-based): backoff = min(cap, base·2^(retry−1)), a random
 * value in [backoff/2, backoff]; never less than the server's Retry-After (capped too).
 */
export const retryDelayMs = (
  retry: number,
  base: number,
  cap: number,
  random: () => number,
  serverAskedMs?: number,
): number => {
  const backoff = Math.min(cap, base * 2 ** Math.max(0, retry - 1));
  const jittered = backoff / 2 + random() * (backoff / 2);
  const asked = serverAskedMs === undefined ? 0 : Math.min(cap, serverAskedMs);
  return Math.round(Math.max(jittered, asked));
};

const abortableSleep = (ms: number, signal: RetryPipelineRequest["abortSignal"]): Promise<void> =>
  new Promise((resolve, reject) => {
    const s = signal as AbortSignal | undefined;
    if (s?.aborted) {
      reject(abortError());
      return;
    }
    const timer = setTimeout(() => {
      s?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError());
    };
    s?.addEventListener("abort", onAbort, { once: true });
  });

const abortError = (): Error => {
  const err = new Error("The operation was aborted.");
  err.name = "AbortError";
  return err;
};

const field = (value: unknown, key: string): unknown =>
  value !== null && typeof value === "object" ? (value as Record<string, unknown>)[key] : undefined;

export const RETRY_POLICY_NAME = "hsmfleetRetryPolicy";

export const createRetryPolicy = (options: RetryPolicyOptions = {}): RetryPipelinePolicy => {
  const maxRetries = options.maxRetries ?? 5;
  const base = options.retryDelayMs ?? 500;
  const cap = Math.max(options.maxRetryDelayMs ?? 30_000, base);
  const random = options.random ?? Math.random;
  return {
    name: RETRY_POLICY_NAME,
    async sendRequest(request, next) {
      for (let retry = 1; ; retry++) {
        let reason: string | undefined;
        let asked: number | undefined;
        let response: RetryPipelineResponse | undefined;
        try {
          response = await next(request);
          const code = response.headers.get("x-ms-error-code");
          if (RETRY_STATUS.has(response.status)) {
            reason = String(response.status);
            asked = retryAfterMs(response.headers);
          } else if (code !== undefined && RETRY_ERROR_CODES.has(code)) {
            reason = code;
          } else {
            return response;
          }
        } catch (err) {
          if (request.abortSignal?.aborted || !isRetryableHttpError(err)) throw err;
          if (retry > maxRetries) throw err;
          const code = field(err, "code");
          reason = typeof code === "string" ? code : "network";
          const res = field(err, "response") as RetryPipelineResponse | undefined;
          if (res?.headers !== undefined) asked = retryAfterMs(res.headers);
        }
        if (retry > maxRetries) return response!;
        const delayMs = base === 0 ? 0 : retryDelayMs(retry, base, cap, random, asked);
        blobRetryStats.retries++;
        blobRetryStats.byReason.set(reason, (blobRetryStats.byReason.get(reason) ?? 0) + 1);
        options.onRetry?.({ retry, delayMs, reason, method: request.method });
        await abortableSleep(delayMs, request.abortSignal);
      }
    },
  };
};

interface CorePipelineLike {
  removePolicy(options: { name?: string; phase?: string }): unknown;
  addPolicy(policy: RetryPipelinePolicy, options?: { phase?: string }): void;
}

/**
 * Puts `policy` in the place of the SDK's retry policy in a client's pipeline. The storage SDK
 * builds its core pipeline when the first client is made from a `Pipeline` and keeps it in
 * `pipeline._corePipeline` (every client made from that one, e.g. getContainerClient, shares it);
 * it has no public hook for a replacement retry policy. Returns false — and leaves the SDK's own
 * policy, configured with the same counts — if the SDK no longer has that field (tests catch it).
 */
export const installRetryPolicy = (pipeline: unknown, policy: RetryPipelinePolicy): boolean => {
  const core = field(pipeline, "_corePipeline") as CorePipelineLike | undefined;
  if (
    core === undefined ||
    typeof core.removePolicy !== "function" ||
    typeof core.addPolicy !== "function"
  ) {
    return false;
  }
  core.removePolicy({ name: "storageRetryPolicy" });
  core.addPolicy(policy, { phase: "Retry" });
  return true;
};
