/**
 * HSM emulation backend: Lustre's HSM rules on an ordinary file system (see hsm-backend.ts). Every
 * file is reached beneath its job root's fd with no symlink followed (JobRoot).
 */
import { constants } from "node:fs";

import {
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  HsmRefusedError,
  archiveDone,
  canArchive,
  canRelease,
  canRemove,
  canRestore,
  errorCode,
  errorMessage,
  transitionRefusal,
  HsmfleetError,
} from "@hsmfleet/core";
import type { HsmAttrs, HsmRequestName, HsmTransition } from "@hsmfleet/core";

import { isRegular } from "./beneath-path.js";
import { HsmEmulation } from "./hsm-emulation.js";
import { HSM_FILE_OPERATIONS, nameOperationErrors, namedForOperation } from "./hsm-operation.js";
import type { JobRoot } from "./job-root.js";
import type { DataSnapshot, HsmBackend, HsmRequestOptions } from "./hsm-backend.js";
import { fidBatch } from "./fid-batch.js";
import { releaseBatch } from "./release-batch.js";

/**
 * The emulation's data version, kept in hsm_arch_ver (where Lustre's copytool keeps the file's
 * data_version at archive time): FNV-1a 64 over (size, mtime in ns), never 0 (0 = not recorded,
 * as importReleased and markArchived leave it). A write changes mtime or size, so a different
 * version at the next state read means the file is dirty.
 */
export const dataVersion = (size: bigint, mtimeNs: bigint): bigint => {
  const s = BigInt.asUintN(64, size);
  const t = BigInt.asUintN(64, mtimeNs);
  fnvInit();
  fnvMix(Number(s & 0xffff_ffffn), Number(s >> 32n));
  fnvMix(Number(t & 0xffff_ffffn), Number(t >> 32n));
  return fnvResult();
};

/**
 * Whether a file's (size, mtime) still has the data version `version` — `dataVersion(size,
 * mtime) === version` computed without BigInt arithmetic per byte (the policy walk asks it for
 * every archived file).
 */
export const dataVersionIs = (
  size: number,
  mtimeSec: number,
  mtimeNsec: number,
  version: bigint,
): boolean => {
  fnvInit();
  // size: a safe integer >= 0 (lstat), as two 32-bit halves.
  fnvMix(size >>> 0, Math.floor(size / TWO_32) >>> 0);
  // mtime in ns, 64-bit two's complement: sec * 1e9 + nsec with 16-bit limbs (exact in doubles).
  const secLo = mtimeSec >>> 0;
  const secHi = Math.floor(mtimeSec / TWO_32) | 0; // may be negative
  const a0 = (secLo & 0xffff) * 1e9 + mtimeNsec; // < 2^47
  const a1 = (secLo >>> 16) * 1e9; // < 2^46, times 2^16
  const lowSum = a0 + (a1 % 0x1_0000) * 0x1_0000; // < 2^48
  const lo = lowSum % TWO_32;
  const carry = Math.floor(lowSum / TWO_32) + Math.floor(a1 / 0x1_0000);
  // secHi * 1e9 only matters mod 2^32 here: split 1e9 so each product stays exact.
  const hi = (carry + Math.imul(secHi, 1e9)) >>> 0;
  fnvMix(lo, hi);
  const mine = fnvResult();
  return mine === version;
};

const TWO_32 = 0x1_0000_0000;
/** FNV-1a 64 state as two 32-bit halves (module scratch: one computation at a time). */
let hLo = 0;
let hHi = 0;
const fnvInit = (): void => {
  hLo = 0x84222325;
  hHi = 0xcbf29ce4;
};
/** Mixes the 8 little-endian bytes of (lo, hi), multiplying by the prime 2^40 + 0x1b3 per byte. */
const fnvMix = (lo: number, hi: number): void => {
  for (let i = 0; i < 8; i++) {
    const byte = i < 4 ? (lo >>> (8 * i)) & 0xff : (hi >>> (8 * (i - 4))) & 0xff;
    hLo = (hLo ^ byte) >>> 0;
    const p = hLo * 0x1b3; // < 2^41: exact
    const pLo = p % TWO_32;
    const pHi = Math.floor(p / TWO_32);
    hHi = (Math.imul(hHi, 0x1b3) + pHi + ((hLo << 8) >>> 0)) >>> 0;
    hLo = pLo;
  }
};
const fnvResult = (): bigint => {
  const v = (BigInt(hHi) << 32n) | BigInt(hLo);
  return v === 0n ? 1n : v;
};

