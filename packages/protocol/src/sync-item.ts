/**
 * Work items of `hsmfleet sync` (issue 18): a batch of coalesced operations on paths of the tree,
 * applied by any worker, and the result it reports. JSON on the wire (paths as base64: file names
 * are raw bytes); every message is untrusted input and decoded strictly.
 *
 *   hsmfleet.work.<job>.sync     SyncBatch   (WORK stream; consumer `sync-<job>`)
 *   hsmfleet.result.<job>.sync   SyncResult  (RESULTS stream; message id `<batch>.r`)
 */

/**
 * - `upload`: make the blob match the entry as it is now (file data once settled, directory stub,
 *   symlink blob); nothing when the entry is gone.
 * - `meta`: the entry's attributes changed: update the blob's metadata in place (uploads instead
 *   when the blob's size or modtime differ).
 * - `delete`: the entry went away: delete its blob (a directory: its stub and every blob under
 *   it), unless the path exists again.
 * - `move`: a rename: server-side copy of the blob at `from` to `path`, then delete `from`.
 *   For a directory the coordinator lists the blobs under the old prefix and sends one `move`
 *   per blob (its `from` is the old path of that entry).
 * - `reconcile`: compare directory `path` (empty: the root) with the blobs at its level, as
 *   export's incremental compare does, and make them match: missing or changed entries
 *   uploaded, changed attributes updated, blobs with no entry deleted unless `keep`.
 */
export type SyncOpKind = "upload" | "meta" | "delete" | "move" | "reconcile";
export const SYNC_OP_KINDS: readonly SyncOpKind[] = [
  "upload",
  "meta",
  "delete",
  "move",
  "reconcile",
];

export interface SyncOp {
  op: SyncOpKind;
  /** Path relative to the job root (raw bytes). */
  path: Buffer;
  /** `move`: the former path. */
  from?: Buffer | undefined;
  /** `delete`: the entry was a directory (its whole prefix goes). */
  dir?: boolean | undefined;
  /** `reconcile`: never delete blobs (`--no-delete`). */
  keep?: boolean | undefined;
}

export interface SyncBatch {
  jobId: string;
  batchId: string;
  ops: SyncOp[];
}

export interface SyncCounters {
  filesExported: number;
  bytesExported: number;
  directoriesExported: number;
  symlinksExported: number;
  metadataUpdates: number;
  renames: number;
  deletions: number;
  failures: number;
}

export const emptySyncCounters = (): SyncCounters => ({
  filesExported: 0,
  bytesExported: 0,
  directoriesExported: 0,
  symlinksExported: 0,
  metadataUpdates: 0,
  renames: 0,
  deletions: 0,
  failures: 0,
});

export interface SyncFailure {
  path: string;
  operation: string;
  message: string;
}

export interface SyncResult {
  jobId: string;
  batchId: string;
  workerId: string;
  counters: SyncCounters;
  /** Paths whose file changed while it was read (not committed): uploaded again once settled. */
  requeue: Buffer[];
  failures: SyncFailure[];
}

export const syncSubjects = {
  batch: (jobId: string): string => `hsmfleet.work.${jobId}.sync`,
  result: (jobId: string): string => `hsmfleet.result.${jobId}.sync`,
  consumer: (jobId: string): string => `sync-${jobId}`,
} as const;

const b64 = (b: Buffer): string => b.toString("base64");
const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

export const encodeSyncBatch = (batch: SyncBatch): Uint8Array =>
  enc({
    jobId: batch.jobId,
    batchId: batch.batchId,
    ops: batch.ops.map((o) => ({
      op: o.op,
      path: b64(o.path),
      ...(o.from ? { from: b64(o.from) } : {}),
      ...(o.dir ? { dir: true } : {}),
      ...(o.keep ? { keep: true } : {}),
    })),
  });

export const encodeSyncResult = (result: SyncResult): Uint8Array =>
  enc({ ...result, requeue: result.requeue.map(b64) });

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

const str = (r: Record<string, unknown>, field: string, what: string): string => {
  const v = r[field];
  if (typeof v !== "string" || v.length > 4096)
    throw new Error(`${what}: field ${field} is missing or not a string`);
  return v;
};

const bytes = (v: unknown, field: string, what: string): Buffer => {
  if (typeof v !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length > 8192)
    throw new Error(`${what}: field ${field} is not base64`);
  return Buffer.from(v, "base64");
};

/** At most this many operations in one batch. */
export const MAX_SYNC_OPS = 10_000;

export const decodeSyncBatch = (data: Uint8Array): SyncBatch => {
  const what = "sync batch";
  const r = parse(data, what);
  const ops = r["ops"];
  if (!Array.isArray(ops) || ops.length > MAX_SYNC_OPS)
    throw new Error(`${what}: field ops is not a list`);
  return {
    jobId: str(r, "jobId", what),
    batchId: str(r, "batchId", what),
    ops: ops.map((o: unknown, i): SyncOp => {
      if (typeof o !== "object" || o === null) throw new Error(`${what}: op ${i} is not an object`);
      const op = o as Record<string, unknown>;
      if (!(SYNC_OP_KINDS as readonly unknown[]).includes(op["op"]))
        throw new Error(`${what}: op ${i} has an unknown kind`);
      for (const flag of ["dir", "keep"])
        if (op[flag] !== undefined && typeof op[flag] !== "boolean")
          throw new Error(`${what}: op ${i} field ${flag} is not a boolean`);
      return {
        op: op["op"] as SyncOpKind,
        path: bytes(op["path"], `ops[${i}].path`, what),
        ...(op["from"] !== undefined ? { from: bytes(op["from"], `ops[${i}].from`, what) } : {}),
        ...(op["dir"] === true ? { dir: true } : {}),
        ...(op["keep"] === true ? { keep: true } : {}),
      };
    }),
  };
};

export const decodeSyncResult = (data: Uint8Array): SyncResult => {
  const what = "sync result";
  const r = parse(data, what);
  const c = r["counters"];
  if (typeof c !== "object" || c === null) throw new Error(`${what}: field counters is missing`);
  const counters = emptySyncCounters();
  for (const key of Object.keys(counters) as (keyof SyncCounters)[]) {
    const v = (c as Record<string, unknown>)[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw new Error(`${what}: counter ${key} is not a count`);
    counters[key] = v;
  }
  const requeue = r["requeue"];
  const failures = r["failures"];
  if (!Array.isArray(requeue) || !Array.isArray(failures))
    throw new Error(`${what}: lists missing`);
  return {
    jobId: str(r, "jobId", what),
    batchId: str(r, "batchId", what),
    workerId: str(r, "workerId", what),
    counters,
    requeue: requeue.map((p, i) => bytes(p, `requeue[${i}]`, what)),
    failures: failures.slice(0, 1000).map((f: unknown) => {
      const o = (typeof f === "object" && f !== null ? f : {}) as Record<string, unknown>;
      return {
        path: str(o, "path", what),
        operation: str(o, "operation", what),
        message: str(o, "message", what),
      };
    }),
  };
};
