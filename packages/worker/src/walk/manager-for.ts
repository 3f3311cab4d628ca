/** One JetStream manager per connection for the walk's stream look-ups and deletes. */
import { jetstreamManager } from "@hsmfleet/bus";
import type { JetStreamManager, NatsConnection } from "@hsmfleet/bus";

const managers = new WeakMap<NatsConnection, Promise<JetStreamManager>>();

/** The connection's manager, made once (a failed one is made again next time). */
export const managerFor = (nc: NatsConnection): Promise<JetStreamManager> => {
  let m = managers.get(nc);
  if (m === undefined) {
    m = jetstreamManager(nc, { checkAPI: false });
    m.catch(() => managers.delete(nc));
    managers.set(nc, m);
  }
  return m;
};
