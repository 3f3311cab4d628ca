import type { JetStreamClient } from "@nats-io/jetstream";
import { withJetStreamRetry } from "./jetstream-retry.js";

export interface RetryingPublishOptions {
  /** Give one publish up after this long in total. Default 30,000 ms. */
  deadlineMs?: number | undefined;
  /** Told about every failed try that will be retried. */
  onRetry?: ((subject: string, attempt: number, err: unknown) => void) | undefined;
}

/**
 * A JetStream client whose publish() is retried while the stream cannot answer: a stream whose
 * leader died has none until the survivors elect one (4–9 s seen on nats-server 2.9), and a
 * publish in that window fails at once with "no responders" (nats.js: "jetstream is not enabled"),
 * a 503, or times out. Without this, a work item whose result cannot be published fails and is
 * redelivered; a few such deliveries in a row — seconds apart — use up its max deliveries and it
 * would end as an error of the job although nothing was wrong with it.
 *
 * Only for publishes that carry a message id (every worker publish does): a try that did reach the
 * stream but whose ack was lost is dropped as a duplicate by the next one.
 */
export const retryingPublishes = (
  js: JetStreamClient,
  options: RetryingPublishOptions = {},
): JetStreamClient => {
  const publish: JetStreamClient["publish"] = (subject, data, opts) =>
    withJetStreamRetry(`publish to ${subject}`, () => js.publish(subject, data, opts), {
      deadlineMs: options.deadlineMs ?? 30_000,
      onRetry: (attempt, err) => options.onRetry?.(subject, attempt, err),
    });
  return new Proxy(js, {
    get(target, property) {
      if (property === "publish") return publish;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function"
        ? (value as (...a: unknown[]) => unknown).bind(target)
        : value;
    },
  });
};
