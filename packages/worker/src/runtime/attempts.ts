import type { ItemError } from "@hsmfleet/protocol";

/** How a worker retries one entry of a work item (on top of the blob client's request retries). */
export interface AttemptPolicy {
  /** Attempts per entry before it goes to the job's error log (1 = no retry). */
  maxAttempts: number;
  /** Wait before the second attempt, doubled each time (with jitter). */
  retryDelayMs: number;
  /** Cap of one wait. */
  maxRetryDelayMs: number;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });

/**
 * Runs `attempt` until it succeeds, fails with an error that is not retryable (403, a missing
 * source file, a name Blob cannot hold: at once), or has failed `maxAttempts` times; waits a
 * jittered, capped exponential backoff between attempts. The last error names the attempt count.
 * An abort (worker shutdown) rejects with the signal's reason, so the item is handed back whole.
 */
export const withAttempts = async <T extends { error?: ItemError | undefined }>(
  policy: AttemptPolicy,
  signal: AbortSignal,
  attempt: (n: number) => Promise<T>,
  onRetry?: (n: number, error: ItemError) => void,
): Promise<T> => {
  for (let n = 1; ; n++) {
    const result = await attempt(n);
    const error = result.error;
    if (error === undefined || !error.retryable) return result;
    if (n >= policy.maxAttempts) {
      if (n > 1) error.message = `${error.message} (gave up after ${n} attempts)`;
      return result;
    }
    onRetry?.(n, error);
    const backoff = Math.min(policy.maxRetryDelayMs, policy.retryDelayMs * 2 ** (n - 1));
    await sleep(backoff / 2 + Math.random() * (backoff / 2), signal);
  }
};
