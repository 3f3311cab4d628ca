export { openDir, openDirsBeneath, statEntry, DEFAULT_BATCH_SIZE } from "./dir-reader.js";
export type { DirEntry, DirReadOptions, DirReader, OpenedDir } from "./dir-reader.js";
export { DirBatch, TALLY, isPlainRecord } from "./dir-batch.js";
export { getXattr, setXattr, removeXattr } from "./xattr.js";
export { loadNative, NATIVE_ADDON_PATH } from "./native.js";
export { releaseBatch, RELEASE_CHUNK_FILES } from "./release-batch.js";
export { fidBatch, FID_CHUNK_FILES } from "./fid-batch.js";
export type { ReleaseRecord } from "./release-batch.js";
export { readSmallFile } from "./read-small-file.js";
export type { ReadSmallFileOptions, SmallFileRead, SmallFileStat } from "./read-small-file.js";
export { TargetRoot, DEFAULT_DIR_CACHE_SIZE } from "./safe-create.js";
export type { TargetRootOptions, EntryStat } from "./safe-create.js";
export {
  JobRoot,
  UnsafePathError,
  checkRelativePath,
  isDirectoryMode,
  isRegular,
  isSymlinkMode,
  jobRootFor,
  openBeneath,
  openFileBeneath,
  openat2Disabled,
  setOpenat2Disabled,
  usesOpenat2,
  NO_OPENAT2_ENV,
} from "./job-root.js";
export type { BeneathStat, EntryAttributes } from "./job-root.js";
export {
  HsmEmulation,
  isDirtyOrNew,
  RELEASED_STUB_FLAGS,
  ARCHIVED_FLAGS,
} from "./hsm-emulation.js";
export type { HsmEmulationOptions } from "./hsm-emulation.js";
export { HSM_BACKEND_KINDS } from "./hsm-backend.js";
export type {
  HsmBackend,
  HsmBackendKind,
  HsmRequestOptions,
  OpenHsmBackendOptions,
  DataSnapshot,
} from "./hsm-backend.js";
export { HsmEmulationBackend, dataVersion, dataVersionIs } from "./hsm-emulation-backend.js";
export { openHsmBackend } from "./open-hsm-backend.js";
export { LustreHsmBackend, LUSTRE_DEFAULTS, parseHsmStateLine } from "./lustre-backend.js";
export type { LustreHsmBackendOptions } from "./lustre-backend.js";
export {
  crc64,
  crc64Async,
  crc64Bytes,
  crc64Implementation,
  crc64Portable,
  pwriteCrc64,
  CRC64_ASYNC_MIN_BYTES,
} from "./crc64.js";
export { crc64Combine, crc64OfParts } from "./crc64-combine.js";
export { HUGE_PAGE_BUFFER_MIN_BYTES, allocLargeBuffer } from "./huge-page-buffer.js";
export type { Crc64Part } from "./crc64-combine.js";
export { Md5Stream, SPARSE_BLOCK_BYTES, pwriteAll, writeWholeFile } from "./write-hash.js";
export type { WriteOptions } from "./write-hash.js";
export { pauseBeforeOpenForTest, TEST_PAUSE_BEFORE_OPEN_ENV } from "./test-seam.js";
export { InotifyWatcher, InotifyMask, SYNC_WATCH_MASK, parseInotifyEvents } from "./inotify.js";
export type { InotifyEvent } from "./inotify.js";
export { INSPECT_MAX_VALUE, INSPECT_MAX_XATTRS, inspectFile, smallFileJob } from "./small-file.js";
export type {
  InspectedFile,
  SmallFileHsmState,
  SmallFileJob,
  SmallFileResult,
} from "./small-file.js";
export { hsmAtAbsolutePaths, parentAndName } from "./hsm-at-paths.js";
export type { HsmAtAbsolutePaths } from "./hsm-at-paths.js";
export { fidPath, lustreMountOf } from "./lustre-paths.js";
export type { FidBatchOptions } from "./fid-batch.js";
export { namedForOperation } from "./hsm-operation.js";
