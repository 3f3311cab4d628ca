import { jetstream } from "@nats-io/jetstream";
import type { JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

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
}

/**
 * Pulls from a durable consumer and runs up to `concurrency` handlers at once. Returns when the
 * signal aborts (after in-flight handlers finish) or the connection closes.
 */
export const runWorkConsumer = async (
  nc: NatsConnection,
  options: WorkConsumerOptions,
): Promise<void> => {
  const concurrency = options.concurrency ?? 16;
  const js = jetstream(nc);
  const consumer = await js.consumers.get(options.stream, options.consumer);
  const messages = await consumer.consume({ max_messages: concurrency, expires: 5_000 });
  const inFlight = new Set<Promise<void>>();
  const onAbort = () => void messages.close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
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