const wrapFs = (err: unknown, operation: string, path: string): unknown =>
  err instanceof HsmfleetError
    ? err
    : new FsOperationError(operation, path, errorCode(err), errorMessage(err), err);

/** HSM emulation with Lustre's rules; keeps HsmEmulation's import/markArchived/state API. */
export class HsmEmulationBackend extends HsmEmulation implements HsmBackend {
  readonly kind = "hsm-emulation" as const;

  /**
   * State with write detection: an ARCHIVED, not RELEASED, not DIRTY file whose recorded data
   * version no longer matches its size and mtime gets DIRTY (persisted, as Lustre sets it on the
   * first write). A released stub that was written to (nothing intercepts writes here as Lustre's
   * implicit restore does) loses RELEASED and gets DIRTY: its contents are now local, and older in
   * the archive. Files with no recorded version (0: import, markArchived) are trusted as clean.
   */
  override async state(root: JobRoot, rel: Buffer): Promise<HsmAttrs | undefined> {
    const attrs = await super.state(root, rel);
    if (!attrs || attrs.archiveVersion === 0n) return attrs;
    const flags = attrs.flags;
    if ((flags & HsmFlag.Archived) === 0 || (flags & HsmFlag.Dirty) !== 0) return attrs;
    const st = await this.statFile(root, rel, "lstat");
    if (st.version === attrs.archiveVersion) return attrs;
    const dirty = { ...attrs, flags: (flags | HsmFlag.Dirty) & ~HsmFlag.Released };
    await this.setState(root, rel, dirty);
    return dirty;
  }

  async fid(root: JobRoot, rel: Buffer): Promise<string> {
    const [r] = await fidBatch(root, [rel]);
    if (r instanceof Error) throw r;
    return r!;
  }

  /** Native batches (fid-batch.ts): one threadpool job per 256 paths. */
  async fids(root: JobRoot, rels: readonly Buffer[]): Promise<(string | Error)[]> {
    return fidBatch(root, rels);
  }

  /** Copytool side, phase 1: archive allowed? Sets EXISTS and returns what the copy must match. */
  async beginArchive(root: JobRoot, rel: Buffer): Promise<DataSnapshot> {
    const attrs = await this.state(root, rel);
    const t = this.check("archive", root, rel, attrs, canArchive(attrs?.flags ?? 0));
    const st = await this.statFile(root, rel, "archive");
    if (t !== (attrs?.flags ?? 0)) await this.write(root, rel, attrs, t);
    return st;
  }

  /**
   * Copytool side, phase 2: the copy of `snapshot` is in the archive. If the file changed since
   * (size or mtime), it stays not archived (DIRTY if it was archived before) and this rejects.
   */
  async completeArchive(
    root: JobRoot,
    rel: Buffer,
    archiveId: number,
    snapshot: DataSnapshot,
  ): Promise<void> {
    const st = await this.statFile(root, rel, "archive");
    if (st.version !== snapshot.version || st.ino !== snapshot.ino || st.dev !== snapshot.dev) {
      const path = root.display(rel);
      throw new HsmRefusedError(
        "archive",
        path,
        "changed",
        `archive of ${path} failed: the file changed while it was copied; archive it again`,
      );
    }
    const attrs = await super.state(root, rel);
    await this.setState(root, rel, {
      compat: attrs?.compat ?? HSM_COMPAT,
      flags: archiveDone(attrs?.flags ?? 0),
      archiveId: BigInt(archiveId),
      archiveVersion: snapshot.version,
    });
  }

  /** Request form with no data to move (tests, the lfs stand-in): begin + complete at once. */
  async archive(root: JobRoot, rel: Buffer, options?: HsmRequestOptions): Promise<void> {
    const snapshot = await this.beginArchive(root, rel);
    await this.completeArchive(root, rel, options?.archiveId ?? 1, snapshot);
  }

