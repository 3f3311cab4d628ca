import type { ConsumeOptions, Consumer, ConsumerMessages, JsMsg } from "@nats-io/jetstream";

export interface ResilientConsumerOptions {
  /**
   * Gets the consumer to pull from: a durable's handle, or a new ordered consumer that starts after
   * the last message the caller has handled. Called again after every loss, so it must be safe to
   * repeat; wrap it in withJetStreamRetry so a cluster electing a leader is waited for, and a
   * JetStream that stays away ends in a named error.
   */
  open: () => Promise<Consumer>;
  /** Options of each consume(); `expires` sets the heartbeat too (half of it). Default expires 30 s. */
  consume?: ConsumeOptions | undefined;
  /**
   * While the caller waits for a message, this long without a message, a heartbeat or any status
   * from the server means the consumer is lost: it is closed and opened again. Default three
   * heartbeat intervals (1.5 × expires).
   */
  silenceMs?: number | undefined;
  /** Told about every loss, before the consumer is opened again. */
  onLost?: ((why: string, reopens: number) => void) | undefined;
}

/** How often silence is checked. */
const CHECK_EVERY_MS = 1000;

/**
 * A pull consumer that survives the loss of the server it lives on.
 *
 * Why: nats.js (3.4) restores a pull consumer after missed heartbeats or a reconnect by asking for
 * the consumer's info until it answers. When the consumer lived on a node that died — every ordered
 * consumer is R1, and the server places it on any peer of the stream — that request only ever
 * times out; and after a reconnect nats.js stops watching heartbeats until it succeeds. The pull
 * then waits for ever, silently. Here the caller's wait for a message is watched: when nothing at
 * all (message, heartbeat, pull status) has come from the server for `silenceMs` while the caller
 * was waiting, the consumer is closed and `open` gives a new one. Time the caller spends handling
 * messages does not count: nats.js sends the next pull only when the caller asks for more.
 *
 *   const messages = new ResilientConsumer({ open: () => js.consumers.get(stream, name) });
 *   for await (const m of messages) { ... }   // ends on close(), or when the connection closes
 */
export class ResilientConsumer implements AsyncIterable<JsMsg> {
  readonly #o: ResilientConsumerOptions;
  readonly #silenceMs: number;
  #current: ConsumerMessages | undefined;
  #closed = false;
  #reopens = 0;

  constructor(options: ResilientConsumerOptions) {
    this.#o = options;
    const expires = options.consume?.expires ?? 30_000;
    this.#silenceMs = options.silenceMs ?? Math.round(1.5 * expires);
  }

  /** Times the consumer was found lost and opened again. */
  get reopens(): number {
    return this.#reopens;
  }

  /** Stops pulling; messages already received are still yielded, then the iteration ends. */
  close(): void {
    this.#closed = true;
    void this.#current?.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<JsMsg> {
    while (!this.#closed) {
      const consumer = await this.#o.open();
      if (this.#closed) return;
      const messages = await consumer.consume(this.#o.consume);
      this.#current = messages;
      if (this.#closed) {
        await messages.close();
        return;
      }
      let lastSign = Date.now();
      let waitingSince: number | undefined = Date.now();
      let lost: string | undefined;
      void (async () => {
        for await (const n of messages.status()) {
          // Anything the server sent to this pull is a sign of life; the client's own notices are not.
          if (n.type === "heartbeat" || n.type === "debug" || n.type === "discard") {
            lastSign = Date.now();
          }
        }
      })();
      let lastCheck = Date.now();
      const timer = setInterval(() => {
        // After the event loop was blocked (a loaded machine), let pending I/O — heartbeats
        // included — be read before judging.
        const late = Date.now() - lastCheck > 2 * CHECK_EVERY_MS;
        lastCheck = Date.now();
        if (late || waitingSince === undefined || lost !== undefined) return;
        const silentMs = Date.now() - Math.max(lastSign, waitingSince);
        if (silentMs > this.#silenceMs) {
          lost = `nothing from the server for ${(silentMs / 1000).toFixed(1)} s (its node is gone?)`;
          void messages.close();
        }
      }, CHECK_EVERY_MS);
      try {
        for await (const m of messages) {
          waitingSince = undefined;
          lastSign = Date.now();
          yield m;
          waitingSince = Date.now();
        }
      } finally {
        clearInterval(timer);
        // Also when the caller stops iterating early (break, throw).
        void messages.close();
      }
      // Closed by close(), by the connection closing, or by nats.js for good: the end.
      if (lost === undefined || this.#closed) return;
      this.#reopens += 1;
      this.#o.onLost?.(lost, this.#reopens);
    }
  }
}
