/**
 * nats.js (nats-core 3.4.0) ends every answered request (`nc.request`: each KV get and put, each
 * JetStream publish ack, each API call) with `RequestOne.resolver` → `cancel()`, and `cancel()`
 * rejects the request's deferred with `new RequestError("cancelled")` — after the resolver has
 * already resolved or rejected it, so the rejection is a no-op, but the Error and its stack capture
 * are made every time, for every request that succeeded (issue 20: 2-3 % of the autoimport
 * service's and workers' profiles). `noAsyncTraces` (connection.ts) does not cover it.
 *
 * installSettledCancel replaces `RequestOne.prototype.resolver` with the same steps minus that
 * no-op: stop the timer, settle the deferred (an error wrapped in a RequestError as before, a
 * timeout as is), leave the mux. `cancel()` itself is unchanged: a request cancelled before its
 * answer (a closed connection, an abort) still rejects with "cancelled". Installed once, when the
 * bus is loaded; idempotent.
 */
import { RequestError, RequestOne, TimeoutError } from "@nats-io/transport-node";
import type { Msg } from "@nats-io/transport-node";

/** The fields of RequestOne the replacement uses (public in its declaration). */
interface RequestOneLike {
  timer?: { cancel(): void } | undefined;
  ctx?: RequestError | undefined;
  deferred: { resolve(m: Msg): void; reject(err: unknown): void };
  mux: { cancel(r: unknown): void };
}

const INSTALLED = Symbol.for("hsmfleet.bus.settledCancel");

function resolver(this: RequestOneLike, err: Error | null, msg: Msg): void {
  this.timer?.cancel();
  if (err) {
    let e: Error = err;
    if (!(err instanceof TimeoutError)) {
      if (this.ctx) {
        this.ctx.message = err.message;
        this.ctx.cause = err;
        e = this.ctx;
      } else {
        e = new RequestError(err.message, { cause: err });
      }
    }
    this.deferred.reject(e);
  } else {
    this.deferred.resolve(msg);
  }
  // cancel() without its rejection: the deferred is settled above.
  this.mux.cancel(this);
}

/** Installs the resolver above on RequestOne (once per process). */
export const installSettledCancel = (): void => {
  const proto = RequestOne.prototype as unknown as Record<symbol | string, unknown>;
  if (proto[INSTALLED]) return;
  proto.resolver = resolver;
  proto[INSTALLED] = true;
};
