/**
 * Lustre File IDentifier (struct lu_fid): u64 sequence, u32 object id, u32 version, printed by
 * `lfs path2fid` as `[0x200000401:0x1:0x0]` (brackets optional on input, as lfs accepts).
 */
import { UsageError } from "./errors.js";

export interface Fid {
  seq: bigint;
  oid: number;
  ver: number;
}

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const FID_PATTERN = /^\[?(0x[0-9a-fA-F]+|\d+):(0x[0-9a-fA-F]+|\d+):(0x[0-9a-fA-F]+|\d+)\]?$/;

export class FidParseError extends UsageError {
  constructor(text: string, why: string) {
    super(`bad FID ${JSON.stringify(text)}: ${why} (expected [0xseq:0xoid:0xver])`);
    this.name = "FidParseError";
  }
}

export const formatFid = (fid: Fid): string =>
  `[0x${fid.seq.toString(16)}:0x${fid.oid.toString(16)}:0x${fid.ver.toString(16)}]`;

export const parseFid = (text: string): Fid => {
  const m = FID_PATTERN.exec(text.trim());
  if (!m) throw new FidParseError(text, "not three ':'-separated numbers");
  const seq = BigInt(m[1]!);
  const oid = BigInt(m[2]!);
  const ver = BigInt(m[3]!);
  if (seq > U64_MAX) throw new FidParseError(text, "sequence exceeds 64 bits");
  if (oid > 0xffff_ffffn) throw new FidParseError(text, "object id exceeds 32 bits");
  if (ver > 0xffff_ffffn) throw new FidParseError(text, "version exceeds 32 bits");
  return { seq, oid: Number(oid), ver: Number(ver) };
};

/** Normal-file sequences on Lustre start at FID_SEQ_NORMAL (0x200000400); see fidForInode. */
export const FID_SEQ_NORMAL = 0x2_0000_0400n;

/**
 * A stable FID for an inode on an ordinary file system (the emulation backend): seq =
 * FID_SEQ_NORMAL + (dev << 32 | ino >> 32), oid = low 32 bits of ino, ver = 0. The same file keeps
 * its FID across renames and reboots (as long as the device number is stable); a new file that
 * reuses a freed inode gets the same FID, as on any inode-number file system.
 */
export const fidForInode = (dev: bigint, ino: bigint): Fid => ({
  seq: (FID_SEQ_NORMAL + (((dev & 0xffff_ffffn) << 32n) | (ino >> 32n))) & U64_MAX,
  oid: Number(ino & 0xffff_ffffn),
  ver: 0,
});

/** 32-bit FNV-1a over the FID text: the partition hash (stable across processes and versions). */
export const fidHash = (fid: string): number => {
  let h = 0x811c9dc5;
  for (let i = 0; i < fid.length; i++) {
    h ^= fid.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
};

/** The partition (0 … partitions-1) every action on this FID goes to. */
export const partitionForFid = (fid: string, partitions: number): number =>
  fidHash(formatFid(parseFid(fid))) % partitions;
