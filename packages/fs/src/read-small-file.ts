/**
 * readSmallFile: a whole small file in ONE threadpool job (native/readfile.c): open with
 * O_NOFOLLOW, fstat, read, fstat again, MD5, close. The export's Put Blob path uses it so a 4 KiB
 * file costs one round trip to the threadpool instead of five, and no MD5 on the JS thread. The
 * caller compares the two fstats (and the walk's) to refuse a file that changed while read.
 *
 * Reads asked for in the same turn of the event loop are coalesced: up to READ_BATCH_MAX files
 * go to the threadpool as one job (readSmallFiles), read one after the other by one thread. On a
 * busy machine each threadpool job costs a thread wake-up (futex, context switch) that is worth
 * more than reading a cached 4 KiB file; the cap keeps parallelism for file systems where an open
 * is a network round trip (Lustre: an MDS RPC), where many jobs in flight matter more.
 */
import { getSystemErrorName } from "node:util";
import { openat2Disabled } from "./job-root.js";
import { loadNative } from "./native.js";
import { pauseBeforeOpenForTest } from "./test-seam.js";

/** Header bytes in front of the data in the buffer handed to the addon. */
const HEADER = 144;

/** Stat fields compared for change detection (seconds and nanoseconds as numbers). */
export interface SmallFileStat {
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
}

export type SmallFileRead =
  | {
      ok: true;
      /** The entry is a regular file. False: nothing was read (e.g. a directory or FIFO now). */
      regular: boolean;
      /** True when the file was larger than the capacity: nothing was read. */
      tooLarge: boolean;
      /** Bytes read (fewer than before.size when the file shrank while read). */
      bytesRead: number;
      before: SmallFileStat;
      /** Second fstat, after the read (equal to before when nothing was read). */
      after: SmallFileStat;
      /** The bytes read (a view of the job's buffer). */
      data: Buffer;
      /** MD5 of `data`, when asked for and the read was complete. */
      md5: Buffer | undefined;
      /** Device and inode of the file opened (compare with what the walk saw). */
      dev: bigint;
      ino: bigint;
    }
  | {
      ok: false;
      /** errno code name (ENOENT, ELOOP, EACCES, …). */
      code: string;
      errno: number;
      syscall: "open" | "fstat" | "read" | "md5";
    };

export interface ReadSmallFileOptions {
  /** Compute the MD5 of the data in the same job. Default false. */
  md5?: boolean;
  /**
   * A job root directory fd (JobRoot.fd): `path` is then relative to it and opened beneath it
   * with no symlink followed anywhere (native/beneath.c). Default: `path` is absolute and only
   * its last component is opened O_NOFOLLOW.
   */
  rootFd?: number;
}

const SYSCALLS = ["", "open", "fstat", "read", "md5"] as const;

/** Files per coalesced threadpool job at most. */
export const READ_BATCH_MAX = 4;

interface QueuedRead {
  path: Buffer;
  out: Buffer;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Reads waiting for the end of this turn of the event loop, by flags and root fd. */
const queued = new Map<string, QueuedRead[]>();
let flushScheduled = false;

const flush = (): void => {
  flushScheduled = false;
  const native = loadNative();
  for (const [key, reads] of queued) {
    const [flags, rootFd] = key.split(":").map(Number) as [number, number];
    for (let i = 0; i < reads.length; i += READ_BATCH_MAX) {
      const group = reads.slice(i, i + READ_BATCH_MAX);
      let job: Promise<void>;
      try {
        job =
          rootFd >= 0
            ? native.readSmallFilesBeneath(
                rootFd,
                group.map((r) => r.path),
                group.map((r) => r.out),
                flags,
              )
            : group.length === 1
              ? native.readSmallFile(group[0]!.path, group[0]!.out, flags)
              : native.readSmallFiles(
                  group.map((r) => r.path),
                  group.map((r) => r.out),
                  flags,
                );
      } catch (err) {
        job = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      job.then(
        () => {
          for (const r of group) r.resolve();
        },
        (err: unknown) => {
          for (const r of group) r.reject(err);
        },
      );
    }
  }
  queued.clear();
};

/** Queues one read for the coalesced flush (see the module comment). */
const readQueued = (path: Buffer, out: Buffer, flags: number, rootFd: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const key = `${flags}:${rootFd}`;
    let list = queued.get(key);
    if (list === undefined) queued.set(key, (list = []));
    list.push({ path, out, resolve, reject });
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  });

const statAt = (h: Buffer, slot: number): SmallFileStat => ({
  size: h.readDoubleLE(slot * 8),
  mtimeSec: h.readDoubleLE((slot + 1) * 8),
  mtimeNsec: h.readDoubleLE((slot + 2) * 8),
  ctimeSec: h.readDoubleLE((slot + 3) * 8),
  ctimeNsec: h.readDoubleLE((slot + 4) * 8),
});

/**
 * Reads the file at `path` (raw bytes; a symlink is refused with ELOOP) when it is regular and at
 * most `capacity` bytes. Errors of the system calls come back as `{ ok: false }` (not thrown);
 * a missing or unusable addon throws DependencyError (see loadNative).
 */
export const readSmallFile = async (
  path: Buffer,
  capacity: number,
  options: ReadSmallFileOptions = {},
): Promise<SmallFileRead> => {
  if (!Number.isSafeInteger(capacity) || capacity < 0) {
    throw new RangeError(`readSmallFile capacity must be an integer ≥ 0, got ${capacity}`);
  }
  if (path.length === 0 || path.includes(0)) {
    throw new TypeError("readSmallFile: path must be non-empty and free of NUL bytes");
  }
  loadNative(); // throws DependencyError here rather than in the flush
  const rootFd = options.rootFd ?? -1;
  if (rootFd >= 0) await pauseBeforeOpenForTest(path);
  const buf = Buffer.allocUnsafe(HEADER + capacity);
  const flags = (options.md5 === true ? 1 : 0) | (rootFd >= 0 && openat2Disabled() ? 2 : 0);
  await readQueued(path, buf, flags, rootFd);
  const errno = buf.readDoubleLE(0);
  if (errno !== 0) {
    const call = SYSCALLS[buf.readDoubleLE(8)] || "open";
    let code: string;
    try {
      code = getSystemErrorName(-errno);
    } catch {
      code = `errno ${errno}`;
    }
    return { ok: false, code, errno, syscall: call };
  }
  const type = buf.readDoubleLE(16);
  const before = statAt(buf, 4);
  const regular = type === 0o100000;
  const bytesRead = buf.readDoubleLE(24);
  const complete = regular && before.size <= capacity && bytesRead === before.size;
  return {
    ok: true,
    regular,
    tooLarge: regular && before.size > capacity,
    bytesRead,
    before,
    after: statAt(buf, 9),
    data: buf.subarray(HEADER, HEADER + bytesRead),
    md5: options.md5 === true && complete ? buf.subarray(112, 128) : undefined,
    dev: buf.readBigUInt64LE(128),
    ino: buf.readBigUInt64LE(136),
  };
};
