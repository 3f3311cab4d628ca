import { JetStreamApiError, jetstream } from "@nats-io/jetstream";
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage } from "@hsmfleet/core";
import { withJetStreamRetry } from "./jetstream-retry.js";
import { sleepUnlessAborted } from "./sleep.js";
import { isTerminalMessageError, terminateMessage } from "./terminate.js";

/** Why a message came to this process with a delivery count above 1 (see onRedelivery). */
export interface Redelivery {
  /**
   * This process already holds the message (a handler runs for it): its ack wait expired anyway,
   * so the process was stalled longer than the ack wait. The copy is not started; the handler that
   * holds the message acknowledges it (acks and keep-alives act on the stream sequence).
   */
  held: boolean;
  /** This process handed an earlier delivery back (nak) after this error. */
  previousError?: unknown;
}

export interface WorkConsumerOptions {
  stream: string;
  consumer: string;
  /** Items processed at once by this process. Default 16 (WORK_CONSUMER_DEFAULTS). */
  concurrency?: number | undefined;
  /** Called for each message; resolve = ack is the handler's job (see WorkHandler). */
  handle: (msg: JsMsg) => Promise<void>;
  signal?: AbortSignal | undefined;
  /**
   * Called when a handler throws (the message is nak'ed by then — or terminated, never to come
   * back, when the error is a TerminalMessageError), or a pull fails (no message; the pull is
   * tried again after `retryDelayMs`).
   */
  onError?: ((err: unknown, msg: JsMsg | undefined) => void) | undefined;
  /** Called for every delivery after the first, before it is started (or dropped, if held). */
  onRedelivery?: ((msg: JsMsg, redelivery: Redelivery) => void) | undefined;
  /**
   * How often every held message is kept alive with `working()`. Default: a third of the
   * consumer's ack wait (its configuration is read once at start).
   */
  keepAliveMs?: number | undefined;
  /**
   * Messages this process may hold beyond its running handlers, each waiting for a free slot (kept
   * alive like the running ones). Default 0: nothing is pulled that cannot start at once, so every
   * message waiting for a handler stays with the server, for any worker. 1 suits a consumer whose
   * `max_ack_pending` already bounds what the fleet holds (an HSM partition, 1): the next pull
   * request then waits at the server and gets the next message the moment the last one is acked.
   */
  prefetch?: number | undefined;
  /** How long one pull request waits for messages on an empty consumer. Default 5000 ms. */
  pullExpiresMs?: number | undefined;
  /**
   * Wait after a failed pull, doubled for each failure in a row (capped at 5 s) and drawn from
   * ½–1½ of that, so a fleet that lost its server together does not pull again in step. Default
   * 1000 ms.
   */
  retryDelayMs?: number | undefined;
  /**
   * Told when the consumer stopped answering (its node died): getting it is retried, or a pull
   * did not end in time and is made again.
   */
  onLost?: ((why: string) => void) | undefined;
}

export const WORK_CONSUMER_DEFAULTS = {
  concurrency: 16,
  prefetch: 0,
  pullExpiresMs: 5000,
  retryDelayMs: 1000,
  /** Used when the consumer's configuration states no ack wait (the server's default). */
  ackWaitMs: 30_000,
} as const;

/** The longest wait between failed pulls. */
const MAX_PULL_BACKOFF_MS = 5000;

/** Wait before pulling again after `failures` failed pulls in a row: doubling, capped, jittered. */
export const pullBackoffMs = (baseMs: number, failures: number, random = Math.random): number =>
  Math.min(MAX_PULL_BACKOFF_MS, baseMs * 2 ** Math.max(0, failures - 1)) * (0.5 + random());

/** A fetch that has not ended after this many times its expiry is closed (see below). */
const FETCH_BOUND = 3;

/** The nak reasons remembered per stream sequence (for the redelivery log), at most this many. */
const REMEMBERED_ERRORS = 1024;

/**
 * Pulls from a durable consumer and runs up to `concurrency` handlers at once. Returns when the
 * signal aborts (after in-flight handlers finish) or the connection closes; throws when the
 * consumer does not exist (any more).
 *
 * A message this process holds never expires its ack wait while the process runs:
 * - it pulls only as many messages as it has free handler slots (one pull request at a time,
 *   `max_messages` = free slots), so no message waits unseen in a client-side buffer — nats.js's
 *   `consume()` keeps up to `max_messages` more than the handlers run, and those waited without a
 *   keep-alive (issue 6: a chunk item queued behind four 32 MiB chunks on a shaped link waited
 *   longer than the ack wait and was redelivered until it ran out of deliveries);
 * - every held message gets `working()` when it arrives and then every `keepAliveMs`, from this
 *   loop, whatever its handler does (long steps, waits for request slots or memory).
 * A delivery of a message already held (the process was stalled past the ack wait) is not
 * started twice.
 */
