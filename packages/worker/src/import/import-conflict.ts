/**
 * What an import does with an entry that already exists where a file or symlink belongs (the
 * conflict modes; see import-target.ts and docs/import.md), and the records it keeps of it.
 */
import { HsmFlag, hsmFlagWords } from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";
import type { EntryAttributes, EntryStat, HsmBackend, TargetRoot } from "@hsmfleet/fs";
import type { ConflictMode, ImportMode, ItemError } from "@hsmfleet/protocol";
import type { TargetHsm } from "./target-hsm.js";

/** What happened to one entry. `conflict` is set for every pre-existing file or symlink. */
export interface ImportOutcome {
  result: "imported" | "preexisting" | "skipped" | "failed";
  /** Full mode: the file exists (as a stub) and its data must be downloaded. */
  download?: boolean;
  conflict?: ItemError;
  error?: ItemError;
}

export type Existing = { st: EntryStat; hsm: HsmAttrs | undefined };

export const describeExisting = (e: Existing): string => {
  if (e.st.isDirectory()) return "directory";
  if (e.st.isSymbolicLink()) return "symlink";
  if (!e.st.isFile()) return "special file";
  const flags = e.hsm?.flags ?? 0;
  const words = hsmFlagWords(flags);
  return `file (0x${flags.toString(16).padStart(8, "0")})${words.length ? " " + words.join(" ") : " new"}`;
};

/** Archived and not dirty (a released stub is clean too). */
export const isClean = (hsm: HsmAttrs | undefined): boolean => {
  const flags = hsm?.flags ?? 0;
  return (flags & HsmFlag.Archived) !== 0 && (flags & HsmFlag.Dirty) === 0;
};

/** A conflict record: what was there (`operation`), what was done (`code`) and why. */
export const conflictOf = (
  rel: Buffer,
  existing: Existing,
  resolution: string,
  detail: string,
): ItemError => ({
  path: rel,
  operation: describeExisting(existing),
  code: resolution,
  message: detail,
  retryable: false,
});

/** What the conflict rules need of the target. */
export interface ConflictTarget {
  root: TargetRoot;
  conflict: ConflictMode;
  mode: ImportMode;
  hsm: HsmBackend | undefined;
  /** The HSM operations beneath the target's fd (release of a clean file). */
  beneath: TargetHsm | undefined;
}

/**
 * A pre-existing entry where a file or symlink belongs. `same`: it already is what the blob
 * describes (clean file of that size / symlink to that target). Returns "imported" with
 * `replace` when the caller must (re)create the entry; otherwise the final outcome.
 */
export const decideConflict = async (
  target: ConflictTarget,
  rel: Buffer,
  existing: Existing,
  same: boolean,
  attrs: EntryAttributes,
  size?: number,
): Promise<ImportOutcome & { replace?: boolean }> => {
  const mode = target.conflict;
  if (mode === "fail") {
    const conflict = conflictOf(
      rel,
      existing,
      "failed",
      "the entry already exists (--conflict fail)",
    );
    return {
      result: "failed",
      conflict,
      error: {
        ...conflict,
        operation: "import",
        code: "EEXIST",
        message: `${describeExisting(existing)} already exists (--conflict fail)`,
      },
    };
  }
  if (mode === "skip") {
    return {
      result: "skipped",
      conflict: conflictOf(rel, existing, "skipped", "left as it was"),
    };
  }
  if (existing.st.isDirectory()) {
    const conflict = conflictOf(
      rel,
      existing,
      "failed",
      "a directory is in the way; directories are never deleted",
    );
    return {
      result: "failed",
      conflict,
      error: {
        ...conflict,
        operation: "import",
        code: "EISDIR",
        message: "a directory is where a file or symlink belongs; directories are never deleted",
      },
    };
  }
  const clean = existing.st.isFile() && isClean(existing.hsm);
  if (same && (mode === "overwrite-dirty" || !existing.st.isFile())) {
    await target.root.setAttributes(rel, attrs);
    return {
      result: "imported",
      replace: false,
      conflict: conflictOf(
        rel,
        existing,
        "attributes-updated",
        "clean; attributes set from the blob",
      ),
    };
  }
  if (
    mode === "overwrite-always" &&
    same &&
    clean &&
    target.mode === "namespace" &&
    target.beneath !== undefined &&
    size !== undefined
  ) {
    await target.beneath.release(rel);
    await target.root.setAttributes(rel, attrs);
    return {
      result: "imported",
      replace: false,
      conflict: conflictOf(
        rel,
        existing,
        "released",
        "clean; data released, attributes set from the blob",
      ),
    };
  }
  await target.root.unlink(rel);
  return {
    result: "imported",
    replace: true,
    conflict: conflictOf(
      rel,
      existing,
      "reimported",
      clean ? "deleted and imported again" : "dirty or never archived: deleted and imported again",
    ),
  };
};
