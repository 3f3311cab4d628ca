import { createInbox, headers } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";

/** One message for a JetStream stream, with the id the stream deduplicates on. */
export interface PipelinedMessage {
  subject: string;
  data: Uint8Array;
  msgId: string;
}

export interface PipelinedPublishOptions {
  /** Messages sent and not yet acknowledged, at most. Default 256. */
  window?: number | undefined;
  /** Fail when no acknowledgement arrives for this long. Default 10,000 ms. */
  ackTimeoutMs?: number | undefined;
}

export const PIPELINED_PUBLISH_DEFAULTS = { window: 256, ackTimeoutMs: 10_000 } as const;

/** A message of a pipelined publish that the stream did not store (or did not say it stored). */
export class PipelinedPublishError extends Error {
  readonly subject: string;
  readonly msgId: string;
  constructor(subject: string, msgId: string, cause: string) {
    super(`JetStream publish of ${msgId} to ${subject}: ${cause}`);
    this.name = "PipelinedPublishError";
    this.subject = subject;
    this.msgId = msgId;
  }
}

/**
 * Publishes `messages` to JetStream in order, up to `window` at a time, and resolves once the
 * stream has acknowledged every one (a duplicate of an id it already holds counts as stored).
 * The same guarantee as awaiting `js.publish` for each in turn, without a round trip per message:
 * all go out on one connection in order, so the stream stores them in this order; the
 * acknowledgements come back on one inbox subscription (`<inbox>.<n>`), with no per-message
 * request, timer or error object.
 *
 * Rejects with a PipelinedPublishError naming the first message not stored (an error answer, no
 * stream for the subject, or no answer for `ackTimeoutMs`), after every message sent has been
 * answered or timed out. Nothing is retried here: the ids make a later publish of the same
 * messages (the caller's retry, a restart) store only the missing ones.
 */
export const publishPipelined = async (
  nc: NatsConnection,
  messages: readonly PipelinedMessage[],
  options: PipelinedPublishOptions = {},
): Promise<void> => {
  if (messages.length === 0) return;
  const window = Math.max(1, options.window ?? PIPELINED_PUBLISH_DEFAULTS.window);
  const ackTimeoutMs = options.ackTimeoutMs ?? PIPELINED_PUBLISH_DEFAULTS.ackTimeoutMs;
  const inbox = createInbox();
  const answered = new Uint8Array(messages.length);
  let sent = 0;
  let acked = 0;
  let failure: { index: number; cause: string } | undefined;
  await new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      clearTimeout(timer);
      sub.unsubscribe();
      resolve();
    };
    const fail = (index: number, cause: string): void => {
      if (failure === undefined || index < failure.index) failure = { index, cause };
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const missing = answered.indexOf(0);
        fail(missing < 0 ? 0 : missing, `no acknowledgement in ${ackTimeoutMs} ms`);
        finish();
      }, ackTimeoutMs);
    };
    const sendMore = (): void => {
      // After a failure nothing more goes out: the stream must not store a later message first.
      while (failure === undefined && sent < messages.length && sent - acked < window) {
        const m = messages[sent]!;
        const h = headers();
        h.set("Nats-Msg-Id", m.msgId);
        nc.publish(m.subject, m.data, { reply: `${inbox}.${sent}`, headers: h });
        sent++;
      }
      if (acked === sent && (failure !== undefined || sent === messages.length)) finish();
    };
    const sub = nc.subscribe(`${inbox}.*`, {
      callback: (err, msg) => {
        if (err) {
          fail(acked, err.message);
          finish();
          return;
        }
        const index = Number(msg.subject.slice(inbox.length + 1));
        if (!Number.isInteger(index) || index < 0 || index >= sent || answered[index] === 1) return;
        answered[index] = 1;
        acked++;
        if (msg.headers?.hasError) fail(index, `${msg.headers.code} ${msg.headers.description}`);
        else {
          try {
            const ack = JSON.parse(new TextDecoder().decode(msg.data)) as {
              stream?: unknown;
              error?: { description?: unknown };
            };
            if (ack.error !== undefined)
              fail(
                index,
                typeof ack.error.description === "string"
                  ? ack.error.description
                  : "error acknowledgement",
              );
            else if (typeof ack.stream !== "string" || ack.stream === "")
              fail(index, "invalid acknowledgement");
          } catch {
            fail(index, "undecodable acknowledgement");
          }
        }
        arm();
        sendMore();
      },
    });
    arm();
    sendMore();
  });
  if (failure !== undefined) {
    const m = messages[failure.index]!;
    throw new PipelinedPublishError(m.subject, m.msgId, failure.cause);
  }
};