export const runWorkConsumer = async (
  nc: NatsConnection,
  options: WorkConsumerOptions,
): Promise<void> => {
  const concurrency = Math.max(1, options.concurrency ?? WORK_CONSUMER_DEFAULTS.concurrency);
  const prefetch = Math.max(0, options.prefetch ?? WORK_CONSUMER_DEFAULTS.prefetch);
  const expires = options.pullExpiresMs ?? WORK_CONSUMER_DEFAULTS.pullExpiresMs;
  const retryDelayMs = options.retryDelayMs ?? WORK_CONSUMER_DEFAULTS.retryDelayMs;
  const { signal } = options;
  const js = jetstream(nc);
  // A cluster electing a leader (a node died) may leave these unanswered for a while: retried.
  const what = `get the consumer ${options.consumer} on stream ${options.stream}`;
  const retry = {
    signal,
    onRetry: (attempt: number, err: unknown) =>
      options.onLost?.(`could not ${what} (try ${attempt}: ${errorMessage(err)}); retrying`),
  };
  const consumer = await withJetStreamRetry(
    what,
    () => js.consumers.get(options.stream, options.consumer),
    retry,
  );
  const info = await withJetStreamRetry(what, () => consumer.info(true), retry);
  const ackWaitMs = info.config.ack_wait
    ? info.config.ack_wait / 1_000_000
    : WORK_CONSUMER_DEFAULTS.ackWaitMs;
  const keepAliveMs = Math.max(50, options.keepAliveMs ?? Math.floor(ackWaitMs / 3));
  /** Messages held by this process (running or waiting for a slot), by stream sequence. */
  const held = new Map<number, JsMsg>();
  const inFlight = new Set<Promise<void>>();
  /** Held messages waiting for a slot (only with prefetch). */
  const waiting: JsMsg[] = [];
  const naked = new Map<number, unknown>();
  let slotFreed: (() => void) | undefined;
  let pulling: ConsumerMessages | undefined;
  const keepAlive = setInterval(() => {
    for (const msg of held.values()) msg.working();
  }, keepAliveMs);
  const onAbort = () => {
    void pulling?.close();
    slotFreed?.();
  };
  signal?.addEventListener("abort", onAbort, { once: true });

  const accept = (msg: JsMsg): void => {
    if (signal?.aborted) {
      // Hand it back at once so another worker takes it.
      msg.nak();
      return;
    }
    const seq = msg.info.streamSequence;
    if (msg.info.deliveryCount > 1) {
      const previousError = naked.get(seq);
      naked.delete(seq);
      options.onRedelivery?.(msg, {
        held: held.has(seq),
        ...(previousError === undefined ? {} : { previousError }),
      });
    }
    if (held.has(seq)) return;
    msg.working();
    held.set(seq, msg);
    if (inFlight.size < concurrency) start(msg);
    else waiting.push(msg);
  };

  function start(msg: JsMsg): void {
    const seq = msg.info.streamSequence;
    // A handler that throws at once (before its first await) must not escape into the pull loop:
    // the message would stay held and kept alive for ever (issue 14, item 5).
    const task = Promise.resolve()
      .then(() => options.handle(msg))
      .catch((err: unknown) => {
        if (isTerminalMessageError(err)) {
          terminateMessage(nc, msg, err.message);
        } else {
          msg.nak(1000);
          if (naked.size >= REMEMBERED_ERRORS) naked.delete(naked.keys().next().value!);
          naked.set(seq, err);
        }
        options.onError?.(err, msg);
      })
      .finally(() => {
        held.delete(seq);
        inFlight.delete(task);
        const next = signal?.aborted ? undefined : waiting.shift();
        if (next !== undefined) start(next);
        slotFreed?.();
      });
    inFlight.add(task);
  }

  /** Pulls that failed in a row (the backoff grows with them). */
  let failures = 0;
  try {
    while (!signal?.aborted && !nc.isClosed()) {
      const free = concurrency + prefetch - held.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (slotFreed = resolve));
        slotFreed = undefined;
        continue;
      }
      try {
        pulling = await consumer.fetch({ max_messages: free, expires });
        // A fetch ends by itself after `expires`, or after two missed heartbeats. But after a
        // reconnect nats.js watches no heartbeats until the consumer's info answers, which it
        // never does when the consumer's node died: bound the fetch here (then the loop checks the
        // consumer and pulls again).
        const fetched = pulling;
        const guard = setTimeout(() => {
          options.onLost?.(
            `a pull from ${options.consumer} on ${options.stream} did not end in ${(FETCH_BOUND * expires) / 1000} s (its node is gone?); pulling again`,
          );
          void fetched.close();
        }, FETCH_BOUND * expires);
        try {
          for await (const msg of fetched) accept(msg);
        } finally {
          clearTimeout(guard);
        }
        failures = 0;
      } catch (err) {
        if (signal?.aborted || nc.isClosed()) break;
        // A consumer that is gone ends the loop (a restore job's consumer is deleted with the job).
        const gone = await consumer.info().then(
          () => false,
          (e: unknown) => e instanceof JetStreamApiError && e.status === 404,
        );
        if (gone) throw err;
        options.onError?.(err, undefined);
        failures++;
        await sleepUnlessAborted(pullBackoffMs(retryDelayMs, failures), signal);
      } finally {
        pulling = undefined;
      }
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    // Waiting messages go back at once; running ones finish.
    for (const msg of waiting.splice(0)) {
      held.delete(msg.info.streamSequence);
      msg.nak();
    }
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    clearInterval(keepAlive);
  }
};
