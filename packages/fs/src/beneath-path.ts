/**
 * The pieces of JobRoot (job-root.ts) that need no root: the openat2 switch, the syntactic check of
 * a relative path, the stat record the native addon fills, and the error of an unsafe path.
 */
import { HsmfleetError, displayPath } from "@hsmfleet/core";

import { loadNative } from "./native.js";

const SLASH = 0x2f;
const DOT = 0x2e;

export const STAT_REC = 64;
const S_IFMT = 0o170000;

/** Variable that forces the openat fallback walk (tests; kernels whose openat2 misbehaves). */
export const NO_OPENAT2_ENV = "HSMFLEET_FS_NO_OPENAT2";
let forceFallback = process.env[NO_OPENAT2_ENV] === "1";

/** Forces (true) or stops forcing (false) the openat walk instead of openat2. */
export const setOpenat2Disabled = (disabled: boolean): void => {
  forceFallback = disabled;
};

/** Whether path resolution uses openat2 (false: the kernel lacks it, or it is disabled). */
export const usesOpenat2 = (): boolean => !forceFallback && loadNative().beneathProbe();

/** Whether the openat fallback is forced (setOpenat2Disabled / HSMFLEET_FS_NO_OPENAT2). */
export const openat2Disabled = (): boolean => forceFallback;

/**
 * A relative path that is malformed or would leave the root / go through a symlink. `path` is the
 * display form of the offending path.
 */
export class UnsafePathError extends HsmfleetError {
  readonly path: string;
  readonly operation: string;
  readonly code = "UnsafePath";
  constructor(path: string, detail: string, operation = "resolve") {
    super(`unsafe path ${path}: ${detail}`);
    this.name = "UnsafePathError";
    this.path = path;
    this.operation = operation;
  }
}

/** What an fstat/lstat of an entry beneath the root gave. */
export interface BeneathStat {
  dev: bigint;
  ino: bigint;
  /** Full st_mode (type and permission bits). */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** 512-byte blocks allocated. */
  blocks: bigint;
}

export const isRegular = (st: BeneathStat): boolean => (st.mode & S_IFMT) === 0o100000;
export const isDirectoryMode = (st: BeneathStat): boolean => (st.mode & S_IFMT) === 0o040000;
export const isSymlinkMode = (st: BeneathStat): boolean => (st.mode & S_IFMT) === 0o120000;

export const parseStat = (b: Buffer): BeneathStat => ({
  dev: b.readBigUInt64LE(0),
  ino: b.readBigUInt64LE(8),
  mode: b.readUInt32LE(16),
  uid: b.readUInt32LE(20),
  gid: b.readUInt32LE(24),
  nlink: b.readUInt32LE(28),
  size: Number(b.readBigUInt64LE(32)),
  mtimeSec: Number(b.readBigInt64LE(40)),
  mtimeNsec: b.readUInt32LE(48),
  blocks: b.readBigUInt64LE(56),
});

/** Throws UnsafePathError unless `rel` is a well-formed relative path (see the module comment). */
export const checkRelativePath = (rel: Buffer): void => {
  if (!Buffer.isBuffer(rel)) throw new TypeError("relative path must be a Buffer");
  const refuse = (detail: string): never => {
    throw new UnsafePathError(displayPath(rel), detail);
  };
  if (rel.length === 0) refuse("empty path");
  if (rel[0] === SLASH) refuse("absolute path");
  if (rel.includes(0)) refuse("contains a NUL byte");
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i < rel.length && rel[i] !== SLASH) continue;
    const len = i - start;
    if (len === 0) refuse("empty path segment");
    if (len === 1 && rel[start] === DOT) refuse("'.' segment");
    if (len === 2 && rel[start] === DOT && rel[start + 1] === DOT) refuse("'..' segment");
    start = i + 1;
  }
};
