/**
 * Work items of `hsmfleet autoimport` (issue 20): the blob changes of a burst, sent by the service
 * (the intake of the Service Bus queue) to the fleet, and the result a worker reports for each.
 * JSON on the wire; every message is untrusted input and decoded strictly.
 *
 *   hsmfleet.work.<job>.ai<shard>       AutoImportBatch   (WORK stream; consumer `autoimport-<job>`)
 *   hsmfleet.result.<job>.autoimport    AutoImportResult  (RESULTS stream; message id `<batch>.r`)
 *
 * The shard of a change is a hash of its blob name (`autoImportShardOf`), so the changes of one
 * blob always travel on the same subject; within an item they are in `sequencer` order, and the
 * service never has two items in flight that touch the same blob (autoimport-dispatch.ts).
 */
import { createHash } from "node:crypto";
import { emptyAutoImportCounters } from "./counters.js";
import type { AutoImportCounters } from "./counters.js";
import type { BlobChangeKind } from "./blob-change.js";

/** One change as a worker applies it (the container is the job's, never the message's). */
export interface AutoImportChange {
  kind: BlobChangeKind;
  blob: string;
  destination?: string | undefined;
  recursive?: boolean | undefined;
  sequencer: string;
  eventTime: string;
}

export interface AutoImportBatch {
  jobId: string;
  batchId: string;
  /** Apply deletions (`--enable-deletions`). */
  enableDeletions: boolean;
  /** The changes, one blob's in sequencer order. */
  changes: AutoImportChange[];
}

/**
 * - `ok`: applied (its effect, or none, is in the counters);
 * - `stale`: not newer than the last change applied to its blob: nothing done;
 * - `failed`: threw (storage or file system); a later change of the same blob is `failed` too.
 */
export type AutoImportOutcome = "ok" | "stale" | "failed";
const OUTCOMES: readonly AutoImportOutcome[] = ["ok", "stale", "failed"];

export interface AutoImportResult {
  jobId: string;
  batchId: string;
  workerId: string;
  counters: AutoImportCounters;
  /** One per change of the batch, in its order. */
  outcomes: AutoImportOutcome[];
  /** Why, for each failed change (index into the batch's changes). */
  failures: { index: number; message: string }[];
}

export const autoImportSubjects = {
  batch: (jobId: string, shard: number): string => `hsmfleet.work.${jobId}.ai${shard}`,
  /** Every shard of the job (the consumer's filter). */
  batches: (jobId: string): string => `hsmfleet.work.${jobId}.*`,
  result: (jobId: string): string => `hsmfleet.result.${jobId}.autoimport`,
  consumer: (jobId: string): string => `autoimport-${jobId}`.slice(0, 255),
} as const;

/** The shard of a blob name among `shards` (stable: the first 4 bytes of its SHA-256). */
export const autoImportShardOf = (blob: string, shards: number): number =>
  createHash("sha256").update(blob).digest().readUInt32BE(0) % shards;

/** At most this many changes in one item. */
export const MAX_AUTOIMPORT_CHANGES = 10_000;
const KINDS: readonly BlobChangeKind[] = [
  "created",
  "deleted",
  "renamed",
  "directoryCreated",
  "directoryRenamed",
  "directoryDeleted",
];

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

export const encodeAutoImportBatch = (b: AutoImportBatch): Uint8Array =>
  enc({
    jobId: b.jobId,
    batchId: b.batchId,
    enableDeletions: b.enableDeletions,
    changes: b.changes.map((c) => ({
      kind: c.kind,
      blob: c.blob,
      sequencer: c.sequencer,
      eventTime: c.eventTime,
      ...(c.destination !== undefined ? { destination: c.destination } : {}),
      ...(c.recursive ? { recursive: true } : {}),
    })),
  });

export const encodeAutoImportResult = (r: AutoImportResult): Uint8Array => enc(r);

const parse = (data: Uint8Array, what: string): Record<string, unknown> => {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (err) {
    throw new Error(`${what}: not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Error(`${what}: not an object`);
  return v as Record<string, unknown>;
};

const str = (r: Record<string, unknown>, field: string, what: string, max = 4096): string => {
  const v = r[field];
  if (typeof v !== "string" || v.length > max)
    throw new Error(`${what}: field ${field} is missing or not a string of at most ${max}`);
  return v;
};

const list = (r: Record<string, unknown>, field: string, what: string): unknown[] => {
  const v = r[field];
  if (!Array.isArray(v) || v.length > MAX_AUTOIMPORT_CHANGES)
    throw new Error(`${what}: field ${field} is not a list of at most ${MAX_AUTOIMPORT_CHANGES}`);
  return v;
};

const obj = (v: unknown, what: string): Record<string, unknown> => {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Error(`${what} is not an object`);
  return v as Record<string, unknown>;
};

export const decodeAutoImportBatch = (data: Uint8Array): AutoImportBatch => {
  const what = "autoimport batch";
  const r = parse(data, what);
  if (typeof r["enableDeletions"] !== "boolean")
    throw new Error(`${what}: field enableDeletions is not a boolean`);
  return {
    jobId: str(r, "jobId", what, 64),
    batchId: str(r, "batchId", what, 512),
    enableDeletions: r["enableDeletions"],
    changes: list(r, "changes", what).map((v, i): AutoImportChange => {
      const at = `${what}: change ${i}`;
      const c = obj(v, at);
      if (!(KINDS as readonly unknown[]).includes(c["kind"]))
        throw new Error(`${at}: field kind is unknown`);
      const sequencer = str(c, "sequencer", at, 64);
      if (!/^[0-9A-Fa-f]{1,64}$/.test(sequencer))
        throw new Error(`${at}: field sequencer is not hexadecimal`);
      if (c["recursive"] !== undefined && typeof c["recursive"] !== "boolean")
        throw new Error(`${at}: field recursive is not a boolean`);
      return {
        kind: c["kind"] as BlobChangeKind,
        blob: str(c, "blob", at),
        sequencer,
        eventTime: str(c, "eventTime", at, 64),
        ...(c["destination"] !== undefined ? { destination: str(c, "destination", at) } : {}),
        ...(c["recursive"] === true ? { recursive: true } : {}),
      };
    }),
  };
};

export const decodeAutoImportResult = (data: Uint8Array): AutoImportResult => {
  const what = "autoimport result";
  const r = parse(data, what);
  const c = obj(r["counters"], `${what}: field counters`);
  const counters = emptyAutoImportCounters();
  for (const key of Object.keys(counters) as (keyof AutoImportCounters)[]) {
    const v = c[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw new Error(`${what}: counter ${key} is not a count`);
    counters[key] = v;
  }
  const outcomes = list(r, "outcomes", what).map((o, i) => {
    if (!(OUTCOMES as readonly unknown[]).includes(o))
      throw new Error(`${what}: outcome ${i} is unknown`);
    return o as AutoImportOutcome;
  });
  return {
    jobId: str(r, "jobId", what, 64),
    batchId: str(r, "batchId", what, 512),
    workerId: str(r, "workerId", what, 512),
    counters,
    outcomes,
    failures: list(r, "failures", what).map((f, i) => {
      const o = obj(f, `${what}: failure ${i}`);
      const index = o["index"];
      if (typeof index !== "number" || !Number.isSafeInteger(index) || index < 0)
        throw new Error(`${what}: failure ${i} has no index`);
      return { index, message: str(o, "message", what, 8192) };
    }),
  };
};
