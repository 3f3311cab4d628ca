/**
 * A whole small file in ONE libuv threadpool job beneath a job root's fd (native/smallfile.c;
 * issue 17): open (or create exclusively) `rel` — no symlink followed anywhere, never leaving the
 * root, an existing entry must be a regular file — and then, through that descriptor only, in this
 * order: check the MD5 of `data` (a mismatch writes nothing), write it at 0 and cut the file to its
 * length (or cut it to `size`; a restore first records the mtime to keep: `pendingRestore`), owner,
 * permission bits, mtime = atime, the given xattrs, the import record "pending" → "done", the
 * emulated HSM state "exists archived", close. inspectFile is the read side (open, fstat, xattrs,
 * close). Both queue for the same native slots and go in batches under load.
 *
 * What this replaces on a download's last step: the open beneath, the reopen through /proc, the
 * write, the close, and a setattr and get/set-xattr job each reopening the path — ~10 calls in
 * as many threadpool jobs, each a round trip of the event loop.
 */
import type { BeneathStat, EntryAttributes, JobRoot } from "./job-root.js";
import { STAT_REC, parseStat } from "./beneath-path.js";
import { loadNative } from "./native.js";
import type { NativeBinding } from "./native.js";
import { pauseBeforeOpenArmed, pauseBeforeOpenForTest } from "./test-seam.js";

/** The emulated HSM state written last (hsm_attrs; the old compat and version are kept). */
export interface SmallFileHsmState {
  /** The HSM state xattr (e.g. trusted.hsm). */
  xattr: string;
  /** Flags set (e.g. ARCHIVED_FLAGS). */
  setFlags: number;
  /** Flags kept from the old value (e.g. NoRelease | NoArchive). */
  keepFlags: number;
  archiveId: number;
  /** hsm_compat when the file has no state yet. */
  compat: number;
}

export interface SmallFileJob {
  /** Create `rel` (O_CREAT | O_EXCL) with this mode; default: open an existing regular file. */
  createMode?: number;
  /** Written at offset 0, the file then cut to its length. */
  data?: Buffer;
  /** With `data`: 4 KiB blocks (file offsets) of zeros are not written (holes). Default false. */
  sparse?: boolean;
  /** With `data`: its MD5 must be this (16 bytes), else nothing is written (`md5Mismatch`). */
  expectMd5?: Uint8Array;
  /** With `data`: return its MD5 (computed on the pool thread). Default false. */
  hash?: boolean;
  /** Without `data`: cut (or extend) the file to this size. */
  size?: number;
  /** Owner, mode (omitted with `keepMode`) and mtime = atime. */
  attrs?: EntryAttributes;
  /** With `attrs`: the permission bits stay as they are. */
  keepMode?: boolean;
  /** Set in order after the attributes (with `xattrsFirst`: before the data or size). */
  xattrs?: Array<[string, Buffer]>;
  /**
   * The `xattrs` right after the open, before the MD5 check, the write and the cut (a fresh
   * stub: its archive reference and "pending" record, then its size, in one job). Default false.
   */
  xattrsFirst?: boolean;
  /** This import-record xattr, when it reads "pending X", becomes "done X". */
  importDone?: string;
  /** The emulated HSM state, last. */
  hsmState?: SmallFileHsmState;
  /** Return the fstat taken right after the open. */
  stat?: boolean;
  /** The file opened must be this inode (else FsOperationError ESTALE, nothing done). */
  sameInode?: { dev: bigint; ino: bigint };
  /** Without `attrs`: after the write, the atime and mtime the open found are put back. */
  keepTimes?: boolean;
  /**
   * With `keepTimes` (a restore): after the MD5 check and before the data is written, `xattr` is
   * set to `pending <jobId> <mtime ms>`, the mtime the open found (the worker's
   * formatPendingRestore record, which a redelivered item reads to put the mtime back); a later
   * `xattrs` pair of the same name replaces it once the file is done.
   */
  pendingRestore?: { xattr: string; jobId: string };
}

export interface SmallFileResult {
  /** The data's MD5 (`hash` or `expectMd5`). */
  md5: Buffer | undefined;
  /** `expectMd5` was not the data's MD5: nothing was written, nothing else done. */
  md5Mismatch: boolean;
  stat: BeneathStat | undefined;
}

