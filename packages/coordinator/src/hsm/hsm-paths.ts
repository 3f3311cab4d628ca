import { UsageError, displayPath } from "@hsmfleet/core";

/** Paths of an HSM job: absolute paths relative to the job root and back (raw bytes). */
/** `root` with a trailing "/" (added unless it has one). */
export const rootPrefix = (root: Buffer): Buffer =>
  root[root.length - 1] === 0x2f ? root : Buffer.concat([root, Buffer.from("/")]);

export const relativeTo = (root: Buffer, abs: Buffer, prefix = rootPrefix(root)): Buffer => {
  if (abs.equals(root)) return Buffer.alloc(0);
  if (
    abs.length <= prefix.length ||
    abs.compare(prefix, 0, prefix.length, 0, prefix.length) !== 0
  ) {
    throw new UsageError(`${displayPath(abs)} is not under the job root ${displayPath(root)}`);
  }
  return abs.subarray(prefix.length);
};

/** The absolute path of `rel` under `root` (one "/" between them, also when root is "/"). */
export const resolveAbs = (root: Buffer, rel: Buffer): Buffer =>
  rel.length === 0 ? root : Buffer.concat([rootPrefix(root), rel]);
