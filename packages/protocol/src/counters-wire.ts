// The walk, export, import, restore and in-flight counters of a job record on the wire (job.proto).
import type { hsmfleet } from "./gen/hsmfleet.js";
import { fromNumber, toSafeNumber } from "./long.js";
import type {
  ExportCounters,
  ImportCounters,
  InFlightCounters,
  RestoreCounters,
  ScanCounters,
} from "./counters.js";

export const countersToWire = (c: ScanCounters): hsmfleet.v1.IScanCounters => ({
  files: fromNumber(c.files, "files"),
  directories: fromNumber(c.directories, "directories"),
  symlinks: fromNumber(c.symlinks, "symlinks"),
  other: fromNumber(c.other, "other"),
  bytes: fromNumber(c.bytes, "bytes"),
  vanished: fromNumber(c.vanished, "vanished"),
  errors: fromNumber(c.errors, "errors"),
  sizeHistogram: c.sizeHistogram.map((n) => fromNumber(n, "sizeHistogram")),
  hsmStates: Object.fromEntries(
    Object.entries(c.hsmStates).map(([k, v]) => [k, fromNumber(v, `hsmStates.${k}`)]),
  ),
});

export const countersFromWire = (
  c: hsmfleet.v1.IScanCounters | null | undefined,
): ScanCounters => ({
  files: toSafeNumber(c?.files, "files"),
  directories: toSafeNumber(c?.directories, "directories"),
  symlinks: toSafeNumber(c?.symlinks, "symlinks"),
  other: toSafeNumber(c?.other, "other"),
  bytes: toSafeNumber(c?.bytes, "bytes"),
  vanished: toSafeNumber(c?.vanished, "vanished"),
  errors: toSafeNumber(c?.errors, "errors"),
  sizeHistogram: (c?.sizeHistogram ?? []).map((n) => toSafeNumber(n, "sizeHistogram")),
  hsmStates: Object.fromEntries(
    Object.entries(c?.hsmStates ?? {}).map(([k, v]) => [k, toSafeNumber(v, `hsmStates.${k}`)]),
  ),
});

const EXPORT_KEYS = [
  "filesFound",
  "bytesFound",
  "filesQueued",
  "bytesQueued",
  "filesExported",
  "directoriesExported",
  "symlinksExported",
  "bytesExported",
  "skipped",
  "unsupported",
  "errors",
  "released",
] as const;

export const exportToWire = (c: ExportCounters): hsmfleet.v1.IExportCounters =>
  Object.fromEntries(EXPORT_KEYS.map((k) => [k, fromNumber(c[k], k)]));

export const exportFromWire = (c: hsmfleet.v1.IExportCounters | null | undefined): ExportCounters =>
  Object.fromEntries(
    EXPORT_KEYS.map((k) => [k, toSafeNumber(c?.[k], k)]),
  ) as unknown as ExportCounters;

const IMPORT_KEYS = [
  "totalBlobsWalked",
  "totalBlobsImported",
  "importedFiles",
  "importedDirectories",
  "importedSymlinks",
  "preexistingFiles",
  "preexistingDirectories",
  "preexistingSymlinks",
  "totalErrors",
  "totalConflicts",
  "bytesImported",
  "filesQueued",
  "bytesQueued",
  "bytesDownloaded",
] as const;

export const importToWire = (c: ImportCounters): hsmfleet.v1.IImportCounters =>
  Object.fromEntries(IMPORT_KEYS.map((k) => [k, fromNumber(c[k], k)]));

export const importFromWire = (c: hsmfleet.v1.IImportCounters | null | undefined): ImportCounters =>
  Object.fromEntries(
    IMPORT_KEYS.map((k) => [k, toSafeNumber(c?.[k], k)]),
  ) as unknown as ImportCounters;

const RESTORE_KEYS = [
  "filesFound",
  "bytesFound",
  "filesRestored",
  "bytesRestored",
  "notReleased",
  "errors",
] as const;

export const restoreToWire = (c: RestoreCounters): hsmfleet.v1.IRestoreCounters =>
  Object.fromEntries(RESTORE_KEYS.map((k) => [k, fromNumber(c[k], k)]));

export const restoreFromWire = (
  c: hsmfleet.v1.IRestoreCounters | null | undefined,
): RestoreCounters =>
  Object.fromEntries(
    RESTORE_KEYS.map((k) => [k, toSafeNumber(c?.[k], k)]),
  ) as unknown as RestoreCounters;

export const inFlightToWire = (c: InFlightCounters): hsmfleet.v1.IInFlightCounters => ({
  items: c.items,
  export: exportToWire(c.export),
  import: importToWire(c.import),
  restore: restoreToWire(c.restore),
});
export const inFlightFromWire = (
  c: hsmfleet.v1.IInFlightCounters | null | undefined,
): InFlightCounters => ({
  items: c?.items ?? 0,
  export: exportFromWire(c?.export),
  import: importFromWire(c?.import),
  restore: restoreFromWire(c?.restore),
});
