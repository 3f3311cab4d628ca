/**
 * Lustre's HSM state rules as pure functions over hsm_attrs flags, shared by the emulation backend
 * (which applies them) and the lustre backend (which checks them before calling lfs, so a refusal
 * reads the same on both). Each returns the new flags or a refusal saying why.
 */
import type { HsmAttrs } from "./entry.js";
import { HsmFlag, formatHsmFlags } from "./hsm-state.js";

export type HsmOperation = "archive" | "release" | "restore" | "remove";

export type HsmTransition =
  { ok: true; flags: number } | { ok: false; reason: string; hint?: string | undefined };

const has = (flags: number, bit: number): boolean => (flags & bit) !== 0;

const refuse = (reason: string, hint?: string): HsmTransition => ({ ok: false, reason, hint });

/**
 * Archive request (HUA_ARCHIVE) may start: the file must not be NOARCHIVE, LOST or RELEASED, and
 * must be new, or EXISTS but not yet ARCHIVED, or DIRTY. An archived clean file is refused: there is
 * nothing to copy (lfs accepts it and the copytool copies again; hsmfleet says so instead).
 */
export const canArchive = (flags: number): HsmTransition => {
  if (has(flags, HsmFlag.NoArchive)) return refuse("file is marked never_archive");
  if (has(flags, HsmFlag.Lost)) return refuse("archive copy is lost_from_hsm");
  if (has(flags, HsmFlag.Released))
    return refuse("file is released: its data is only in the archive");
  if (has(flags, HsmFlag.Archived) && !has(flags, HsmFlag.Dirty))
    return refuse("file is already archived and not dirty");
  return { ok: true, flags: flags | HsmFlag.Exists };
};

/** Archive copy complete: EXISTS|ARCHIVED, DIRTY and LOST cleared, policy bits kept. */
export const archiveDone = (flags: number): number =>
  (flags | HsmFlag.Exists | HsmFlag.Archived) & ~(HsmFlag.Dirty | HsmFlag.Lost | HsmFlag.Released);

/** Release (HUA_RELEASE): ARCHIVED, not DIRTY, not NORELEASE, not LOST. Adds RELEASED. */
export const canRelease = (flags: number): HsmTransition => {
  if (has(flags, HsmFlag.NoRelease)) return refuse("file is marked never_release");
  if (has(flags, HsmFlag.Lost)) return refuse("archive copy is lost_from_hsm");
  if (!has(flags, HsmFlag.Archived)) return refuse("file is not archived", "archive it first");
  if (has(flags, HsmFlag.Dirty)) return refuse("file is dirty", "archive it first");
  if (has(flags, HsmFlag.Released)) return { ok: true, flags }; // already released: no-op
  return { ok: true, flags: flags | HsmFlag.Released };
};

/**
 * Restore (HUA_RESTORE): a released file gets its data back and RELEASED is cleared; a file that is
 * not released is left as is (no-op, as lfs hsm_restore on a resident file). LOST refuses a
 * released file: the archive copy is gone.
 */
export const canRestore = (flags: number): HsmTransition => {
  if (!has(flags, HsmFlag.Released)) return { ok: true, flags };
  if (has(flags, HsmFlag.Lost)) return refuse("archive copy is lost_from_hsm");
  return { ok: true, flags: flags & ~HsmFlag.Released };
};

/**
 * Remove (HUA_REMOVE): deletes the archive copy. A released file is refused (its only data is the
 * archive copy); otherwise ARCHIVED, DIRTY and LOST are cleared (EXISTS stays: the file was once
 * archived, as Lustre leaves it).
 */
export const canRemove = (flags: number): HsmTransition => {
  if (has(flags, HsmFlag.Released))
    return refuse(
      "file is released: removing the archive copy would lose its data",
      "restore it first",
    );
  return { ok: true, flags: flags & ~(HsmFlag.Archived | HsmFlag.Dirty | HsmFlag.Lost) };
};

/** "release of f refused: file is dirty (0xb exists dirty archived); archive it first". */
export const transitionRefusal = (
  operation: string,
  path: string,
  attrs: HsmAttrs | undefined,
  refusal: { reason: string; hint?: string | undefined },
): string =>
  `${operation} of ${path} refused: ${refusal.reason} (${formatHsmFlags(attrs?.flags ?? 0)})` +
  (refusal.hint ? `; ${refusal.hint}` : "");
