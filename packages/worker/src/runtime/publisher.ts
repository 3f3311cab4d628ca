import { traceHeaders } from "@hsmfleet/bus";
import type { JetStreamClient } from "@hsmfleet/bus";
import { errorCode, errorMessage } from "@hsmfleet/core";
import type { ItemError } from "@hsmfleet/protocol";

/** Errors carried in an ItemResult itself; more go out in ErrorBatch messages of this size. */
export const ERRORS_PER_MESSAGE = 200;
/** Publishes in flight before their acks are awaited together. */
const PUBLISH_WINDOW = 256;

/**
 * JetStream publishes with bounded pipelining: up to PUBLISH_WINDOW in flight, then all acks are
 * awaited. Every publish carries a deterministic message id, so a retried item re-publishes
 * nothing new.
 */
export class Publisher {
  readonly #js: JetStreamClient;
  /** The work item whose trace context goes along (see traceHeaders). */
  readonly #traceKey: object | undefined;
  #pending: Promise<unknown>[] = [];

  constructor(js: JetStreamClient, traceKey?: object) {
    this.#js = js;
    this.#traceKey = traceKey;
  }

  async publish(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    this.#pending.push(
      this.#js.publish(subject, data, { msgID, headers: traceHeaders(this.#traceKey) }),
    );
    if (this.#pending.length >= PUBLISH_WINDOW) await this.flush();
  }

  async flush(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    await Promise.all(pending);
  }
}

/**
 * An ItemError for `path` from any failure: the error's own operation and retryable flag when it
 * carries them (FsOperationError, BlobOperationError), else `operation`.
 */
export const itemErrorOf = (
  path: Buffer,
  err: unknown,
  operation: string,
  message?: string,
): ItemError => ({
  path,
  operation: err instanceof Error && "operation" in err ? String(err.operation) : operation,
  code: errorCode(err),
  message: message ?? errorMessage(err),
  retryable: err instanceof Error && "retryable" in err ? Boolean(err.retryable) : false,
});
