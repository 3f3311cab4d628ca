import type { JetStreamClient } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import type { MsgHdrs } from "@nats-io/transport-node";
import { SEAL_HEADER, jobIdOfSubject, sealFor, sealMatches } from "@hsmfleet/protocol";

/** The key of a job (JobSpec.itemKey), or undefined when the job is unknown. */
export type ItemKeyLookup = (jobId: string) => Promise<Uint8Array | undefined>;

/** `existing` (or new headers) with the seal of `data` on `subject` under `key`. */
export const sealHeaders = (
  key: Uint8Array,
  subject: string,
  data: Uint8Array,
  existing?: MsgHdrs,
): MsgHdrs => {
  const h = existing ?? headers();
  h.set(SEAL_HEADER, sealFor(key, subject, data));
  return h;
};

/** Whether a received message carries a valid seal for `key` (see protocol seal.ts). */
export const hasValidSeal = (
  key: Uint8Array,
  msg: { subject: string; data: Uint8Array; headers?: MsgHdrs | undefined },
): boolean => sealMatches(key, msg.subject, msg.data, msg.headers?.get(SEAL_HEADER) || undefined);

/**
 * A JetStream client whose publish() seals every message on a job's subjects
 * (`hsmfleet.work.<job>.*`, `hsmfleet.result.<job>.*`) with that job's key. Other subjects, and
 * jobs whose key is unknown or empty, are published as they are (and refused by whoever checks).
 */
export const sealingPublishes = (js: JetStreamClient, keyOf: ItemKeyLookup): JetStreamClient => {
  const publish: JetStreamClient["publish"] = async (subject, payload, opts) => {
    const jobId = jobIdOfSubject(subject);
    const key = jobId === undefined ? undefined : await keyOf(jobId);
    if (key === undefined || key.length === 0 || payload === undefined)
      return js.publish(subject, payload, opts);
    const data = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    return js.publish(subject, data, {
      ...opts,
      headers: sealHeaders(key, subject, data, opts?.headers),
    });
  };
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
