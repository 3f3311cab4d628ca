/**
 * Making a new entry of an import target: a file in one native threadpool job (fs smallFileJob:
 * O_CREAT|O_EXCL beneath the root's fd with nothing followed, sized, closed), its missing parent
 * directories made only when the create says they are missing — on a target being filled most
 * files' directories exist, so the mkdir -p job per file is saved.
 */
import { errorCode } from "@hsmfleet/core";
import { smallFileJob } from "@hsmfleet/fs";
import type { TargetRoot } from "@hsmfleet/fs";

/**
 * What makes a new entry's missing parents before the mkdir -p (autoimport: the ones that have a
 * directory stub blob, from it); called only when the create says a parent is missing.
 */
export type MakeParents = () => Promise<void>;

/**
 * A new 0600 file, cut to `size` when given (the posix backend), closed. A missing parent
 * (ENOENT, or ENOTDIR: something else is in the way) is made — by `makeParents` first, when
 * given, then with mkdir -p, which fails as it always did when it cannot (a file or symlink where
 * a directory belongs) — then the create is tried once more.
 */
export const createSized = async (
  root: TargetRoot,
  rel: Buffer,
  size: number | undefined,
  makeParents?: MakeParents,
): Promise<void> => {
  const job = { createMode: 0o600, ...(size ? { size } : {}) };
  try {
    await smallFileJob(root.jobRoot, rel, job);
  } catch (err) {
    const code = errorCode(err);
    if (code !== "ENOENT" && code !== "ENOTDIR") throw err;
    await makeParents?.();
    await root.ensureParents(rel);
    await smallFileJob(root.jobRoot, rel, job);
  }
};

/**
 * Creates the file (empty, 0600; createSized) or, with `linkTarget`, the symlink; false when the
 * name is taken (EEXIST), so the caller goes through the conflict rules.
 */
export const tryCreate = async (
  root: TargetRoot,
  rel: Buffer,
  linkTarget?: Buffer,
  size?: number,
  makeParents?: MakeParents,
): Promise<boolean> => {
  try {
    if (linkTarget) await root.symlink(rel, linkTarget);
    else await createSized(root, rel, size, makeParents);
    return true;
  } catch (err) {
    if (errorCode(err) === "EEXIST") return false;
    throw err;
  }
};
