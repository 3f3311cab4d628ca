export { EntryType, entryTypeName } from "./entry.js";
export type { FileEntry, HsmAttrs } from "./entry.js";
export {
  HsmFlag,
  HSM_ATTRS_SIZE,
  HSM_COMPAT,
  DEFAULT_HSM_XATTR,
  HsmAttrsDecodeError,
  decodeHsmAttrs,
  encodeHsmAttrs,
  hsmFlagWords,
  formatHsmState,
  hsmStateName,
} from "./hsm-state.js";
export type { HsmStateName } from "./hsm-state.js";
export {
  HsmfleetError,
  FsOperationError,
  UsageError,
  DependencyError,
  JobError,
  errorCode,
  errorMessage,
} from "./errors.js";
export { joinPathBytes, resolveUnderRoot, displayPath } from "./path-bytes.js";
