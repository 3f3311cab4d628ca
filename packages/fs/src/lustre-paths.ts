/**
 * How the lustre backend names files to `lfs` without a path a user could redirect (the issue-14
 * class: a directory of the tree swapped for a symlink between the walk and the HSM call).
 *
 * Each file is first opened beneath its job root's fd with no symlink followed anywhere (O_PATH,
 * fid-batch.ts) and must be a regular file; its FID is read from that open file (its file handle,
 * as llapi_fd2fid does). lfs is then given `<mount>/.lustre/fid/<FID>`: Lustre's own by-FID
 * namespace, looked up by the client from the FID alone, walking no directory of the tree. A FID is
 * never reused, so the name can only ever mean the inode that was checked. This is what Robinhood
 * hands to lfs and llapi too. (Magic links like /proc/self/fd/N do not work as lfs file names:
 * llapi_path2fid opens with O_NOFOLLOW, which refuses a magic link, and llapi_hsm_request looks
 * the mount up by the path's prefix.)
 *
 * The mount is the Lustre mount holding the root (the longest mount point in /proc/self/mountinfo
 * that contains the root's resolved path), or `mountPoint` when given. When the root is on no
 * Lustre mount (the lfs stand-in of the tests), the job root itself stands for the mount.
 */
import { readFile, readlink } from "node:fs/promises";

import type { JobRoot } from "./job-root.js";

/** `<mount>/.lustre/fid/<fid>` (the mount without a trailing slash; "/" stays a bare prefix). */
export const fidPath = (mount: string, fid: string): string =>
  `${mount === "/" ? "" : mount.replace(/\/+$/, "")}/.lustre/fid/${fid}`;

/** Undoes mountinfo's octal escapes (\040 for a space, …). */
const unescapeMountinfo = (s: string): string =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mount points with their file system types, from /proc/self/mountinfo. */
export const readMounts = async (): Promise<Array<{ mountPoint: string; fsType: string }>> => {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const out: Array<{ mountPoint: string; fsType: string }> = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 5 || fields[4] === undefined || fields[dash + 1] === undefined) continue;
    out.push({ mountPoint: unescapeMountinfo(fields[4]), fsType: fields[dash + 1]! });
  }
  return out;
};

/**
 * The Lustre mount point of `root` as described in the module comment: the resolved path of the
 * root's open directory (/proc/self/fd/N), matched against the mount table.
 */
export const lustreMountOf = async (root: JobRoot): Promise<string> => {
  const resolved = await readlink(`/proc/self/fd/${root.fd}`).catch(() => root.path);
  let best: { mountPoint: string; fsType: string } | undefined;
  for (const m of await readMounts()) {
    const prefix = m.mountPoint === "/" ? "/" : `${m.mountPoint}/`;
    if (resolved !== m.mountPoint && !resolved.startsWith(prefix)) continue;
    if (!best || m.mountPoint.length > best.mountPoint.length) best = m;
  }
  return best?.fsType === "lustre" ? best.mountPoint : resolved;
};