  /**
   * Release: only ARCHIVED and clean files, not NORELEASE or LOST. The data is dropped (holes
   * punched, or truncate to 0 and back to the size: sparse, no blocks), mtime put back, and the new
   * data version recorded. Resolves true when released now, false when it already was. Runs as one
   * native threadpool job (release-batch.ts); releaseMany does many files at once.
   */
  async release(root: JobRoot, rel: Buffer): Promise<boolean> {
    const [r] = await this.releaseMany(root, [rel]);
    if (r instanceof Error) throw r;
    return r!;
  }

  /**
   * Release of many files at once, one outcome per path in order: true released now, false
   * already released, or the error (HsmRefusedError saying why, FsOperationError naming the
   * operation and the cause). The same rules and checks as release, in native threadpool jobs.
   */
  async releaseMany(root: JobRoot, rels: readonly Buffer[]): Promise<(boolean | Error)[]> {
    const records = await releaseBatch(root, rels, this.xattr);
    const out = new Array<boolean | Error>(records.length);
    const inJs: Promise<void>[] = [];
    for (const [i, r] of records.entries()) {
      const rel = rels[i]!;
      switch (r.outcome) {
        case "released":
          out[i] = true;
          break;
        case "already":
          out[i] = false;
          break;
        case "error":
          out[i] = namedForOperation("release", root, rel, r.error) as Error;
          break;
        case "refused": {
          const t = canRelease(r.attrs.flags);
          out[i] = t.ok
            ? new Error(`release of ${root.display(rel)}: refused natively but allowed`)
            : this.refusal("release", root, rel, r.attrs, t);
          break;
        }
        case "fallback":
          inJs.push(
            this.releaseInJs(root, rel).then(
              (released) => void (out[i] = released),
              (err: unknown) =>
                void (out[i] = err instanceof Error ? err : new Error(errorMessage(err))),
            ),
          );
          break;
      }
    }
    await Promise.all(inJs);
    return out;
  }

  /** Release in JS, for what the native job leaves to it (no or odd hsm_attrs). */
  private async releaseInJs(root: JobRoot, rel: Buffer): Promise<boolean> {
    const attrs = await this.state(root, rel);
    const flags = this.check("release", root, rel, attrs, canRelease(attrs?.flags ?? 0));
    if (attrs && (attrs.flags & HsmFlag.Released) !== 0) return false; // already released
    const path = root.display(rel);
    const { handle, stat } = await root.openFile(rel, constants.O_WRONLY | constants.O_NONBLOCK);
    let op = "fstat";
    let version: bigint;
    try {
      if (!isRegular(stat)) throw new FsOperationError(op, path, "EINVAL", "not a regular file");
      const st = await handle.stat({ bigint: true });
      op = "ftruncate";
      await handle.truncate(0);
      await handle.truncate(Number(st.size));
      op = "futimes";
      await handle.utimes(
        new Date(Number(st.atimeNs / 1_000_000n)),
        Number(st.mtimeNs / 1000n) / 1e6,
      );
      const after = await handle.stat({ bigint: true });
      version = dataVersion(after.size, after.mtimeNs);
    } catch (err) {
      throw wrapFs(err, op, path);
    } finally {
      await handle.close();
    }
    await this.setState(root, rel, { ...attrs!, flags, archiveVersion: version });
    return true;
  }

  /** Copytool side: is a restore needed (RELEASED) and allowed (not LOST)? */
  async beginRestore(root: JobRoot, rel: Buffer): Promise<boolean> {
    const attrs = await this.state(root, rel);
    this.check("restore", root, rel, attrs, canRestore(attrs?.flags ?? 0));
    return ((attrs?.flags ?? 0) & HsmFlag.Released) !== 0;
  }

  /** Copytool side: the data is back in the file: RELEASED cleared, data version recorded. */
  async completeRestore(root: JobRoot, rel: Buffer): Promise<void> {
    const attrs = await super.state(root, rel);
    const flags = this.check("restore", root, rel, attrs, canRestore(attrs?.flags ?? 0));
    const st = await this.statFile(root, rel, "restore");
    await this.write(root, rel, attrs, flags, st.version);
  }

  /**
   * Request form with no data to move: clears RELEASED. The data is not brought back (nothing to
   * bring it from), so only tests and the lfs stand-in use it; the pipeline uses begin/complete.
   */
  async restore(root: JobRoot, rel: Buffer): Promise<void> {
    if (await this.beginRestore(root, rel)) await this.completeRestore(root, rel);
  }

