import type { HsmAttrs } from "./entry.js";

/** HSM state flags (lustre_user.h enum hsm_states). */
export const HsmFlag = {
  Exists: 0x1,
  Dirty: 0x2,
  Released: 0x4,
  Archived: 0x8,
  NoRelease: 0x10,
  NoArchive: 0x20,
  Lost: 0x40,
} as const;
export type HsmFlag = (typeof HsmFlag)[keyof typeof HsmFlag];

/** Size of struct hsm_attrs: u32 hsm_compat, u32 hsm_flags, u64 hsm_arch_id, u64 hsm_arch_ver. */
export const HSM_ATTRS_SIZE = 24;
/** hsm_compat value hsmfleet writes in new hsm_attrs (readers ignore it). */
export const HSM_COMPAT = 0x1;
export const DEFAULT_HSM_XATTR = "trusted.hsm";

export class HsmAttrsDecodeError extends Error {
  constructor(length: number) {
    super(`trusted.hsm value is ${length} bytes; struct hsm_attrs needs ${HSM_ATTRS_SIZE}`);
    this.name = "HsmAttrsDecodeError";
  }
}

export const decodeHsmAttrs = (value: Uint8Array): HsmAttrs => {
  if (value.byteLength < HSM_ATTRS_SIZE) throw new HsmAttrsDecodeError(value.byteLength);
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  return {
    compat: view.getUint32(0, true),
    flags: view.getUint32(4, true),
    archiveId: view.getBigUint64(8, true),
    archiveVersion: view.getBigUint64(16, true),
  };
};

export const encodeHsmAttrs = (attrs: HsmAttrs): Buffer => {
  const out = Buffer.alloc(HSM_ATTRS_SIZE);
  out.writeUInt32LE(attrs.compat >>> 0, 0);
  out.writeUInt32LE(attrs.flags >>> 0, 4);
  out.writeBigUInt64LE(attrs.archiveId, 8);
  out.writeBigUInt64LE(attrs.archiveVersion, 16);
  return out;
};

const FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [HsmFlag.Released, "released"],
  [HsmFlag.Exists, "exists"],
  [HsmFlag.Dirty, "dirty"],
  [HsmFlag.Archived, "archived"],
  [HsmFlag.NoRelease, "never_release"],
  [HsmFlag.NoArchive, "never_archive"],
  [HsmFlag.Lost, "lost_from_hsm"],
];

/** Flag words in the order `lfs hsm_state` prints them, e.g. "released exists archived". */
export const hsmFlagWords = (flags: number): string[] =>
  FLAG_NAMES.filter(([bit]) => (flags & bit) !== 0).map(([, name]) => name);

/** `lfs hsm_state` line: `path: (0x0000000d) released exists archived, archive_id:1`. */
export const formatHsmState = (path: string, attrs: HsmAttrs | undefined): string => {
  const flags = attrs?.flags ?? 0;
  const hex = `0x${flags.toString(16).padStart(8, "0")}`;
  const words = hsmFlagWords(flags);
  const archive = attrs && attrs.archiveId !== 0n ? `, archive_id:${attrs.archiveId}` : "";
  return `${path}: (${hex})${words.length > 0 ? " " + words.join(" ") : ""}${archive}`;
};

/** One name per file for summaries; the most significant flag wins. */
export type HsmStateName = "new" | "exists" | "archived" | "dirty" | "released" | "lost";

export const hsmStateName = (attrs: HsmAttrs | undefined): HsmStateName =>
  hsmStateOfFlags(attrs?.flags ?? 0);

/** hsmStateName of a file whose struct hsm_attrs has these flags (0: no xattr, "new"). */
export const hsmStateOfFlags = (flags: number): HsmStateName => {
  if (flags & HsmFlag.Lost) return "lost";
  if (flags & HsmFlag.Released) return "released";
  if (flags & HsmFlag.Dirty) return "dirty";
  if (flags & HsmFlag.Archived) return "archived";
  if (flags & HsmFlag.Exists) return "exists";
  return "new";
};

/** Short form for messages: `0xb exists dirty archived` (`0x0 new` for no flags). */
export const formatHsmFlags = (flags: number): string => {
  const words = hsmFlagWords(flags);
  return `0x${flags.toString(16)} ${words.length > 0 ? words.join(" ") : "new"}`;
};