const F = {
  create: 1,
  write: 2,
  sparse: 4,
  verify: 8,
  hash: 16,
  truncate: 32,
  chown: 64,
  chmod: 128,
  times: 256,
  importDone: 512,
  hsmArchived: 1024,
  stat: 2048,
  sameInode: 4096,
  keepTimes: 8192,
  pendingRestore: 16384,
  xattrsFirst: 32768,
} as const;

/** out: the MD5 (16) and the fstat record, then on input the 16 numbers (f64 LE) at NUMS_AT. */
const NUMS_AT = 16 + STAT_REC;
const NUMS = 16;
const OUT_BYTES = NUMS_AT + 8 * NUMS;

type NativeItem = Parameters<NativeBinding["smallFile"]>;
type InspectItem = Parameters<NativeBinding["inspectFile"]>;

/**
 * Native batches in flight at most (HSMFLEET_SMALL_FILE_SLOTS, default 8; each one threadpool
 * job). A job submitted while they are all busy waits and goes with the others that wait, in one
 * job (smallFiles, at most 256): under load the round trip of a job (the pool's wake-up, the
 * loop's completion callback) is paid per batch, not per file, and an idle moment sends a file
 * alone at once. Files of a batch are done one after the other: on a file system whose creates
 * wait for a server (Lustre's MDS), the slots are what runs them in parallel. inspectFile calls
 * queue the same way (inspectFiles batches), sharing the slots.
 *
 * Creates are the exception (issue 17): Linux's open(O_CREAT) holds the parent directory's inode
 * lock exclusively through the file system's create, whatever the file system, so creates in ONE
 * directory never run in parallel — threads that try wait on the lock (and on a busy machine spin
 * on it: 3 % of a 10,000-file import's CPU). The creates of a directory therefore go together, one
 * batch of that directory at a time, gathered for one turn of the event loop (setImmediate) so
 * that a burst of creates (the import walk's) makes one job, not one per file; creates in
 * different directories still use the slots in parallel.
 */
export const SMALL_FILE_SLOTS_ENV = "HSMFLEET_SMALL_FILE_SLOTS";
/** Read once: pump() asks for it for every job and every completion (an env read is ~0.5 µs). */
let slotCount: number | undefined;
const slots = (): number => {
  if (slotCount === undefined) {
    const n = Number(process.env[SMALL_FILE_SLOTS_ENV] ?? 8);
    slotCount = Number.isInteger(n) && n >= 1 ? n : 8;
  }
  return slotCount;
};
const BATCH_MAX = 256;
let inFlight = 0;
let pumpScheduled = false;

interface Waiting<I, R> {
  item: I;
  /** The directory a create works in (root fd and parent path); undefined: not a create. */
  key: string | undefined;
  resolve: (r: R) => void;
  reject: (err: unknown) => void;
}

/** Calls of one native function that wait for a slot, sent together as one batch job. */
class BatchLane<I, R> {
  /** Calls that are not creates, in order. */
  waiting: Array<Waiting<I, R>> = [];
  /** Creates by directory, directories in the order they first waited. */
  readonly creates = new Map<string, Array<Waiting<I, R>>>();
  /** Directories with a batch of creates in flight (see above: one at a time per directory). */
  readonly busy = new Set<string>();
  constructor(readonly send: (items: I[]) => Promise<Array<R | Error>>) {}

  submit(item: I, key?: string): Promise<R> {
    return new Promise((resolve, reject) => {
      const w = { item, key, resolve, reject };
      if (key === undefined) {
        this.waiting.push(w);
        pump();
        return;
      }
      const dir = this.creates.get(key);
      if (dir) dir.push(w);
      else this.creates.set(key, [w]);
      if (!pumpScheduled) {
        pumpScheduled = true;
        setImmediate(() => {
          pumpScheduled = false;
          pump();
        });
      }
    });
  }

