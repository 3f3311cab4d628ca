/**
 * Extended attributes by raw path bytes, never following symlinks (lgetxattr, lsetxattr,
 * lremovexattr), each on the libuv threadpool. Failures reject with FsOperationError carrying the
 * operation ("getxattr" / "setxattr" / "removexattr"), the display path and the errno code name.
 */
import { checkPath, checkXattrName, toFsError } from "./errno.js";
import { loadNative } from "./native.js";

/** Value of `name` on `path`, or undefined when the attribute does not exist (ENODATA). */
export const getXattr = async (path: Buffer, name: string): Promise<Buffer | undefined> => {
  checkPath(path, "getxattr");
  checkXattrName(name, "getxattr", path);
  try {
    return (await loadNative().getXattr(path, name)) ?? undefined;
  } catch (err) {
    throw toFsError(err, "getxattr", path);
  }
};

/** Creates or replaces `name` on `path`. */
export const setXattr = async (path: Buffer, name: string, value: Buffer): Promise<void> => {
  checkPath(path, "setxattr");
  checkXattrName(name, "setxattr", path);
  if (!(value instanceof Uint8Array)) throw new TypeError("setxattr: value must be a Buffer");
  try {
    await loadNative().setXattr(path, name, value);
  } catch (err) {
    throw toFsError(err, "setxattr", path);
  }
};

/** Removes `name` from `path`; rejects with code ENODATA when it does not exist. */
export const removeXattr = async (path: Buffer, name: string): Promise<void> => {
  checkPath(path, "removexattr");
  checkXattrName(name, "removexattr", path);
  try {
    await loadNative().removeXattr(path, name);
  } catch (err) {
    throw toFsError(err, "removexattr", path);
  }
};
