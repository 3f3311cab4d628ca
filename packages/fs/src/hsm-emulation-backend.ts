/** HSM emulation backend: Lustre's HSM rules on an ordinary file system (see hsm-backend.ts). */
import { constants } from "node:fs";
import { lstat, open } from "node:fs/promises";

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
  displayPath,
  errorCode,
  errorMessage,
  transitionRefusal,
  HsmfleetError,
} from "@hsmfleet/core";
import type { HsmAttrs, HsmRequestName, HsmTransition } from "@hsmfleet/core";

import { checkPath } from "./errno.js";
import { HsmEmulation } from "./hsm-emulation.js";
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

const wrapFs = (err: unknown, operation: string, path: Buffer): unknown =>
  err instanceof HsmfleetError
    ? err
    : new FsOperationError(operation, displayPath(path), errorCode(err), errorMessage(err), err);

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
  override async state(absPath: Buffer): Promise<HsmAttrs | undefined> {
    const attrs = await super.state(absPath);
    if (!attrs || attrs.archiveVersion === 0n) return attrs;
    const flags = attrs.flags;
    if ((flags & HsmFlag.Archived) === 0 || (flags & HsmFlag.Dirty) !== 0) return attrs;
    const st = await this.statFile(absPath, "lstat");
    if (st.version === attrs.archiveVersion) return attrs;
    const dirty = { ...attrs, flags: (flags | HsmFlag.Dirty) & ~HsmFlag.Released };
    await this.setState(absPath, dirty);
    return dirty;
  }

  async fid(absPath: Buffer): Promise<string> {
    const [r] = await fidBatch([absPath]);
    if (r instanceof Error) throw r;
    return r!;
  }

  /** Native batches (fid-batch.ts): one threadpool job per 256 paths. */
  async fids(absPaths: Buffer[]): Promise<(string | Error)[]> {
    return fidBatch(absPaths);
  }

  /** Copytool side, phase 1: archive allowed? Sets EXISTS and returns what the copy must match. */
  async beginArchive(absPath: Buffer): Promise<DataSnapshot> {
    const attrs = await this.state(absPath);
    const t = this.check("archive", absPath, attrs, canArchive(attrs?.flags ?? 0));
    const st = await this.statFile(absPath, "archive");
    if (t !== (attrs?.flags ?? 0)) await this.write(absPath, attrs, t);
    return st;
  }

  /**
   * Copytool side, phase 2: the copy of `snapshot` is in the archive. If the file changed since
   * (size or mtime), it stays not archived (DIRTY if it was archived before) and this rejects.
   */
  async completeArchive(absPath: Buffer, archiveId: number, snapshot: DataSnapshot): Promise<void> {
    const st = await this.statFile(absPath, "archive");
    if (st.version !== snapshot.version || st.ino !== snapshot.ino) {
      throw new HsmRefusedError(
        "archive",
        displayPath(absPath),
        "changed",
        `archive of ${displayPath(absPath)} failed: the file changed while it was copied; archive it again`,
      );
    }
    const attrs = await super.state(absPath);
    await this.setState(absPath, {
      compat: attrs?.compat ?? HSM_COMPAT,
      flags: archiveDone(attrs?.flags ?? 0),
      archiveId: BigInt(archiveId),
      archiveVersion: snapshot.version,
    });
  }

  /** Request form with no data to move (tests, the lfs stand-in): begin + complete at once. */
  async archive(absPath: Buffer, options?: HsmRequestOptions): Promise<void> {
    const snapshot = await this.beginArchive(absPath);
    await this.completeArchive(absPath, options?.archiveId ?? 1, snapshot);
  }

  /**
   * Release: only ARCHIVED and clean files, not NORELEASE or LOST. The data is dropped (holes
   * punched, or truncate to 0 and back to the size: sparse, no blocks), mtime put back, and the new
   * data version recorded. Resolves true when released now, false when it already was. Runs as one
   * native threadpool job (release-batch.ts); releaseMany does many files at once.
   */
  async release(absPath: Buffer): Promise<boolean> {
    const [r] = await this.releaseMany([absPath]);
    if (r instanceof Error) throw r;
    return r!;
  }

  /**
   * Release of many files at once, one outcome per path in order: true released now, false
   * already released, or the error (HsmRefusedError saying why, FsOperationError naming the
   * operation and the cause). The same rules and checks as release, in native threadpool jobs.
   */
  async releaseMany(absPaths: readonly Buffer[]): Promise<(boolean | Error)[]> {
    const records = await releaseBatch(absPaths, this.xattr);
    const out = new Array<boolean | Error>(records.length);
    const inJs: Promise<void>[] = [];
    for (const [i, r] of records.entries()) {
      const path = absPaths[i]!;
      switch (r.outcome) {
        case "released":
          out[i] = true;
          break;
        case "already":
          out[i] = false;
          break;
        case "error":
          out[i] = r.error;
          break;
        case "refused": {
          const t = canRelease(r.attrs.flags);
          out[i] = t.ok
            ? new Error(`release of ${displayPath(path)}: refused natively but allowed`)
            : this.refusal("release", path, r.attrs, t);
          break;
        }
        case "fallback":
          inJs.push(
            this.releaseInJs(path).then(
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
  private async releaseInJs(absPath: Buffer): Promise<boolean> {
    const attrs = await this.state(absPath);
    const flags = this.check("release", absPath, attrs, canRelease(attrs?.flags ?? 0));
    if (attrs && (attrs.flags & HsmFlag.Released) !== 0) return false; // already released
    let op = "open";
    let handle;
    try {
      handle = await open(
        absPath,
        constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
    } catch (err) {
      throw wrapFs(err, op, absPath);
    }
    let version: bigint;
    try {
      op = "fstat";
      const st = await handle.stat({ bigint: true });
      if (!st.isFile())
        throw new FsOperationError(op, displayPath(absPath), "EINVAL", "not a regular file");
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
      throw wrapFs(err, op, absPath);
    } finally {
      await handle.close();
    }
    await this.setState(absPath, { ...attrs!, flags, archiveVersion: version });
    return true;
  }

  /** Copytool side: is a restore needed (RELEASED) and allowed (not LOST)? */
  async beginRestore(absPath: Buffer): Promise<boolean> {
    const attrs = await this.state(absPath);
    this.check("restore", absPath, attrs, canRestore(attrs?.flags ?? 0));
    return ((attrs?.flags ?? 0) & HsmFlag.Released) !== 0;
  }

  /** Copytool side: the data is back in the file: RELEASED cleared, data version recorded. */
  async completeRestore(absPath: Buffer): Promise<void> {
    const attrs = await super.state(absPath);
    const flags = this.check("restore", absPath, attrs, canRestore(attrs?.flags ?? 0));
    const st = await this.statFile(absPath, "restore");
    await this.write(absPath, attrs, flags, st.version);
  }

  /**
   * Request form with no data to move: clears RELEASED. The data is not brought back (nothing to
   * bring it from), so only tests and the lfs stand-in use it; the pipeline uses begin/complete.
   */
  async restore(absPath: Buffer): Promise<void> {
    if (await this.beginRestore(absPath)) await this.completeRestore(absPath);
  }

  /** Remove: the archive copy is gone (the caller deleted the blob): ARCHIVED/DIRTY/LOST cleared. */
  async remove(absPath: Buffer): Promise<void> {
    const attrs = await this.state(absPath);
    const flags = this.check("remove", absPath, attrs, canRemove(attrs?.flags ?? 0));
    if (attrs) await this.write(absPath, attrs, flags, 0n);
  }

  async cancel(absPath: Buffer): Promise<void> {
    // Nothing is queued inside the emulation itself: the pipeline cancels its own actions.
    await this.statFile(absPath, "cancel", false);
  }

  async requestMany(
    request: HsmRequestName,
    absPaths: Buffer[],
    options?: HsmRequestOptions,
  ): Promise<void> {
    for (const path of absPaths) {
      switch (request) {
        case "archive":
          await this.archive(path, options);
          break;
        case "release":
          await this.release(path);
          break;
        case "restore":
          await this.restore(path);
          break;
        case "remove":
          await this.remove(path);
          break;
        case "cancel":
          await this.cancel(path);
          break;
      }
    }
  }

  async requestRestore(absPaths: Buffer[]): Promise<void> {
    await this.requestMany("restore", absPaths);
  }

  async setFlags(absPath: Buffer, set: number, clear: number, archiveId?: number): Promise<void> {
    await this.statFile(absPath, "hsm_set");
    const attrs = await super.state(absPath);
    await this.setState(absPath, {
      compat: attrs?.compat ?? HSM_COMPAT,
      flags: ((attrs?.flags ?? 0) | set) & ~clear,
      archiveId: archiveId === undefined ? (attrs?.archiveId ?? 0n) : BigInt(archiveId),
      archiveVersion: attrs?.archiveVersion ?? 0n,
    });
  }

  private check(
    operation: string,
    absPath: Buffer,
    attrs: HsmAttrs | undefined,
    transition: HsmTransition,
  ): number {
    if (transition.ok) return transition.flags;
    throw this.refusal(operation, absPath, attrs, transition);
  }

  private refusal(
    operation: string,
    absPath: Buffer,
    attrs: HsmAttrs | undefined,
    transition: { reason: string; hint?: string | undefined },
  ): HsmRefusedError {
    const path = displayPath(absPath);
    return new HsmRefusedError(
      operation,
      path,
      transition.reason,
      transitionRefusal(operation, path, attrs, transition),
    );
  }

  private async write(
    absPath: Buffer,
    attrs: HsmAttrs | undefined,
    flags: number,
    version?: bigint,
  ): Promise<void> {
    await this.setState(absPath, {
      compat: attrs?.compat ?? HSM_COMPAT,
      flags,
      archiveId: attrs?.archiveId ?? 0n,
      archiveVersion: version ?? attrs?.archiveVersion ?? 0n,
    });
  }

  /** lstat (never follows a symlink); regular files only unless `fileOnly` is false. */
  private async statFile(
    absPath: Buffer,
    operation: string,
    fileOnly = true,
  ): Promise<DataSnapshot> {
    checkPath(absPath, operation);
    let st;
    try {
      st = await lstat(absPath, { bigint: true });
    } catch (err) {
      throw wrapFs(err, operation, absPath);
    }
    if (fileOnly && !st.isFile()) {
      throw new FsOperationError(operation, displayPath(absPath), "EINVAL", "not a regular file");
    }
    return {
      size: Number(st.size),
      mtimeNs: st.mtimeNs,
      version: dataVersion(st.size, st.mtimeNs),
      dev: st.dev,
      ino: st.ino,
    };
  }
}