  /**
   * Takes the next batch: the creates of the first directory without a batch in flight (up to
   * BATCH_MAX), else a share of the other calls; undefined when nothing can go now.
   */
  #take(max: number): Array<Waiting<I, R>> | undefined {
    for (const [key, dir] of this.creates) {
      if (this.busy.has(key)) continue;
      const batch = dir.length <= BATCH_MAX ? dir : dir.splice(0, BATCH_MAX);
      if (batch === dir) this.creates.delete(key);
      this.busy.add(key);
      return batch;
    }
    if (this.waiting.length === 0) return undefined;
    // Shared over the free slots, so a burst is spread over the pool's threads.
    const take = Math.min(BATCH_MAX, Math.ceil(this.waiting.length / (max - inFlight)));
    return this.waiting.splice(0, take);
  }

  /** Sends one batch (its share of the free slots); false when nothing can go now. */
  sendOne(max: number): boolean {
    const batch = this.#take(max);
    if (!batch) return false;
    const key = batch[0]!.key;
    inFlight++;
    const done = (): void => {
      inFlight--;
      if (key !== undefined) this.busy.delete(key);
      pump();
    };
    let sent: Promise<Array<R | Error>>;
    try {
      sent = this.send(batch.map((p) => p.item));
    } catch (err) {
      for (const p of batch) p.reject(err);
      done();
      return true;
    }
    sent.then(
      (results) => {
        results.forEach((r, i) =>
          r instanceof Error ? batch[i]!.reject(r) : batch[i]!.resolve(r),
        );
        done();
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
        done();
      },
    );
    return true;
  }
}

const fileLane = new BatchLane<NativeItem, number>((items) => loadNative().smallFiles(items));
const inspectLane = new BatchLane<InspectItem, number[]>((items) =>
  loadNative().inspectFiles(items),
);

function pump(): void {
  const max = slots();
  while (inFlight < max) {
    // Inspections first: each is the start of a restore whose GET waits for it.
    if (!inspectLane.sendOne(max) && !fileLane.sendOne(max)) return;
  }
}

/** The lane key of a create of `rel` beneath root fd `rootFd`: its parent directory. */
const createKey = (rootFd: number, rel: Buffer): string => {
  const slash = rel.lastIndexOf(0x2f);
  return `${rootFd}/${slash < 0 ? "" : rel.toString("latin1", 0, slash)}`;
};

/** The operation a failed call of the job is reported as (the others: the caller's). */
const STEP_OPERATION: Record<string, string> = {
  openat: "open",
  open: "open",
  fstat: "open",
  fchown: "setattr",
  fchmod: "setattr",
  futimens: "setattr",
  fsetxattr: "setxattr",
  fgetxattr: "getxattr",
};

/**
 * Runs `job` on `rel` beneath `root` in one threadpool job. Rejects like the JobRoot operations:
 * FsOperationError naming the path, the operation and the failing call — "open" (the open, or
 * not a regular file), "setattr" (owner, mode, times), "setxattr"/"getxattr" (xattrs), else
 * `operation` (write, truncate, MD5) —, and
 * UnsafePathError for a symlink in the way.
 */
