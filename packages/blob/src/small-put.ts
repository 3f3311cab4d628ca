/**
 * The small-file path of uploadFile: a file the walk listed at up to SMALL_FILE_MAX_BYTES (and no
 * more than one block) is read by ONE native threadpool job (@hsmfleet/fs readSmallFile: open with
 * O_NOFOLLOW, fstat, read, fstat, MD5, close) and sent in one Put Blob. Change detection is the
 * same as the general path: the size and mtime must match the walk's, and size, mtime and ctime
 * must not change between the fstat before and the one after the read (a short read counts as a
 * change); a changed file is a FileChangedError and nothing is uploaded. When the native addon
 * cannot be loaded, uploadFile takes its general path (plain descriptors, same checks).
 */
import { createHash } from "node:crypto";
import { getSystemErrorMap } from "node:util";
import { displayPath } from "@hsmfleet/core";
import type { SmallFileStat, readSmallFile as ReadSmallFile } from "@hsmfleet/fs";
import type { BlobContainer } from "./container.js";
import {
  BlobOperationError,
  FileChangedError,
  abortCause,
  fsFailure,
  type BlobOperation,
  type BlobOperationSubject,
  type FileSnapshot,
} from "./errors.js";
import type { MemoryBudget } from "./memory-budget.js";
import { checkIdentity } from "./source-identity.js";
import type { SourceBeneath, SourceIdentity } from "./source-identity.js";

/** Files up to this size (listed size) take the one-job path. */
export const SMALL_FILE_MAX_BYTES = 256 * 1024;

export interface SmallPutOptions {
  metadata: Record<string, string>;
  expected: SourceIdentity;
  /** Read `beneath.rel` beneath the job root fd (no symlink followed anywhere). */
  beneath?: SourceBeneath | undefined;
  budget: MemoryBudget;
  abortSignal?: AbortSignal | undefined;
  onProgress?: ((bytes: number) => void) | undefined;
}

export interface SmallPutResult {
  bytes: number;
  md5: Buffer;
  blocks: 0;
}

type Reader = typeof ReadSmallFile;
/** undefined: not loaded yet; null: unavailable (addon missing), use the general path. */
let reader: Reader | null | undefined;

const loadReader = async (): Promise<Reader | null> => {
  if (reader !== undefined) return reader;
  try {
    const fs = await import("@hsmfleet/fs");
    fs.loadNative(); // throws DependencyError when the addon is not built
    reader = fs.readSmallFile;
  } catch {
    reader = null;
  }
  return reader;
};

const snapshotOf = (s: SmallFileStat): FileSnapshot & { ctimeNs: bigint } => ({
  size: s.size,
  mtimeNs: BigInt(s.mtimeSec) * 1_000_000_000n + BigInt(s.mtimeNsec),
  ctimeNs: BigInt(s.ctimeSec) * 1_000_000_000n + BigInt(s.ctimeNsec),
});

const sameStat = (a: SmallFileStat, b: SmallFileStat): boolean =>
  a.size === b.size &&
  a.mtimeSec === b.mtimeSec &&
  a.mtimeNsec === b.mtimeNsec &&
  a.ctimeSec === b.ctimeSec &&
  a.ctimeNsec === b.ctimeNsec;

const OPERATION: Record<string, BlobOperation> = {
  open: "open",
  fstat: "stat",
  read: "read",
  md5: "read",
};

/**
 * Uploads a small file in one read job and one Put Blob; undefined when the native reader is
 * unavailable (the caller takes the general path). Errors as uploadFile's.
 */
export const putSmallFile = async (
  container: BlobContainer,
  localPath: Buffer,
  name: string,
  options: SmallPutOptions,
): Promise<SmallPutResult | undefined> => {
  const read = reader ?? (await loadReader());
  if (read === null) return undefined;
  const { expected, budget } = options;
  const signal = options.abortSignal;
  let shown: string | undefined;
  const where = (): BlobOperationSubject => ({
    path: (shown ??= displayPath(localPath)),
    blobName: name,
    container: container.name,
  });
  const size = expected.size;
  try {
    await budget.acquire(size, signal);
  } catch (err) {
    throw new BlobOperationError("read", where(), signal?.aborted ? abortCause(signal) : err);
  }
  try {
    const beneath = options.beneath;
    const r = beneath
      ? await read(beneath.rel, size, { md5: true, rootFd: beneath.rootFd })
      : await read(localPath, size, { md5: true });
    if (!r.ok) {
      const [, text] = getSystemErrorMap().get(-r.errno) ?? [r.code, "failed"];
      const err = Object.assign(
        new Error(
          r.code === "ELOOP" && r.syscall === "open"
            ? beneath
              ? "ELOOP: a component of its path is a symbolic link now (not followed)"
              : "ELOOP: is a symbolic link now (not followed)"
            : `${r.code}: ${text}`,
        ),
        { code: r.code, errno: -r.errno, syscall: r.syscall },
      );
      throw fsFailure(OPERATION[r.syscall] ?? "read", where(), err);
    }
    checkIdentity(where(), expected, r.dev, r.ino);
    if (!r.regular) {
      throw new BlobOperationError("stat", where(), undefined, {
        detail: "not a regular file",
        retryable: false,
      });
    }
    const before = r.before;
    if (
      before.size !== expected.size ||
      before.mtimeSec !== expected.mtimeSec ||
      before.mtimeNsec !== expected.mtimeNsec
    ) {
      const listed: FileSnapshot = {
        size: expected.size,
        mtimeNs: BigInt(expected.mtimeSec) * 1_000_000_000n + BigInt(expected.mtimeNsec),
      };
      throw new FileChangedError(where().path!, listed, snapshotOf(before), "listed");
    }
    if (r.bytesRead < size || !sameStat(before, r.after)) {
      throw new FileChangedError(where().path!, snapshotOf(before), snapshotOf(r.after), "upload");
    }
    const md5 = r.md5 ?? createHash("md5").update(r.data).digest();
    if (signal?.aborted) throw new BlobOperationError("put-blob", where(), abortCause(signal));
    try {
      await container.putBlob(name, r.data, {
        metadata: options.metadata,
        contentMD5: md5,
        ...(signal ? { abortSignal: signal } : {}),
      });
    } catch (err) {
      // The local path (displayPath) is made only for failures.
      if (err instanceof BlobOperationError && err.path === undefined && err.cause !== undefined) {
        throw new BlobOperationError("put-blob", where(), err.cause);
      }
      throw err;
    }
    options.onProgress?.(size);
    return { bytes: size, md5, blocks: 0 };
  } finally {
    budget.release(size);
  }
};
