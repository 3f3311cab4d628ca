import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { JOB_ID_PATTERN } from "./subjects.js";

/**
 * Seals: anyone who can publish on NATS can send hsmfleet messages, so every work item and result
 * of a job carries an HMAC-SHA256 of its subject and payload, keyed by the job's random
 * `JobSpec.itemKey` (in the job record, which only the coordinator and workers read). A worker
 * refuses a work item, and the coordinator drops a result, whose seal does not match: a forged or
 * altered message never runs and never counts. The seal travels in a NATS header so the payload's
 * bytes stay exactly what was sealed (no re-encoding).
 */
export const SEAL_HEADER = "Hsmfleet-Seal";

/** Bytes of HMAC kept (128 bits: forging one is a 2^-128 guess). */
const SEAL_BYTES = 16;

/** A fresh job key. */
export const newItemKey = (): Buffer => randomBytes(32);

/** The seal of `data` published on `subject` under `key` (base64url). */
export const sealFor = (key: Uint8Array, subject: string, data: Uint8Array): string =>
  createHmac("sha256", key)
    .update(subject)
    .update("\0")
    .update(data)
    .digest()
    .subarray(0, SEAL_BYTES)
    .toString("base64url");

/**
 * Whether `seal` is the seal of `data` on `subject` under `key`. An empty key (a record written
 * before seals existed) or a missing seal never matches.
 */
export const sealMatches = (
  key: Uint8Array,
  subject: string,
  data: Uint8Array,
  seal: string | undefined,
): boolean => {
  if (key.length === 0 || seal === undefined || seal === "") return false;
  const given = Buffer.from(seal, "base64url");
  const want = Buffer.from(sealFor(key, subject, data), "base64url");
  return given.length === want.length && timingSafeEqual(given, want);
};

/**
 * The job a subject belongs to: `hsmfleet.work.<job>.<kind>` and `hsmfleet.result.<job>.<kind>`
 * (undefined for other subjects, or a token that is not a valid job id).
 */
export const jobIdOfSubject = (subject: string): string | undefined => {
  const parts = subject.split(".");
  if (parts.length !== 4 || parts[0] !== "hsmfleet") return undefined;
  if (parts[1] !== "work" && parts[1] !== "result") return undefined;
  const jobId = parts[2] ?? "";
  return JOB_ID_PATTERN.test(jobId) ? jobId : undefined;
};
