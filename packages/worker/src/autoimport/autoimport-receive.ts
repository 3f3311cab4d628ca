/**
 * One receive of the autoimport intake (a round's messages), stoppable by the service's signal.
 *
 * The receive gets a signal of its own, aborted with the service's: @azure/service-bus 7.9 adds an
 * abort listener to a receive's signal for each drain (a receive that ends with credit left) and
 * does not remove it once the drain is answered. On the service's own signal that was one listener
 * more per receive for as long as the service runs (a leak, and Node's MaxListenersExceededWarning
 * after 10); on a signal per receive they go with it.
 */
import type { ServiceBusReceivedMessage, ServiceBusReceiver } from "@azure/service-bus";

export const receiveRound = async (
  receiver: ServiceBusReceiver,
  max: number,
  maxWaitTimeInMs: number,
  signal: AbortSignal | undefined,
): Promise<ServiceBusReceivedMessage[]> => {
  if (!signal) return receiver.receiveMessages(max, { maxWaitTimeInMs });
  const own = new AbortController();
  const onAbort = () => own.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await receiver.receiveMessages(max, { maxWaitTimeInMs, abortSignal: own.signal });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
};
