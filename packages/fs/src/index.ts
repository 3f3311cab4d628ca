export { openDir, statEntry, DEFAULT_BATCH_SIZE } from "./dir-reader.js";
export type { DirEntry, DirReadOptions, DirReader } from "./dir-reader.js";
export { getXattr, setXattr, removeXattr } from "./xattr.js";
export { loadNative, NATIVE_ADDON_PATH } from "./native.js";
