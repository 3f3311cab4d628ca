import { JetStreamApiError } from "@nats-io/jetstream";
import { DependencyError, errorMessage } from "@hsmfleet/core";
import { sleepUnlessAborted } from "./sleep.js";

/**
 * Retries for JetStream API calls that a clustered JetStream may leave unanswered for a while:
 * creating a consumer, reading stream or consumer info, creating a KV watch.
 *
 * Why: on an R3 stream with one node down, nats-server (seen on 2.9.10) still places new R1
 * consumers — every ordered consumer (results followers, KV watches and key listings) is one — on
 * any of the stream's peers, the dead one included, until the meta leader marks it offline (minutes
 * after a SIGKILL). A consumer placed there is never created and the request times out; the next
 * try is placed at random again. A new R3 consumer whose preferred leader is the dead node waits
 * for an election (4–9 s) before it answers. Both end with a timeout that is worth retrying.
 */
export interface JetStreamRetryOptions {
  /** Give up after this long in total. Default 60,000 ms. */
  deadlineMs?: number | undefined;
  /** First wait between tries; doubles up to maxDelayMs, with jitter. Default 250 ms. */
  initialDelayMs?: number | undefined;
  /** Longest wait between tries. Default 4,000 ms. */
  maxDelayMs?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Told about every failed try that will be retried. */
  onRetry?: ((attempt: number, err: unknown) => void) | undefined;
}

export const JETSTREAM_RETRY_DEFAULTS = {
  deadlineMs: 60_000,
  initialDelayMs: 250,
  maxDelayMs: 4_000,
} as const;

/** A JetStream failure that a cluster electing a leader or missing a node can cause. */
export const isRetryableJetStreamError = (err: unknown): boolean => {
  if (err instanceof JetStreamApiError) {
    // 503: "JetStream system temporarily unavailable" (10008) and leaderless groups.
    return err.status === 503 || err.code === 10008;
  }
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; depth++) {
    // nats.js names its no-responders error "NoResponders" (class NoRespondersError); a publish
    // wraps it in "jetstream is not enabled" (JetStreamNotEnabled ← RequestError ← NoResponders).
    if (e.name === "TimeoutError" || e.name === "NoResponders" || e.name === "NoRespondersError")
      return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
};

let retriesSoFar = 0;

/** Tries retried by withJetStreamRetry in this process (for tests and diagnostics). */
export const jetStreamRetryCount = (): number => retriesSoFar;

/**
 * Runs `fn` until it succeeds, fails with an error that is not retryable, or the deadline
 * passes; then throws a DependencyError naming `what` (e.g. `create the results consumer of job
 * x on stream hsmfleet-results`), the tries and the last cause. `fn` must be safe to repeat.
 */
export const withJetStreamRetry = async <T>(
  what: string,
  fn: () => Promise<T>,
  options: JetStreamRetryOptions = {},
): Promise<T> => {
  const deadlineMs = options.deadlineMs ?? JETSTREAM_RETRY_DEFAULTS.deadlineMs;
  const maxDelayMs = options.maxDelayMs ?? JETSTREAM_RETRY_DEFAULTS.maxDelayMs;
  let delayMs = options.initialDelayMs ?? JETSTREAM_RETRY_DEFAULTS.initialDelayMs;
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const elapsed = Date.now() - started;
      if (!isRetryableJetStreamError(err) || options.signal?.aborted) throw err;
      if (elapsed + delayMs >= deadlineMs) {
        throw new DependencyError(
          `could not ${what}: JetStream did not answer in ${attempt} tries over ` +
            `${(elapsed / 1000).toFixed(0)} s (${errorMessage(err)}); is a quorum of the JetStream ` +
            `cluster up and connected (nats server report jetstream)?`,
          { cause: err },
        );
      }
      retriesSoFar += 1;
      options.onRetry?.(attempt, err);
      await sleepUnlessAborted(delayMs / 2 + Math.random() * (delayMs / 2), options.signal);
      if (options.signal?.aborted) throw err;
      delayMs = Math.min(maxDelayMs, delayMs * 2);
    }
  }
};