export const smallFileJob = async (
  root: JobRoot,
  rel: Buffer,
  job: SmallFileJob,
  operation = "write",
): Promise<SmallFileResult> => {
  let flags = 0;
  if (job.createMode !== undefined) flags |= F.create;
  if (job.data !== undefined) {
    flags |= F.write;
    if (job.sparse) flags |= F.sparse;
    if (job.expectMd5 !== undefined) flags |= F.verify;
    if (job.hash) flags |= F.hash;
  } else if (job.size !== undefined) {
    flags |= F.truncate;
  }
  const a = job.attrs;
  let sec = 0;
  let nsec = 0;
  if (a) {
    flags |= F.chown | F.times | (job.keepMode ? 0 : F.chmod);
    sec = Math.floor(a.mtimeSec);
    nsec = Math.min(999_999_999, Math.round((a.mtimeSec - sec) * 1e9));
  }
  if (job.importDone) flags |= F.importDone;
  if (job.hsmState) flags |= F.hsmArchived;
  if (job.stat) flags |= F.stat;
  if (job.xattrsFirst) flags |= F.xattrsFirst;
  if (job.keepTimes && !a) flags |= F.keepTimes;
  const pr = job.pendingRestore;
  if (pr) {
    if (!(flags & F.keepTimes)) throw new TypeError("smallFileJob: pendingRestore needs keepTimes");
    if (pr.xattr === "" || pr.jobId === "" || /[\0\s]/.test(pr.jobId))
      throw new TypeError(
        "smallFileJob: pendingRestore needs an xattr and a job id without spaces",
      );
    flags |= F.pendingRestore;
  }
  const h = job.hsmState;
  const out = Buffer.allocUnsafe(OUT_BYTES);
  if (job.sameInode) {
    flags |= F.sameInode;
    out.writeBigUInt64LE(job.sameInode.dev, 0);
    out.writeBigUInt64LE(job.sameInode.ino, 8);
  }
  const nums = [
    0, // fallback, below
    flags,
    job.createMode ?? 0o600,
    a?.uid ?? 0,
    a?.gid ?? 0,
    (a?.mode ?? 0) & 0o7777,
    sec,
    nsec,
    job.size ?? 0,
    h?.archiveId ?? 0,
    h?.compat ?? 0,
    h?.setFlags ?? 0,
    h?.keepFlags ?? 0,
  ];
  for (let i = 1; i < NUMS; i++) out.writeDoubleLE(nums[i] ?? 0, NUMS_AT + 8 * i);
  const names: NativeItem[5] = pr
    ? [job.importDone ?? "", h?.xattr ?? "", pr.xattr, pr.jobId]
    : job.importDone || h
      ? [job.importDone ?? "", h?.xattr ?? ""]
      : null;
  const opOf = (syscall: string): string => STEP_OPERATION[syscall] ?? operation;
  if (pauseBeforeOpenArmed()) await pauseBeforeOpenForTest(rel);
  const r = await root.runBeneath(opOf, rel, (rootFd, fallback) => {
    out.writeDoubleLE(fallback ? 1 : 0, NUMS_AT);
    const item: NativeItem = [
      rootFd,
      rel,
      job.data ?? null,
      job.expectMd5 ?? null,
      out,
      names,
      job.xattrs ?? null,
    ];
    return fileLane.submit(item, flags & F.create ? createKey(rootFd, rel) : undefined);
  });
  const hashed = (flags & (F.hash | F.verify)) !== 0;
  return {
    md5: hashed ? Buffer.from(out.subarray(0, 16)) : undefined,
    md5Mismatch: r === 1,
    stat: job.stat ? parseStat(out.subarray(16)) : undefined,
  };
};

/** What inspectFile found. */
export interface InspectedFile {
  stat: BeneathStat;
  /** The value of each asked xattr, in order; undefined when absent. */
  xattrs: Array<Buffer | undefined>;
}

/** Xattrs one inspectFile reads at most, and the largest value it reads (bytes). */
export const INSPECT_MAX_XATTRS = 8;
export const INSPECT_MAX_VALUE = 4096;

/**
 * A regular file's fstat and up to 8 xattrs (≤ 4096 bytes each: a larger one fails with ERANGE)
 * in one threadpool job: opened read-only beneath `root` (nothing followed), closed again. Not a
 * regular file: FsOperationError EINVAL ("open"). Rejects like the JobRoot operations.
 */
export const inspectFile = async (
  root: JobRoot,
  rel: Buffer,
  names: string[],
  operation = "lstat",
): Promise<InspectedFile> => {
  if (names.length > INSPECT_MAX_XATTRS) {
    throw new RangeError(`inspectFile: at most ${INSPECT_MAX_XATTRS} xattrs, got ${names.length}`);
  }
  const out = Buffer.allocUnsafe(STAT_REC + INSPECT_MAX_VALUE * names.length);
  const opOf = (syscall: string): string => STEP_OPERATION[syscall] ?? operation;
  if (pauseBeforeOpenArmed()) await pauseBeforeOpenForTest(rel);
  const lens = await root.runBeneath(opOf, rel, (rootFd, fallback) =>
    inspectLane.submit([rootFd, rel, fallback, names, out]),
  );
  return {
    stat: parseStat(out),
    xattrs: lens.map((n, i) => {
      if (n < 0) return undefined;
      const at = STAT_REC + INSPECT_MAX_VALUE * i;
      return Buffer.from(out.subarray(at, at + n));
    }),
  };
};
