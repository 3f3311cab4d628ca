import { jetstream } from "@nats-io/jetstream";
import type { JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage } from "@hsmfleet/core";
import { withJetStreamRetry } from "./jetstream-retry.js";
import { ResilientConsumer } from "./resilient-consumer.js";

export interface WorkConsumerOptions {
  stream: string;
  consumer: string;
  /** Items processed at once by this process. Default 16. */
  concurrency?: number | undefined;
  /** Called for each message; resolve = ack is the handler's job (see WorkHandler). */
  handle: (msg: JsMsg) => Promise<void>;
  signal?: AbortSignal | undefined;
  /** Called when a handler throws (the message is nak'ed by then). */
  onError?: ((err: unknown, msg: JsMsg) => void) | undefined;
  /**
   * Called when the consumer stopped answering (its node died) and is being opened again, and
   * when getting it is retried (a cluster electing a leader).
   */
  onLost?: ((why: string) => void) | undefined;
}

/** A pull waits this long; the server sends a heartbeat every half of it. */
const PULL_EXPIRES_MS = 5_000;

/**
 * Pulls from a durable consumer and runs up to `concurrency` handlers at once. Returns when the
 * signal aborts (after in-flight handlers finish) or the connection closes. A consumer whose server
 * goes silent (a node of a cluster died) is opened again (resilient-consumer.ts); getting it is
 * retried for up to 60 s, then this fails with a DependencyError naming the consumer.
 */
export const runWorkConsumer = async (
  nc: NatsConnection,
  options: WorkConsumerOptions,
): Promise<void> => {
  const concurrency = options.concurrency ?? 16;
  const js = jetstream(nc);
  const what = `get the consumer ${options.consumer} on stream ${options.stream}`;
  const messages = new ResilientConsumer({
    open: () =>
      withJetStreamRetry(what, () => js.consumers.get(options.stream, options.consumer), {
        signal: options.signal,
        onRetry: (attempt, err) =>
          options.onLost?.(`could not ${what} (try ${attempt}: ${errorMessage(err)}); retrying`),
      }),
    consume: { max_messages: concurrency, expires: PULL_EXPIRES_MS },
    onLost: (why) =>
      options.onLost?.(`the consumer ${options.consumer} on ${options.stream}: ${why}; reopening`),
  });
  const inFlight = new Set<Promise<void>>();
  const onAbort = () => messages.close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) messages.close();
  try {
    for await (const msg of messages) {
      if (options.signal?.aborted) {
        // Hand it back at once so another worker takes it.
        msg.nak();
        continue;
      }
      const task = options
        .handle(msg)
        .catch((err: unknown) => {
          msg.nak(1000);
          options.onError?.(err, msg);
        })
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
      if (inFlight.size >= concurrency) await Promise.race(inFlight);
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    await Promise.allSettled([...inFlight]);
  }
};