  /** Remove: the archive copy is gone (the caller deleted the blob): ARCHIVED/DIRTY/LOST cleared. */
  async remove(root: JobRoot, rel: Buffer): Promise<void> {
    const attrs = await this.state(root, rel);
    const flags = this.check("remove", root, rel, attrs, canRemove(attrs?.flags ?? 0));
    if (attrs) await this.write(root, rel, attrs, flags, 0n);
  }

  async cancel(root: JobRoot, rel: Buffer): Promise<void> {
    // Nothing is queued inside the emulation itself: the pipeline cancels its own actions.
    await this.statFile(root, rel, "cancel", false);
  }

  async requestMany(
    request: HsmRequestName,
    root: JobRoot,
    rels: readonly Buffer[],
    options?: HsmRequestOptions,
  ): Promise<void> {
    for (const rel of rels) {
      switch (request) {
        case "archive":
          await this.archive(root, rel, options);
          break;
        case "release":
          await this.release(root, rel);
          break;
        case "restore":
          await this.restore(root, rel);
          break;
        case "remove":
          await this.remove(root, rel);
          break;
        case "cancel":
          await this.cancel(root, rel);
          break;
      }
    }
  }

  async requestRestore(root: JobRoot, rels: readonly Buffer[]): Promise<void> {
    await this.requestMany("restore", root, rels);
  }

  async setFlags(
    root: JobRoot,
    rel: Buffer,
    set: number,
    clear: number,
    archiveId?: number,
  ): Promise<void> {
    await this.statFile(root, rel, "hsm_set");
    const attrs = await super.state(root, rel);
    await this.setState(root, rel, {
      compat: attrs?.compat ?? HSM_COMPAT,
      flags: ((attrs?.flags ?? 0) | set) & ~clear,
      archiveId: archiveId === undefined ? (attrs?.archiveId ?? 0n) : BigInt(archiveId),
      archiveVersion: attrs?.archiveVersion ?? 0n,
    });
  }

  private check(
    operation: string,
    root: JobRoot,
    rel: Buffer,
    attrs: HsmAttrs | undefined,
    transition: HsmTransition,
  ): number {
    if (transition.ok) return transition.flags;
    throw this.refusal(operation, root, rel, attrs, transition);
  }

  private refusal(
    operation: string,
    root: JobRoot,
    rel: Buffer,
    attrs: HsmAttrs | undefined,
    transition: { reason: string; hint?: string | undefined },
  ): HsmRefusedError {
    const path = root.display(rel);
    return new HsmRefusedError(
      operation,
      path,
      transition.reason,
      transitionRefusal(operation, path, attrs, transition),
    );
  }

  private async write(
    root: JobRoot,
    rel: Buffer,
    attrs: HsmAttrs | undefined,
    flags: number,
    version?: bigint,
  ): Promise<void> {
    await this.setState(root, rel, {
      compat: attrs?.compat ?? HSM_COMPAT,
      flags,
      archiveId: attrs?.archiveId ?? 0n,
      archiveVersion: version ?? attrs?.archiveVersion ?? 0n,
    });
  }

  /**
   * lstat beneath the root (never follows a symlink, anywhere on the way); regular files only
   * unless `fileOnly` is false.
   */
  private async statFile(
    root: JobRoot,
    rel: Buffer,
    operation: string,
    fileOnly = true,
  ): Promise<DataSnapshot> {
    const st = await root.lstat(rel);
    if (st === undefined) {
      throw new FsOperationError(
        operation,
        root.display(rel),
        "ENOENT",
        "no such file or directory",
      );
    }
    if (fileOnly && !isRegular(st)) {
      throw new FsOperationError(operation, root.display(rel), "EINVAL", "not a regular file");
    }
    const mtimeNs = BigInt(st.mtimeSec) * 1_000_000_000n + BigInt(st.mtimeNsec);
    return {
      size: st.size,
      mtimeNs,
      version: dataVersion(BigInt(st.size), mtimeNs),
      dev: st.dev,
      ino: st.ino,
    };
  }
}

nameOperationErrors(HsmEmulationBackend.prototype, {
  ...HSM_FILE_OPERATIONS,
  beginArchive: "archive",
  completeArchive: "archive",
  beginRestore: "restore",
  completeRestore: "restore",
});
