export { EntryType, entryTypeName, otherEntryKind } from "./entry.js";
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
  hsmStateOfFlags,
  formatHsmFlags,
} from "./hsm-state.js";
export {
  HsmUserAction,
  HsmCopytoolAction,
  HsmProgressFlag,
  HSM_REQUEST_NAMES,
  WHOLE_FILE_EXTENT,
  userActionForRequest,
  copytoolActionForUser,
  copytoolActionName,
  parseHsmRequestName,
} from "./hsm-request.js";
export type { HsmRequestName, HsmExtent, HsmActionItem, HsmActionList } from "./hsm-request.js";
export {
  FID_SEQ_NORMAL,
  FidParseError,
  formatFid,
  parseFid,
  fidForInode,
  fidHash,
  partitionForFid,
} from "./fid.js";
export type { Fid } from "./fid.js";
export {
  canArchive,
  archiveDone,
  canRelease,
  canRestore,
  canRemove,
  transitionRefusal,
} from "./hsm-transition.js";
export type { HsmOperation, HsmTransition } from "./hsm-transition.js";
export type { HsmStateName } from "./hsm-state.js";
export {
  HsmfleetError,
  FsOperationError,
  UsageError,
  DependencyError,
  JobError,
  HsmRefusedError,
  errorCode,
  errorMessage,
} from "./errors.js";
export { joinPathBytes, resolveUnderRoot, displayPath } from "./path-bytes.js";
export {
  BLOB_NAME_MAX_CHARS,
  BLOB_NAME_MAX_SEGMENTS,
  BLOB_NAME_ESCAPE_BASE,
  BlobNameError,
  normalizePrefix,
  blobNameForPath,
  pathForBlobName,
} from "./blob-naming.js";
export type { BlobNameErrorReason } from "./blob-naming.js";
export {
  metadataForEntry,
  attributesFromMetadata,
  isFolderStub,
  isSymlinkBlob,
  formatModtime,
  parseModtime,
} from "./blob-metadata.js";
export type { PosixAttributes, BlobEntryKind } from "./blob-metadata.js";
export { testSeam } from "./test-seam.js";
export type { TestSeamName } from "./test-seam.js";
export { IMPORT_MARKER_STATES, importMarkerName, isImportMarkerName } from "./import-marker.js";
export type { ImportMarkerState } from "./import-marker.js";
export { formatErrorLine } from "./error-line.js";
export { POLICY_HSM_STATES } from "./policy/policy-model.js";
export type {
  ClassMatch,
  FileClass,
  OwnerUsageTrigger,
  PolicyAction,
  PolicyEvaluation,
  PolicyFile,
  PolicyHsmState,
  PolicyLimits,
  PolicyRule,
  PolicySettings,
  PolicyTriggers,
  RateLimit,
  ResolvedPolicy,
  UsageTrigger,
} from "./policy/policy-model.js";
export { GlobSyntaxError, compileGlob } from "./policy/glob.js";
export { PolicyEvaluator, archivable, releasable } from "./policy/evaluate.js";
export type { PolicyFileFacts, PolicyVerdict } from "./policy/evaluate.js";
export { TopK } from "./policy/top-k.js";
export {
  REPORT_MAX_KEYS,
  ReportBuilder,
  SIZE_PROFILE,
  emptyReportTally,
  sizeProfileBucket,
} from "./policy/report-tally.js";
export type { DirUsage, OldFile, ReportTally, Tally } from "./policy/report-tally.js";
export { DURATION_UNITS_MS, SIZE_UNITS, parseDurationText, parseSizeText } from "./units.js";
export { formatNumber } from "./format-number.js";
